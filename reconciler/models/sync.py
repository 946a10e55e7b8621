"""Converge Ollama's models to models.yaml, through Ollama's API.

Order: pull what is missing (disk checked first, progress recorded; in the daemon
the pull runs on its own worker, reconciler.models.pulls, and this step goes on without
the model until a later converge records it) -> read
each model's architecture -> fit contexts to the VRAM budget -> set num_ctx /
create custom models -> prune -> warm the default model -> check what Ollama
reports after loading against the estimate. One model's failure is recorded
and retried on a backoff; it never blocks the others or the stack.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker

from reconciler.core.sizes import human_bytes
from reconciler.desired import modelfile
from reconciler.desired.models_yaml import ModelEntry, ModelsConfig
from reconciler.desired.servers import Server, placement
from reconciler.models import lock as lock_mod
from reconciler.models import state as state_mod
from reconciler.models.fit import custom_sources, num_ctx_of
from reconciler.models.fit_servers import ServerGpu, capped, server_gpu, server_models
from reconciler.models.memory import ModelFacts
from reconciler.models.ollama import Ollama, OllamaError, PullProgress
from reconciler.models.plan import (
    LiveModel,
    ModelAction,
    ModelFit,
    fit_models,
    observed_drift,
    plan_changes,
    plan_pulls,
)
from reconciler.models.pulls import (
    PullJob,
    PullResult,
    PullWorker,
    clear_progress,
    disk_message,
    load_progress,
    progress_writer,
    run_pull,
    server_pull_file,
)
from reconciler.server import gpu as gpu_mod
from reconciler.server.record import iso, now_iso, parse_iso
from reconciler.server.settings import ServerSettings
from reconciler.stack.containers import ServiceContainer, service_container
from reconciler.stack.render import Rendered

log = logging.getLogger("lanai")
MiB = 1024**2
DEFAULT_PORT = 11434
# Swarm mode converges the servers on threads of their own; models.lock is one file.
_LOCK_WRITES = threading.Lock()


@dataclass
class ModelsOutcome:
    actions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    next_retry: str | None = None
    pulling: list[str] = field(default_factory=list)  # pulls still in flight (the daemon's)
    # Swarm mode: each Ollama server's own outcome, and the servers left out because their
    # node is down (server -> the sentence). Empty in compose mode, and then not in the JSON.
    servers: dict[str, ModelsOutcome] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)

    @property
    def sync(self) -> str:
        """Progressing while a pull for this commit is in flight, then Failed or Synced."""
        if self.pulling:
            return "Progressing"
        return "Failed" if self.errors else "Synced"

    def to_json(self) -> dict[str, Any]:
        out = {"actions": self.actions, "errors": self.errors, "drift": self.drift,
               "next_retry": self.next_retry, "pulling": self.pulling, "sync": self.sync}
        if self.servers or self.down:
            out["servers"] = {name: o.to_json() for name, o in self.servers.items()}
            out["down"] = self.down
        return out


class OllamaNotReady(Exception):
    pass


def ollama_port(env: list[str]) -> int:
    """The port from the container's OLLAMA_HOST (host, host:port, :port, http://h:p)."""
    value = next((e.split("=", 1)[1] for e in env if e.startswith("OLLAMA_HOST=")), "")
    value = value.split("://", 1)[-1].rstrip("/")
    if ":" in value and not value.endswith("]"):
        port = value.rsplit(":", 1)[1]
        if port.isdigit():
            return int(port)
    return DEFAULT_PORT


def models_dir(env: list[str]) -> str:
    value = next((e.split("=", 1)[1] for e in env if e.startswith("OLLAMA_MODELS=")), "")
    return value or "/root/.ollama/models"


def host_path(mounts: list[dict[str, Any]], inside: str) -> str | None:
    """Where `inside` (a path in the container) lives on the host, by the longest mount."""
    best: tuple[int, str] | None = None
    for mount in mounts:
        dest = (mount.get("Destination") or "").rstrip("/")
        if inside == dest or inside.startswith(dest + "/"):
            source = mount.get("Source")
            if source and (best is None or len(dest) > best[0]):
                best = (len(dest), source + inside[len(dest):])
    return best[1] if best else None


