"""The Ollama API double (tests/ollama_double/server.py) for unit tests: loaded once,
served in-process on a free port with Ollama's memory knobs cleared, pulling from the
registry stand-in (tests/ollama_double/registry.py) served beside it."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SERVER = Path(__file__).resolve().parents[1] / "ollama_double" / "server.py"
REGISTRY = SERVER.with_name("registry.py")
KNOBS = ("OLLAMA_CONTEXT_LENGTH", "OLLAMA_NUM_PARALLEL", "OLLAMA_FLASH_ATTENTION",
         "OLLAMA_KV_CACHE_TYPE", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE",
         "OLLAMA_DOUBLE_VRAM_BYTES", "OLLAMA_DOUBLE_PULL_BYTES_PER_SEC")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def load() -> ModuleType:
    return _load("ollama_double_server", SERVER)


@functools.cache
def load_registry() -> ModuleType:
    return _load("ollama_double_registry", REGISTRY)


@contextlib.contextmanager
def background(server: Any) -> Iterator[str]:
    """serve_forever on a thread; yields the base URL."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def registry_serving() -> Iterator[str]:
    """The registry stand-in on 127.0.0.1; yields its base URL."""
    with background(load_registry().make_registry("127.0.0.1", 0)) as url:
        yield url


@contextlib.contextmanager
def serving(models_dir: Path, monkeypatch: pytest.MonkeyPatch,
            registry: bool = True) -> Iterator[str]:
    """Run the double on 127.0.0.1 with default knobs, pulling from a registry stand-in
    of its own (none with registry=False: pulls find nothing listening); yields its URL."""
    for var in KNOBS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OLLAMA_DOUBLE_LOG", "0")
    with contextlib.ExitStack() as stack:
        if registry:
            monkeypatch.setenv("OLLAMA_DOUBLE_REGISTRY", stack.enter_context(registry_serving()))
        else:
            with socket.socket() as unused:  # a port nothing listens on
                unused.bind(("127.0.0.1", 0))
                port = unused.getsockname()[1]
            monkeypatch.setenv("OLLAMA_DOUBLE_REGISTRY", f"http://127.0.0.1:{port}")
        yield stack.enter_context(background(load().make_server("127.0.0.1", 0, models_dir)))
