"""The Syncer interface the engine loops over, and the models and Open WebUI syncers."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol, TypeVar

import docker

from reconciler.models.fleet import ServerAccess, converge_servers
from reconciler.models.pulls import PullWorker
from reconciler.models.sync import ModelsOutcome, ModelSync
from reconciler.server.record import State
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.stack.sync import Run
from reconciler.webui.sync import WebUIOutcome, WebUISync

R_co = TypeVar("R_co", covariant=True)


class Syncer(Protocol[R_co]):
    """One part of the server that a reconcile converges; returns its part of the outcome.
    The stack's (reconciler.stack.sync.StackSync) returns the outcome the others add to."""

    name: str  # the part's field in the outcome and its mark in the durations

    def sync(self, run: Run) -> R_co: ...


class Part(Protocol):
    """What a part after the stack did."""

    errors: list[str]

    def to_json(self) -> dict[str, Any]: ...


class PartSyncer(Syncer[Part], Protocol):
    """A part that follows the stack and never blocks it: its failure is its own error."""

    problem: str  # its key in state.problems (`lanai status`: Degraded)
    doing: str  # the step `lanai status` shows while it runs
    what: str  # how the sentence for an unexpected failure names it

    def ready(self, run: Run) -> bool:
        """Whether there is anything to converge (tidying up when there is not)."""
        ...

    def failed(self, errors: list[str]) -> Part: ...

    def summary(self, errors: list[str]) -> str:
        """The reconcile's one error sentence when this part failed."""
        ...


class ModelsSyncer:
    """models.yaml's part: pulls, creates and warms Ollama's models."""

    name = "models"
    problem = "models"
    doing = "converging models"
    what = "converging the models"

    def __init__(self, settings: ServerSettings, client: Callable[[], docker.DockerClient], *,
                 progress: Callable[[str], None], gpu: Callable[[], tuple[str, int] | None],
                 pulls: PullWorker | None, save: Callable[[State], None],
                 servers: ServerAccess | None = None) -> None:
        self.settings = settings
        self._client = client
        self.progress = progress
        self.gpu = gpu  # compose mode: this box's GPU
        self.pulls = pulls
        self.save = save
        self.servers = servers  # swarm mode: each server's Ollama URL, GPU, and who is down

    def ready(self, run: Run) -> bool:
        current = run.deployed
        if current is None or current.models is None:
            if self.pulls is not None:
                self.pulls.keep_only(set())  # models.yaml is gone: so are its pulls
                for worker in self.pulls.servers().values():
                    worker.keep_only(set())
            return False
        if run.outcome is not None and run.outcome.status == "applied":
            self.save(run.state)  # the stack is deployed: `lanai status` says so while models pull
        return True

    def sync(self, run: Run) -> ModelsOutcome:
        current = run.deployed
        assert current is not None  # ready() said so
        if current.config.mode == "swarm":
            if self.servers is None:
                return ModelsOutcome(errors=[
                    "this commit is in swarm mode but the engine gave the models step no way "
                    "to the servers' Ollamas (no relay); install a lanai that deploys swarm "
                    "mode, or keep mode: compose"])
            return converge_servers(self.settings, self._client(), current, self.servers,
                                    progress=self.progress, pulls=self.pulls, retry=run.retry)
        return ModelSync(self.settings, self._client(), progress=self.progress, gpu=self.gpu,
                         pulls=self.pulls).converge(current, retry=run.retry)

    def failed(self, errors: list[str]) -> ModelsOutcome:
        return ModelsOutcome(errors=errors)

    def summary(self, errors: list[str]) -> str:
        return errors[0] + (f" (and {len(errors) - 1} more model problem(s))"
                            if len(errors) > 1 else "")


class WebUISyncer:
    """webui.yaml's part: Open WebUI's settings, accounts and knowledge."""

    name = "webui"
    problem = "open-webui settings"
    doing = "converging Open WebUI's settings"
    what = "converging Open WebUI's settings"

    def __init__(self, settings: ServerSettings, client: Callable[[], docker.DockerClient], *,
                 progress: Callable[[str], None], tokens: dict[str, str],
                 list_documents: Callable[[Rendered], Rendered],
                 down: Callable[[Rendered], Collection[str]] | None = None,
                 url: Callable[[Rendered], str | None] | None = None) -> None:
        self.settings = settings
        self._client = client
        self.progress = progress
        self.tokens = tokens  # the engine's: one Open WebUI session per URL, signed in once
        self.list_documents = list_documents
        self.down = down  # swarm mode: the servers whose node is down
        self.url = url  # swarm mode: Open WebUI's URL through the relay

    def ready(self, run: Run) -> bool:
        current = run.deployed
        return current is not None and current.webui is not None

    def sync(self, run: Run) -> WebUIOutcome:
        current = run.deployed
        assert current is not None and current.webui is not None  # ready() said so
        if current.documents is None and current.webui.knowledge:
            current = self.list_documents(current)
        return WebUISync(self.settings, self._client(), progress=self.progress,
                         tokens=self.tokens, down=self.down, url=self.url).converge(
            current, new_commit=run.outcome is not None and run.outcome.status == "applied")

    def failed(self, errors: list[str]) -> WebUIOutcome:
        return WebUIOutcome(errors=errors)

    def summary(self, errors: list[str]) -> str:
        return errors[0]
