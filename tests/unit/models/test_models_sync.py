"""The models converge against the Ollama double in-process (no Docker): following a tag
upstream, the quantization check, and the helpers that find Ollama's port and disk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.models import state as models_state
from reconciler.models.ollama import Ollama, unreached_registry
from reconciler.models.sync import (
    ModelsOutcome,
    ModelSync,
    free_bytes,
    host_path,
    models_dir,
    ollama_port,
)
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered

from ..double import serving

PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"


@dataclass
class FakeContainer:
    """The parts of a Docker container the converge reads."""

    name: str = "lanai-ollama-1"
    attrs: dict[str, Any] = field(default_factory=lambda: {
        "Mounts": [], "Config": {"Env": []}, "State": {"StartedAt": "2026-11-25T10:00:00Z"}})


@pytest.fixture
def ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ollama]:
    with serving(tmp_path / "models", monkeypatch) as url, Ollama(url) as client:
        yield client


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                          secrets_file=tmp_path / "secrets.env",
                          config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "key")


def rendered(tmp_path: Path, models: str) -> Rendered:
    config = ModelsConfig.model_validate(yaml.safe_load(models))
    return Rendered(directory=tmp_path, commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={},
                    settings=LanaiConfig().model_dump(mode="json"),
                    models_settings=config.model_dump(mode="json"), ollama_service="ollama")


def converge(tmp_path: Path, ollama: Ollama, target: Rendered) -> ModelsOutcome:
    sync = ModelSync(settings(tmp_path), client=None, progress=lambda _m: None,  # type: ignore
                     gpu=lambda: None)
    out = ModelsOutcome()
    assert target.models is not None
    sync._converge(target, target.models, FakeContainer(), ollama, out, retry=False)
    sync._save()
    return out


def kinds(out: ModelsOutcome) -> list[tuple[str, str]]:
    return [(a["kind"], a.get("reason", a.get("result"))) for a in out.actions]


def test_a_followed_tag_is_rechecked_upstream_only_when_due(tmp_path: Path, ollama: Ollama):
    target = rendered(tmp_path, f"local:\n  - name: {PHI3}\n    follow: true\n")
    first = converge(tmp_path, ollama, target)
    assert ("pull", "not on the server") in kinds(first)
    assert [k for k, _ in kinds(converge(tmp_path, ollama, target))] == []  # not due yet
    path = settings(tmp_path).models_file
    state = models_state.load(path)
    state.models[PHI3].followed_at = "2026-01-01T00:00:00.000Z"  # a day has long passed
    models_state.save(path, state)
    again = converge(tmp_path, ollama, target)
    assert ("pull", "follow: checking upstream for a new version") in kinds(again)
    # The pull rewrote the tag's manifest, so lanai sets num_ctx on it again.
    assert "tune" in [k for k, _ in kinds(again)]


def test_a_tag_that_is_not_the_declared_quantization_is_an_error(tmp_path: Path,
                                                                 ollama: Ollama):
    target = rendered(tmp_path, f"local:\n  - name: {PHI3}\n    quantization: Q8_0\n")
    out = converge(tmp_path, ollama, target)
    assert out.errors == [f"{PHI3} is Q4_K_M but models.yaml asks for Q8_0; name the tag "
                          "with that quantization"]


def test_a_pull_that_cannot_reach_the_registry_says_so_and_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with serving(tmp_path / "models", monkeypatch, registry=False) as url, Ollama(url) as api:
        out = converge(tmp_path, api, rendered(tmp_path, f"local:\n  - {PHI3}\n"))
    assert len(out.errors) == 1
    assert out.errors[0].startswith(f"pulling {PHI3} failed: Ollama could not reach the "
                                    "model registry 127.0.0.1 (connection refused); ")
    assert "joins a network with a route out" in out.errors[0]
    assert out.next_retry is not None  # transient: retried with backoff


@pytest.mark.parametrize(("detail", "expected"), [
    # Ollama's words on a server whose Ollama is only on an internal network (Docker's DNS
    # answers nothing for outside names there) and on one without internet.
    ('pull model manifest: Get "https://registry.ollama.ai/v2/library/phi3/manifests/'
     'latest": dial tcp: lookup registry.ollama.ai on 127.0.0.11:53: server misbehaving',
     ("registry.ollama.ai", "server misbehaving")),
    ('pull model manifest: Get "https://registry.ollama.ai/v2/library/phi3/manifests/'
     'latest": dial tcp 104.21.75.227:443: connect: network is unreachable',
     ("registry.ollama.ai", "network is unreachable")),
    ('max retries exceeded: Get "https://dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage'
     '.com/ollama/docker/registry/v2/blobs/sha256/6a/6a0746a1ec1a/data": net/http: TLS '
     "handshake timeout", ("dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com",
                           "tls handshake timeout")),
    ("pull model manifest: file does not exist", None),
    ("write /root/.ollama/models/blobs/sha256-x-partial: no space left on device", None),
])
def test_which_pull_errors_mean_the_registry_was_not_reached(detail: str, expected):
    assert unreached_registry(detail) == expected


def test_ollamas_port_comes_from_ollama_host() -> None:
    assert ollama_port([]) == 11434
    assert ollama_port(["OLLAMA_HOST=0.0.0.0:8080"]) == 8080
    assert ollama_port(["OLLAMA_HOST=http://0.0.0.0:9000/"]) == 9000
    assert ollama_port(["OLLAMA_HOST=0.0.0.0"]) == 11434


def test_the_models_disk_is_found_through_the_longest_mount(tmp_path: Path) -> None:
    mounts = [{"Destination": "/root", "Source": "/srv/root"},
              {"Destination": "/root/.ollama", "Source": str(tmp_path)}]
    assert models_dir([]) == "/root/.ollama/models"
    assert models_dir(["OLLAMA_MODELS=/models"]) == "/models"
    path = host_path(mounts, "/root/.ollama/models")
    assert path == f"{tmp_path}/models"
    assert host_path(mounts, "/models") is None
    # The models directory need not exist yet: its nearest parent's disk counts.
    free = free_bytes(path)
    assert free is not None and free > 0


class FakeDocker:
    """`client.containers.list` answering with the given running containers."""

    def __init__(self, *running: FakeContainer) -> None:
        self.containers = self
        self.running = list(running)

    def list(self, **_: object) -> list[FakeContainer]:
        return self.running


def test_finding_ollama_says_why_the_models_wait(tmp_path: Path) -> None:
    target = rendered(tmp_path, f"local:\n  - name: {PHI3}\n")
    sync = ModelSync(settings(tmp_path), client=FakeDocker(), gpu=lambda: None)  # type: ignore
    assert sync.converge(target).errors == [
        "Ollama (service ollama) is not running, so its models wait; see `lanai status`"]
    ollama = FakeContainer(attrs={"Config": {"Env": ["OLLAMA_HOST=0.0.0.0:8080"]},
                                  "NetworkSettings": {"Networks": {"lanai": {}}}})
    sync.docker = FakeDocker(ollama)  # type: ignore[assignment]
    assert sync.converge(target).errors == [
        "the Ollama container lanai-ollama-1 has no IP address; set ollama_url in "
        "/etc/lanai/server.yaml"]
    ollama.attrs["NetworkSettings"]["Networks"]["lanai"]["IPAddress"] = "172.19.0.2"
    assert sync.url(sync.container(target)) == "http://172.19.0.2:8080"
