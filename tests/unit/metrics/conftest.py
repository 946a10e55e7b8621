"""A server as the product's own writers leave it: the example state rendered and
applied, a history, models, a bench run, a backup; Ollama is the API double with a
model loaded, Docker a stand-in answering with the rendered services, nvidia-smi the
H100 fixture. `scrape` reads /metrics over real HTTP with prometheus_client's parser."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from reconciler.backup.store import Backup, Store
from reconciler.bench.bandwidth import GpuInfo
from reconciler.bench.results import ModelResult, PromptResult, Sample
from reconciler.bench.store import append_run, new_run
from reconciler.desired.load import load_state as load_desired
from reconciler.metrics.collect import LanaiCollector
from reconciler.metrics.live import Live
from reconciler.metrics.reconciles import ReconcileMetrics
from reconciler.metrics.serve import MetricsServer
from reconciler.models import state as models_state
from reconciler.models.ollama import Ollama
from reconciler.server import gpu as gpu_mod
from reconciler.server.record import Outcome, State, append_history, now_iso, save_state
from reconciler.server.settings import ServerSettings
from reconciler.stack.facts import LABEL_PROJECT, LABEL_SERVICE
from reconciler.stack.render import LABEL_HASH, Rendered, render, render_key

from ..conftest import EXAMPLE_STATE, FIXTURES
from ..double import serving

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRETS = {"WEBUI_SECRET_KEY": "metrics-test-secret-4f1c9a",
           "WEBUI_ADMIN_PASSWORD": "metrics-test-admin-7d2e"}
PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"
NVIDIA = FIXTURES / "nvidia-smi" / "h100-driver580"


def compose_available() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True,
                              timeout=20, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@dataclass
class FakeDocker:
    """The Docker SDK calls facts.observe and the disk reading make: one running, healthy
    container per service of the rendered deployment, with its spec hash."""

    rendered: Rendered
    root: Path
    stopped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.api = self

    def containers(self, **_: Any) -> list[dict[str, str]]:
        return [{"Id": name} for name in self.rendered.services]

    def inspect_container(self, name: str) -> dict[str, Any]:
        spec = self.rendered.services[name]
        status = "exited" if name in self.stopped else "running"
        return {"Id": name, "Name": f"/lanai-{name}-1", "Image": "sha256:x",
                "Config": {"Image": spec.image, "Labels": {
                    LABEL_PROJECT: self.rendered.project, LABEL_SERVICE: name,
                    LABEL_HASH: spec.hash}},
                "State": {"Status": status, "ExitCode": 0}}

    def info(self) -> dict[str, str]:
        return {"DockerRootDir": str(self.root)}


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests lanai sends to Ollama, by path."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url.path)
        return super().handle_request(request)


@dataclass
class Server:
    settings: ServerSettings
    rendered: Rendered
    docker: FakeDocker
    ollama_requests: list[str]
    clock: list[float]
    reconciles: ReconcileMetrics
    registry: CollectorRegistry
    url: str

    def scrape(self, path: str = "/metrics") -> dict[str, Metric]:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            text = response.read().decode()
        return {family.name: family for family in text_string_to_metric_families(text)}


def fixture_gpus() -> gpu_mod.GpuFacts:
    return gpu_mod.GpuFacts(gpu_mod.parse_query_csv((NVIDIA / "query-gpu.csv").read_text()))


def apply_example(settings: ServerSettings) -> Rendered:
    """Render the example state into the deployments directory and record it applied."""
    desired = load_desired(EXAMPLE_STATE, COMMIT)
    key = render_key(COMMIT, desired.config, SECRETS, gpu_runtime=False, salt=b"salt")
    directory = settings.deployments_dir / key
    shutil.copytree(EXAMPLE_STATE, directory)
    desired = load_desired(directory, COMMIT)
    rendered = render(desired, SECRETS, directory, COMMIT, key, gpu_runtime=False)
    save_state(settings.state_file, State(
        applied_commit=COMMIT, applied_key=key, applied_at=now_iso(), head_commit=COMMIT,
        branch="main", last_check=now_iso()))
    return rendered


def write_records(settings: ServerSettings, rendered: Rendered) -> None:
    webui = next(name for name in rendered.services if "webui" in name)
    append_history(settings.history_file, {
        "at": now_iso(), "trigger": "poll", **Outcome(
            "healed", commit=COMMIT, applied_commit=COMMIT,
            actions=[{"kind": "restart", "service": webui, "reason": "stopped",
                      "result": "ok"}]).to_json()})
    models = models_state.ModelsState()
    models.record(PHI3).digest = "sha256:" + "a" * 64
    models.fits = [{"model": PHI3, "total": 3_500_000_000, "verdict": "fits"}]
    models_state.save(settings.models_file, models)
    sample = Sample(ttft_s=0.1, load_s=0.0, prompt_tokens=20, prompt_tps=900.0,
                    gen_tokens=100, gen_tps=120.0, total_s=1.0, wall_s=1.0)
    result = ModelResult(PHI3, {"short": PromptResult.summarize("short", [sample])},
                         size=2_600_000_000, size_vram=2_600_000_000,
                         weights_bytes=2_300_000_000)
    append_run(settings.bench_file, new_run([result], commit=COMMIT, settings={},
                                            gpu=GpuInfo.for_card("NVIDIA H100 80GB HBM3")))
    store = Store(settings.backups_dir)
    store.ensure()
    backup = Backup(id="20261203T100000Z-manual", kind="manual", created=now_iso(),
                    service=webui, image=None, commit=COMMIT, size=12345)
    store.archive(backup.id).write_bytes(b"x" * 10)
    store.save(backup)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    if not compose_available():
        pytest.skip("needs the `docker compose` CLI (not the engine) to render the example")
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    secrets_file.chmod(0o600)
    with serving(tmp_path / "models", monkeypatch) as ollama_url:
        with Ollama(ollama_url) as api:
            api.pull(PHI3)
            api.load(PHI3)
        settings = ServerSettings(
            home=tmp_path / "home", repo=None, branch=None, secrets_file=secrets_file,
            config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "key",
            ollama_url=ollama_url, metrics_listen="127.0.0.1:0")
        settings.home.mkdir()
        rendered = apply_example(settings)
        write_records(settings, rendered)
        seen: list[str] = []
        clock = [1000.0]
        docker = FakeDocker(rendered, tmp_path)
        live = Live(settings, docker_client=lambda: docker,  # type: ignore[arg-type,return-value]
                    ollama=lambda url: Ollama(url, transport=CountingTransport(seen)),
                    gpus=fixture_gpus, interval=15.0, clock=lambda: clock[0])
        registry = CollectorRegistry()
        reconciles = ReconcileMetrics(registry)
        registry.register(LanaiCollector(settings, live, reconciles))
        metrics = MetricsServer("127.0.0.1", 0, registry).start()
        try:
            yield Server(settings, rendered, docker, seen, clock, reconciles, registry,
                         f"http://{metrics.address}")
        finally:
            metrics.stop()


Scrape = Callable[[], dict[str, Metric]]
