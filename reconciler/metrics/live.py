"""The live readings a scrape needs, each taken at most once per interval (cache.Every):
the containers (Docker), the loaded models (Ollama's /api/ps), the GPUs (nvidia-smi),
Docker's data root. Each returns what it could read; a failure is logged once per
interval at debug level and reads as "nothing known", never as a scrape error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

from reconciler.metrics.cache import Every
from reconciler.models.ollama import Loaded, Ollama
from reconciler.models.sync import ModelSync
from reconciler.server import gpu as gpu_mod
from reconciler.server.record import load_state
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack.render import Rendered
from reconciler.stack.sync import applied_deployment

log = logging.getLogger("lanai.metrics")

INTERVAL_S = 15.0  # Prometheus' usual scrape interval: at most one reading per scrape


@dataclass(frozen=True)
class Containers:
    facts: facts_mod.Facts | None  # None: Docker did not answer
    docker_root: Path | None


class Live:
    def __init__(self, settings: ServerSettings, *,
                 docker_client: Callable[[], docker.DockerClient] = facts_mod.connect,
                 ollama: Callable[[str], Ollama] = Ollama,
                 gpus: Callable[[], gpu_mod.GpuFacts] = gpu_mod.observe_gpus,
                 interval: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._docker_client = docker_client
        self._client: docker.DockerClient | None = None
        self._ollama = ollama
        self.containers = Every(self._containers, interval, clock)
        self.loaded = Every(self._loaded, interval, clock)
        self.gpus = Every(gpus, interval, clock)

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._docker_client()
        return self._client

    def _applied(self) -> Rendered | None:
        return applied_deployment(self.settings, load_state(self.settings.state_file))

    def _containers(self) -> Containers:
        applied = self._applied()
        try:
            client = self._docker()
            facts = facts_mod.observe(client, applied.project, []) if applied else None
            root = client.info().get("DockerRootDir")
            return Containers(facts, Path(root) if root else None)
        except Exception as exc:  # Docker down or restarting: health reads Unknown
            log.debug("metrics: Docker did not answer (%s)", exc)
            self._client = None
            return Containers(None, None)

    def _loaded(self) -> list[Loaded] | None:
        applied = self._applied()
        if applied is None or applied.models is None:
            return None
        try:
            url = self.settings.ollama_url
            if not url:  # found the way the models' converge finds it: its container
                sync = ModelSync(self.settings, self._docker())
                url = sync.url(sync.container(applied))
            with self._ollama(url) as api:
                return api.ps()
        except Exception as exc:  # Ollama not running (yet): nothing is loaded
            log.debug("metrics: Ollama's /api/ps did not answer (%s)", exc)
            return None
