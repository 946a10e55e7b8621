"""Servers for the status page's tests. `page_server`: the example state rendered and
applied, with a history, models, a bench run and a backup written by the product's own
writers (the metrics tests' server, tests/unit/metrics/conftest.py), Ollama the API double
with a model loaded, Docker a stand-in, nvidia-smi the H100 fixture; its secrets file holds
a marker that must never reach a response. `fresh`: a server with no records at all,
Docker and Ollama not answering, no nvidia-smi."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.metrics.live import Live
from reconciler.models.ollama import Ollama
from reconciler.server import gpu as gpu_mod
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.statuspage.app import StatusApp

from ..double import serving
from ..metrics.conftest import (
    PHI3,
    SECRETS,
    FakeDocker,
    apply_example,
    compose_available,
    fixture_gpus,
    write_records,
)

# Never in a response: a value only the secrets file holds.
MARKER = "statuspage-marker-9c1e77b3"
ALL_SECRETS = {**SECRETS, "SMTP_PASSWORD": MARKER}


@dataclass
class PageServer:
    settings: ServerSettings
    rendered: Rendered
    docker: FakeDocker
    clock: list[float]
    app: StatusApp


def settings_in(tmp_path: Path, ollama_url: str | None) -> ServerSettings:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in ALL_SECRETS.items()))
    secrets_file.chmod(0o600)
    key = tmp_path / "deploy_key"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{MARKER}-key\n")
    return ServerSettings(
        home=tmp_path / "home", repo=f"https://token-{MARKER}@git.example/state.git",
        branch=None, secrets_file=secrets_file, config_file=tmp_path / "server.yaml",
        deploy_key=key, ollama_url=ollama_url)


@pytest.fixture
def page_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PageServer]:
    if not compose_available():
        pytest.skip("needs the `docker compose` CLI (not the engine) to render the example")
    with serving(tmp_path / "models", monkeypatch) as ollama_url:
        with Ollama(ollama_url) as api:
            api.pull(PHI3)
            api.load(PHI3)
        settings = settings_in(tmp_path, ollama_url)
        settings.home.mkdir()
        rendered = apply_example(settings)
        write_records(settings, rendered)
        clock = [1000.0]
        docker = FakeDocker(rendered, tmp_path)
        live = Live(settings, docker_client=lambda: docker,  # type: ignore[arg-type,return-value]
                    gpus=fixture_gpus, interval=15.0, clock=lambda: clock[0])
        yield PageServer(settings, rendered, docker, clock, StatusApp(settings, live))


def no_docker() -> object:
    raise ConnectionError("Docker is not running")


@pytest.fixture
def fresh(tmp_path: Path) -> StatusApp:
    """No home directory yet, nothing answering (beside page_server in a test, not in it)."""
    (tmp_path / "fresh").mkdir()
    settings = settings_in(tmp_path / "fresh", "http://127.0.0.1:9")
    live = Live(settings, docker_client=no_docker,  # type: ignore[arg-type]
                gpus=lambda: gpu_mod.GpuFacts([], None))
    return StatusApp(settings, live)