def free_bytes(path: str) -> int | None:
    """Free space for `path` (or its nearest existing parent: the models dir may not exist)."""
    current = Path(path)
    while not current.exists() and current != current.parent:
        current = current.parent
    try:
        stat = os.statvfs(current)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def parameters_of(show: dict[str, Any]) -> dict[str, Any]:
    """The parameters baked into a model, from /api/show's text ('stop "x"\nnum_ctx 8192')."""
    return dict(modelfile.parameters_from_show(show.get("parameters") or ""))


def first_gpu() -> tuple[str, int] | None:
    """The first NVIDIA GPU's name and memory in bytes, from nvidia-smi."""
    gpus = [g for g in gpu_mod.observe_gpus().gpus if g.memory_total_mib]
    return (gpus[0].name, int(gpus[0].memory_total_mib or 0) * MiB) if gpus else None


def connect(settings: ServerSettings, client: docker.DockerClient, rendered: Rendered) -> Ollama:
    """A client for the deployed stack's Ollama (its container address, or ollama_url)."""
    sync = ModelSync(settings, client)
    return Ollama(sync.url(sync.container(rendered)))


class ModelSync:
    """One Ollama's models. Compose mode: the stack's Ollama container on this box. Swarm
    mode (`server` given): one server's Ollama at `url` (reached through the relay), its
    own view of models.yaml, its own GPU (`gpu`: the server's, from its node labels) and
    its own models.<server>.json and pull.<server>.json."""

    def __init__(self, settings: ServerSettings, client: docker.DockerClient, *,
                 progress: Callable[[str], None] | None = None,
                 gpu: Callable[[], tuple[str, int] | None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pulls: PullWorker | None = None,
                 server: Server | None = None, url: str | None = None,
                 started: str | None = None) -> None:
        self.settings = settings
        self.pulls = pulls  # the daemon's pull worker; None: pull in the foreground
        self.docker = client
        self.progress = progress or (lambda msg: log.info(msg))
        self._gpu = gpu or first_gpu
        self.clock = clock
        self.server = server
        self._url = url
        self._started = started  # swarm mode: when the server's Ollama task started
        self.models_file = settings.models_file if server is None else \
            state_mod.server_file(settings.models_file, server.name)
        self.pull_file = settings.pull_file if server is None else \
            server_pull_file(settings.pull_file, server.name)
        self.state = state_mod.load(self.models_file)
        self._loaded = self.state.to_json()
        self.lock = lock_mod.read(settings.models_lock_file) if \
            settings.models_lock_file.exists() else None

    # -- finding Ollama -------------------------------------------------------------

    def container(self, rendered: Rendered) -> ServiceContainer:
        service = rendered.ollama_service
        found = service_container(self.docker, rendered.project, service)
        if found is None:
            raise OllamaNotReady(f"Ollama (service {service}) is not running, so its models "
                                 "wait; see `lanai status`")
        return found

    def url(self, found: ServiceContainer) -> str:
        if self.settings.ollama_url:
            return self.settings.ollama_url.rstrip("/")
        if not found.address:
            raise OllamaNotReady(f"the Ollama container {found.container.name} has no IP "
                                 "address; set ollama_url in /etc/lanai/server.yaml")
        env = found.container.attrs.get("Config", {}).get("Env") or []
        return f"http://{found.address}:{ollama_port(env)}"

    def server_url(self) -> str:
        """Swarm mode: the server's Ollama as the engine reaches it (through the relay)."""
        assert self.server is not None
        if not self._url:
            raise OllamaNotReady(f"lanai has no way to ollama-{self.server.name} yet (the relay "
                                 "on the manager does not list it), so its models wait; see "
                                 "`lanai status`")
        return self._url.rstrip("/")

    def gpu_memory(self, rendered: Rendered) -> int | None:
        if self.server is not None:
            return self._server_gpu_memory(rendered)
        if rendered.ollama_service in rendered.cpu_only:
            return None  # Docker here cannot give Ollama the GPU
        found = self._gpu()
        if found is None:
            return None
        self.state.gpu = {"name": found[0], "memory": found[1]}
        return found[1]

    def _server_gpu_memory(self, rendered: Rendered) -> int | None:
        """The memory this server's models are fitted to: its GPU as its node labels say,
        else what lanai.yaml writes for it; capped by budget.vram as `lanai plan` does. A
        GPU known from neither fits like a server without one (models run, unchecked)."""
        assert self.server is not None and rendered.models is not None
        found = self._gpu()
        gpu = ServerGpu(found[1], found[0], "node labels") if found is not None \
            else server_gpu(self.server, None, None)
        memory, _ = capped(gpu, rendered.models.budget.vram)
        self.state.gpu = {"name": gpu.name, "memory": gpu.memory} if found is not None \
            else None
        return memory

    def own_models(self, rendered: Rendered) -> ModelsConfig | None:
        """models.yaml as this Ollama sees it: all of it in compose mode; in swarm mode the
        models placed on this server (the default only where it is placed)."""
        config = rendered.models
        if config is None or self.server is None:
            return config
        placed = placement([(m.name, m.place) for m in config.local], rendered.config.servers)
        return server_models(config, placed.get(self.server.name, []))

    # -- the converge -----------------------------------------------------------------

    def converge(self, rendered: Rendered, *, retry: bool = False) -> ModelsOutcome:
        out = ModelsOutcome()
        config = self.own_models(rendered)
        if config is None:
            return out
        try:
            found = self.container(rendered) if self.server is None else None
            ollama = Ollama(self.url(found) if found is not None else self.server_url())
        except OllamaNotReady as exc:
            out.errors.append(str(exc))
            return out
        with ollama:
            try:
                self._converge(rendered, config, found.container if found else None, ollama,
                               out, retry)
            except OllamaError as exc:
                out.errors.append(exc.message)
            finally:
                if self.pulls is None:
                    clear_progress(self.pull_file, only_own=True)
                if self.state.to_json() != self._loaded:  # an idle poll writes nothing
                    self.state.updated = now_iso()
                    self._save()
        return out

    def _converge(self, rendered: Rendered, config: ModelsConfig, container: Any | None,
                  ollama: Ollama, out: ModelsOutcome, retry: bool) -> None:
        """`container`: compose's Ollama container (its disk, its start); None in swarm mode,
        where the task runs on another box: no disk check before a pull (Ollama's own
        "no space left" still ends it with its sentence)."""
        bases, fixed = custom_sources(rendered.directory, config)
        if self.pulls is not None:
            for done in self.pulls.take_finished():
                self._record_pull(ollama, rendered, done, out)
        live = self._live(ollama)
        due = self._follow_due(config)
        free_path = host_path(container.attrs.get("Mounts") or [],
                              models_dir(container.attrs.get("Config", {}).get("Env") or [])) \
            if container is not None else None
        pulls = plan_pulls(config, live, follow_due=due)
        if self.pulls is not None:
            self.pulls.keep_only({a.model for a in pulls})
        for action in pulls:
            self._pull(ollama, rendered, config, action, free_path, out, retry)
        if pulls:
            live = self._live(ollama)
        facts = self._facts(ollama, config, live, bases, out)
        rows = fit_models(config, facts, self.gpu_memory(rendered), bases=bases,
                          fixed_contexts=fixed)
        self.state.fits = [r.to_json() for r in rows]
        for row in rows:
            if row.fit is not None and not row.ok:
                out.errors.append(
                    f"{row.name} does not fit the VRAM budget ({human_bytes(row.fit.over)} over; "
                    f"about {round(row.fit.cpu_share * 100)}% would run on the CPU): it runs "
                    "anyway, slower; see `lanai models`")
        hashes = {e.name: self._custom_hash(rendered, e, rows) for e in config.custom}
        recorded = {n: r.source_hash for n, r in self.state.models.items() if r.source_hash}
        managed = {n for n, r in self.state.models.items() if r.managed}
        changes = plan_changes(config, live, rows, managed=managed, custom_hashes=hashes,
                               recorded_hashes=recorded)
        for action in changes:
            if bases.get(action.model) in out.pulling:
                continue  # its FROM is still being pulled: created once it is there
            self._change(ollama, rendered, config, action, hashes, out)
        self._warm(ollama, config, container, out)
        self._verify(ollama, rows, out)
        self._write_lock(facts)

    def _live(self, ollama: Ollama) -> dict[str, LiveModel]:
        live = {}
        for model in ollama.tags():
            rec = self.state.models.get(model.name)
            # num_ctx is known without /api/show when the digest is the one lanai made.
            num_ctx = rec.num_ctx if rec and rec.digest == model.digest else None
            live[model.name] = LiveModel(model.name, model.digest, num_ctx, model.size)
        return live

    def _follow_due(self, config: ModelsConfig) -> set[str]:
        due = set()
        now = datetime.now(UTC)
        for entry in config.pulled:
            if not entry.follow:
                continue
            rec = self.state.models.get(entry.name)
            last = rec.followed_at if rec else None
            if last is None or now - parse_iso(last) >= timedelta(seconds=config.follow_interval):
                due.add(entry.name)
        return due

    def _custom_hash(self, rendered: Rendered, entry: ModelEntry, rows: list[ModelFit]) -> str:
        assert entry.modelfile is not None
        path = rendered.directory / entry.modelfile
        digest = hashlib.sha256(path.read_bytes())
        for name in modelfile.local_files(modelfile.parse(path.read_text())):
            digest.update(name.encode())
            digest.update(_file_sha256(path.parent / name).encode())
        context = next((r.context for r in rows if r.name == entry.name), None)
        digest.update(f"\0ctx={context}".encode())
        return digest.hexdigest()[:16]

    # -- pulls ------------------------------------------------------------------------

    def _pull(self, ollama: Ollama, rendered: Rendered, config: ModelsConfig,
              action: ModelAction, free_path: str | None, out: ModelsOutcome,
              retry: bool) -> None:
        name = action.model
        rec = self.state.record(name)
        if self.pulls is not None and name in self.pulls.in_flight():
            out.pulling.append(name)
            return
        if rec.next_retry and not retry and datetime.now(UTC) < parse_iso(rec.next_retry):
            out.errors.append(f"{name}: {rec.error} (next try {rec.next_retry})")
            out.next_retry = earliest(out.next_retry, rec.next_retry)
            return
        known = self.lock.models.get(name) if self.lock else None
        free = free_bytes(free_path) if free_path else None
        if known is not None and free is not None \
                and known.size > free - config.disk_keep_free:
            self._failed(rendered, rec, name, disk_message(name, known.size, free,
                                                           config.disk_keep_free, free_path),
                         out, deterministic=True)
            return
        job = PullJob(name, ollama.base_url, action.reason, free, free_path,
                      config.disk_keep_free)
        if self.pulls is not None:
            self.pulls.submit(job)
            out.pulling.append(name)
            return
        elsewhere = load_progress(self.pull_file)
        if elsewhere and elsewhere.get("model") == name and elsewhere.get("pid") != os.getpid():
            out.pulling.append(name)  # the daemon is pulling it: not twice at once
            return
        self.progress(f"pulling {name} ({action.reason})")
        # pull.json stays until this converge ends (it says the models are on their way).
        done = run_pull(ollama, job, progress_writer(
            self.pull_file, name, self.clock,
            lambda p: self.progress(_progress_line(p))), clock=self.clock)
        self._record_pull(ollama, rendered, done, out)

    def _record_pull(self, ollama: Ollama, rendered: Rendered, done: PullResult,
                     out: ModelsOutcome) -> None:
        """A pull's end in models.json and the outcome (the foreground's, or the worker's
        taken up by the next converge)."""
        name = done.model
        rec = self.state.record(name)
        if done.error is not None:
            self._failed(rendered, rec, name, done.error, out, deterministic=done.deterministic)
            return
        tags = {m.name: m for m in ollama.tags()}
        pulled = tags.get(name)
        previous = rec.upstream_digest
        rec.upstream_digest = pulled.digest if pulled else None
        rec.digest, rec.num_ctx = rec.upstream_digest, None  # the pull rewrote the manifest
        rec.pulled_at = rec.followed_at = now_iso()
        rec.error, rec.failures, rec.next_retry = None, 0, None
        changed = "new upstream version" if previous and previous != rec.upstream_digest \
            else done.reason
        out.actions.append({"kind": "pull", "model": name, "reason": changed, "result": "ok",
                            "seconds": done.seconds, "size": pulled.size if pulled else None})

    def _failed(self, rendered: Rendered, rec: state_mod.ModelRecord, name: str, message: str,
                out: ModelsOutcome, *, deterministic: bool = False) -> None:
        retry = rendered.config.sync.retry
        rec.failures += 1
        rec.error = message
        delay = min(retry.max, retry.initial * 2 ** (rec.failures - 1))
        if deterministic:
            delay = max(delay, retry.max)  # disk space does not come back in ten seconds
        rec.next_retry = iso(datetime.now(UTC) + timedelta(seconds=delay))
        out.next_retry = earliest(out.next_retry, rec.next_retry)
        out.errors.append(message)
        out.actions.append({"kind": "pull", "model": name, "result": "failed", "error": message})
        self.progress(message)

    # -- facts, changes, warm, verify ---------------------------------------------------

    def _facts(self, ollama: Ollama, config: ModelsConfig, live: dict[str, LiveModel],
               bases: dict[str, str], out: ModelsOutcome) -> dict[str, ModelFacts]:
        facts: dict[str, ModelFacts] = {}
        cached = self._cached_facts()
        wanted = {e.name for e in config.pulled} | set(bases.values())
        for name in sorted(wanted):
            model = live.get(name)
            if model is None:
                if name in cached:
                    facts[name] = cached[name]  # not pulled yet: size it from models.lock
                continue
            rec = self.state.models.get(name)
            have = cached.get(name)
            if have is not None and rec is not None and rec.digest == model.digest \
                    and rec.num_ctx is not None:
                facts[name] = have
                continue
            show = ollama.show(name)
            rec = self.state.record(name)  # declared, so lanai manages it from now on
            facts[name] = ModelFacts.from_show(name, show, size=model.size,
                                               digest=rec.upstream_digest or model.digest)
            rec.digest = model.digest
            rec.num_ctx = num_ctx_of(parameters_of(show))
            live[name] = LiveModel(name, model.digest, rec.num_ctx)
            entry = config.entry(name)
            quant = facts[name].quantization
            if entry and entry.quantization and quant \
                    and entry.quantization.lower() != quant.lower():
                out.errors.append(f"{name} is {quant} but models.yaml asks for "
                                  f"{entry.quantization}; name the tag with that quantization")
        return facts

    def _cached_facts(self) -> dict[str, ModelFacts]:
        return dict(self.lock.models) if self.lock else {}

    def _change(self, ollama: Ollama, rendered: Rendered, config: ModelsConfig,
                action: ModelAction, hashes: dict[str, str], out: ModelsOutcome) -> None:
        name = action.model
        started = self.clock()
        result: dict[str, Any] = {**action.to_json(), "result": "ok"}
        try:
            if action.kind == "tune":
                self.progress(f"setting num_ctx {action.context} on {name}")
                params = parameters_of(ollama.show(name))
                params["num_ctx"] = action.context
                ollama.create({"model": name, "from": name, "parameters": params})
                self._after_change(ollama, name, action.context)
            elif action.kind == "create":
                self.progress(f"creating {name} ({action.reason})")
                self._create(ollama, rendered, config.entry(name), action.context)
                rec = self._after_change(ollama, name, action.context)
                rec.source_hash = hashes.get(name)
                rec.managed = True
            elif action.kind == "remove":
                self.progress(f"removing {name} ({action.reason})")
                ollama.delete(name)
                self.state.models.pop(name, None)
        except (OllamaError, modelfile.ModelfileError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            result.update(result="failed", error=message)
            out.errors.append(f"{action.kind} {name} failed: {message}")
        result["seconds"] = round(self.clock() - started, 2)
        out.actions.append(result)

    def _after_change(self, ollama: Ollama, name: str, context: int | None
                      ) -> state_mod.ModelRecord:
        rec = self.state.record(name)
        rec.digest = next((m.digest for m in ollama.tags() if m.name == name), None)
        rec.num_ctx = num_ctx_of(parameters_of(ollama.show(name)))
        rec.context = context
        return rec

    def _create(self, ollama: Ollama, rendered: Rendered, entry: ModelEntry | None,
                context: int | None) -> None:
        assert entry is not None and entry.modelfile is not None
        path = rendered.directory / entry.modelfile
        parsed = modelfile.parse(path.read_text(encoding="utf-8"))
        digests = {name: ollama.push_blob(path.parent / name)
                   for name in modelfile.local_files(parsed)}
        request = modelfile.to_create_request(entry.name, parsed, adapter_digests=digests)
        params = dict(request.get("parameters") or {})
        if context is not None and "num_ctx" not in params:
            params["num_ctx"] = context
        request["parameters"] = params
        ollama.create(request)

    def _warm(self, ollama: Ollama, config: ModelsConfig, container: Any | None,
              out: ModelsOutcome) -> None:
        # A restarted Ollama has nothing loaded: warm again (swarm mode: its task's start).
        started = container.attrs.get("State", {}).get("StartedAt") if container \
            else self._started
        changed = any(a.get("result") == "ok" for a in out.actions)
        if not config.default or (not changed and self.state.ollama_started == started):
            return
        if config.default not in {m.name for m in ollama.tags()}:
            return
        self.progress(f"loading {config.default} so the first chat does not wait")
        began = self.clock()
        try:
            ollama.load(config.default, keep_alive=config.ollama.keep_alive)
        except OllamaError as exc:
            out.errors.append(f"loading {config.default} failed: {exc.message}")
            return
        self.state.ollama_started = started
        out.actions.append({"kind": "warm", "model": config.default, "result": "ok",
                            "seconds": round(self.clock() - began, 2)})

    def _verify(self, ollama: Ollama, rows: list[ModelFit], out: ModelsOutcome) -> None:
        estimates = {r.name: r.fit.estimate.loaded_size for r in rows if r.fit is not None}
        has_gpu = any(r.budget is not None for r in rows)
        for loaded in ollama.ps():
            rec = self.state.models.get(loaded.name)
            if rec is None:
                continue
            rec.observed = {"size": loaded.size, "size_vram": loaded.size_vram,
                            "context": loaded.context_length}
            rec.drift = observed_drift(loaded.name, estimates.get(loaded.name), loaded.size,
                                       loaded.size_vram, has_gpu)
            if rec.drift:
                out.drift.append(rec.drift)

    def _write_lock(self, facts: dict[str, ModelFacts]) -> None:
        gpu = self.state.gpu or {}
        if self.server is None:
            lock = lock_mod.ModelsLock(gpu_name=gpu.get("name"), gpu_memory=gpu.get("memory"),
                                       models=facts)
        else:  # the server's GPU under servers:, only when its node labels said it
            known = {self.server.name: lock_mod.GpuFact(gpu.get("name"), gpu.get("memory"))} \
                if gpu else {}
            lock = lock_mod.ModelsLock(models=facts, servers=known)
        with _LOCK_WRITES:
            if self.server is not None and self.settings.models_lock_file.exists():
                # Another server's thread may have written it since this one read it.
                self.lock = lock_mod.read(self.settings.models_lock_file)
            if self.lock is not None:
                lock = self.lock.merged(lock)
            if lock == self.lock:
                return  # an idle poll writes nothing
            self.lock = lock
            self.settings.models_lock_file.parent.mkdir(parents=True, exist_ok=True)
            lock_mod.write(self.settings.models_lock_file, lock)

    def _save(self) -> None:
        state_mod.save(self.models_file, self.state)


def _progress_line(p: PullProgress) -> str:
    pct = 100 * p.completed / p.total if p.total else 0
    rate = f", {human_bytes(int(p.rate))}/s" if p.rate else ""
    eta = f", {int(p.eta)}s left" if p.eta is not None else ""
    return f"  {p.model}: {pct:.0f}% of {human_bytes(p.total)}{rate}{eta}"


def earliest(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b, key=parse_iso)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
