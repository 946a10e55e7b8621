"""The Ollama API double (tests/ollama_double/server.py) for unit tests: loaded once,
served in-process on a free port with Ollama's memory knobs cleared."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SERVER = Path(__file__).resolve().parents[1] / "ollama_double" / "server.py"
KNOBS = ("OLLAMA_CONTEXT_LENGTH", "OLLAMA_NUM_PARALLEL", "OLLAMA_FLASH_ATTENTION",
         "OLLAMA_KV_CACHE_TYPE", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE",
         "OLLAMA_DOUBLE_VRAM_BYTES", "OLLAMA_DOUBLE_PULL_BYTES_PER_SEC")


@functools.cache
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ollama_double_server", SERVER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serving(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the double on 127.0.0.1 with default knobs; yields its base URL."""
    for var in KNOBS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OLLAMA_DOUBLE_LOG", "0")
    server = load().make_server("127.0.0.1", 0, models_dir)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
