"""Model pulls outside the reconcile: the daemon's one pull worker, and pull.json.

A pull of tens of gigabytes takes hours on home internet. Under the reconcile's lock
it would hold back every heal, deploy and backup for that long. So in the daemon the
models step hands a missing model to this worker and carries on; the worker pulls one
model at a time without the lock, writes its progress to pull.json (for `lanai status`,
another process) and, when a pull ends, tells the daemon, whose next reconcile records
the result and converges the rest of the models step (num_ctx, custom models, warm).

`lanai reconcile` outside the daemon still pulls in the foreground, with progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.files import write_json_atomic
from reconciler.core.sizes import human_bytes
from reconciler.models.ollama import (
    Ollama,
    OllamaError,
    PullAborted,
    PullProgress,
    unreached_registry,
)
from reconciler.server.record import now_iso

log = logging.getLogger("lanai")
PROGRESS_EVERY_S = 1.0
CANCELLED = "no longer wanted by the applied commit"


@dataclass(frozen=True)
class PullJob:
    """What one pull needs, fixed when it is handed over (the reconcile's lock is not
    held while it runs, so it reads nothing the reconcile may be changing)."""

    model: str
    url: str  # Ollama's address
    reason: str  # why: "not on the server", a follow check
    free: int | None  # bytes free on Ollama's volume when it was handed over
    free_path: str | None
    keep_free: int  # models.yaml's disk_keep_free


@dataclass(frozen=True)
class PullResult:
    model: str
    reason: str
    error: str | None  # None: pulled
    deterministic: bool  # a full disk: not retried soon
    seconds: float
    cancelled: bool = False


# -- one pull, as both the foreground and the worker run it ------------------------------

def disk_message(name: str, size: int, free: int, keep_free: int, path: str | None) -> str:
    return (f"not pulling {name}: it needs {human_bytes(size)} and Ollama's volume "
            f"({path}) has {human_bytes(max(0, free))} free, of which "
            f"{human_bytes(keep_free)} is kept free (disk_keep_free); free "
            "some space (`lanai models` lists what is there) or remove a model from "
            "models.yaml")


def disk_full_message(name: str, path: str | None) -> str:
    where = f" ({path})" if path else ""
    return (f"pulling {name} stopped half way: Ollama's volume{where} is full (no space "
            "left on device); free some space (`lanai models` lists what is there) or "
            "remove a model from models.yaml, then run `lanai reconcile --retry`")


def run_pull(ollama: Ollama, job: PullJob, on_progress: Callable[[PullProgress], None],
             cancelled: Callable[[], bool] = lambda: False,
             clock: Callable[[], float] = time.monotonic) -> PullResult:
    """Pull `job.model`; every way it can end becomes a result with its sentence."""
    def should_abort(p: PullProgress) -> str | None:
        if cancelled():
            return CANCELLED
        if job.free is not None and p.total and p.total - p.completed > job.free - \
                job.keep_free:
            return disk_message(job.model, p.total, job.free, job.keep_free, job.free_path)
        return None

    started = clock()

    def result(error: str | None = None, deterministic: bool = False,
               cancel: bool = False) -> PullResult:
        return PullResult(job.model, job.reason, error, deterministic,
                          round(clock() - started, 2), cancel)

    try:
        ollama.pull(job.model, on_progress=on_progress, should_abort=should_abort)
    except PullAborted as exc:
        if exc.reason == CANCELLED:
            return result(cancel=True)
        return result(exc.reason, deterministic=True)
    except OllamaError as exc:
        if "no space left on device" in (exc.detail or exc.message):
            # The disk filled up during the pull: not transient, so wait as for a refusal.
            return result(disk_full_message(job.model, job.free_path), deterministic=True)
        return result(pull_failed_message(job.model, exc))
    return result()


def pull_failed_message(name: str, exc: OllamaError) -> str:
    unreached = unreached_registry(exc.detail or exc.message)
    if unreached is None:
        return f"pulling {name} failed: {exc.message}"
    host, cause = unreached
    # Transient (lanai retries with backoff), but also what a stack whose Ollama is only on
    # `internal: true` networks gets at every try.
    return (f"pulling {name} failed: Ollama could not reach the model registry {host} "
            f"({cause}); check the server's internet connection, and that the ollama "
            "service in compose.yaml joins a network with a route out (not only "
            "`internal: true` ones; the example's is `egress`)")


# -- pull.json: the pull in progress, for `lanai status` ---------------------------------

def server_pull_file(pull_file: Path, server: str) -> Path:
    """Swarm mode: one server's pull in progress (pull.box-b.json beside pull.json)."""
    return pull_file.with_name(f"{pull_file.stem}.{server}{pull_file.suffix}")


def progress_writer(path: Path, model: str, clock: Callable[[], float] = time.monotonic,
                    say: Callable[[PullProgress], None] | None = None
                    ) -> Callable[[PullProgress], None]:
    """An on_progress that writes pull.json about once a second (and says so)."""
    last = [float("-inf")]

    def on_progress(p: PullProgress) -> None:
        now = clock()
        if now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        write_json_atomic(path, {"model": model, "status": p.status, "completed": p.completed,
                                 "total": p.total, "rate": p.rate, "eta": p.eta,
                                 "at": now_iso(), "pid": os.getpid()})
        if say is not None and p.total:
            say(p)

    return on_progress


def load_progress(path: Path) -> dict[str, Any] | None:
    """The pull in progress, or None; a file left by a process that is gone is ignored."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("model"):
        return None
    if not _alive(data.get("pid")):
        return None
    total, completed = data.get("total") or 0, data.get("completed") or 0
    data["percent"] = round(100 * completed / total, 1) if total else None
    return data


def clear_progress(path: Path, *, only_own: bool = False) -> None:
    """Remove pull.json; with only_own, only when this process wrote it (a `lanai
    reconcile` by hand never removes the daemon's)."""
    if only_own:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") != os.getpid():
                return
        except (OSError, ValueError, AttributeError):
            return
    path.unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


# -- the daemon's worker ---------------------------------------------------------------------

Puller = Callable[[PullJob, Callable[[], bool]], PullResult]


class PullWorker:
    """One pull at a time, on a thread of its own, in the order they were handed over.

    The reconcile (under its lock) calls `take_finished`, `keep_only` and `submit`; the
    thread only pulls. A finished result waits in memory until a reconcile takes it, so
    models.json is written by the reconcile alone."""

    def __init__(self, puller: Puller, on_done: Callable[[PullResult], None]) -> None:
        self._puller = puller
        self._on_done = on_done
        self._cond = threading.Condition()
        self._queue: list[PullJob] = []
        self._running: PullJob | None = None
        self._cancel: threading.Event = threading.Event()
        self._finished: dict[str, PullResult] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._servers: dict[str, PullWorker] = {}  # swarm mode: a worker per Ollama server

    # -- what the reconcile asks -----------------------------------------------------------

    def submit(self, job: PullJob) -> None:
        """Pull `job.model` unless it is pulling, queued, or finished and not yet taken."""
        with self._cond:
            if job.model in self._busy():
                return
            self._queue.append(job)
            self._cond.notify()
        self._start()

    def in_flight(self) -> list[str]:
        """Models being pulled or waiting for their turn, the running one first."""
        with self._cond:
            running = [self._running.model] if self._running else []
            return running + [j.model for j in self._queue]

    def running(self) -> str | None:
        with self._cond:
            return self._running.model if self._running else None

    def take_finished(self) -> list[PullResult]:
        with self._cond:
            done = list(self._finished.values())
            self._finished.clear()
            return done

    def keep_only(self, wanted: set[str]) -> list[str]:
        """A newer commit no longer wants some models: drop them from the queue and stop
        the running pull at its next progress report (Ollama keeps what it downloaded,
        so a later pull of the same model resumes). Returns the models let go."""
        with self._cond:
            dropped = [j.model for j in self._queue if j.model not in wanted]
            self._queue = [j for j in self._queue if j.model in wanted]
            if self._running is not None and self._running.model not in wanted:
                self._cancel.set()
                dropped.insert(0, self._running.model)
            return dropped

    def for_server(self, server: str, puller: Puller) -> PullWorker:
        """Swarm mode: the worker of one Ollama server, made with `puller` on first use and
        kept for as long as this one (the engine makes its parts anew every reconcile), so a
        long pull on one server never holds back another's. It tells the same on_done."""
        with self._cond:
            worker = self._servers.get(server)
            if worker is None:
                worker = self._servers[server] = PullWorker(puller, self._on_done)
            return worker

    def servers(self) -> dict[str, PullWorker]:
        with self._cond:
            return dict(self._servers)

    def stop(self, timeout: float = 10.0) -> None:
        """The daemon stops: the queue is dropped and the running pull cancelled (each
        server's too)."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cancel.set()
            self._cond.notify_all()
            thread = self._thread
            servers = list(self._servers.values())
        for worker in servers:
            worker.stop(timeout)
        if thread is not None:
            thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------

    def _busy(self) -> set[str]:
        busy = {j.model for j in self._queue} | set(self._finished)
        if self._running is not None:
            busy.add(self._running.model)
        return busy

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._loop, name="pulls", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._running = self._queue.pop(0)
                self._cancel = cancel = threading.Event()
            try:
                result = self._puller(job, cancel.is_set)
            except Exception as exc:  # the worker must outlive any one bad pull
                log.exception("pulling %s crashed", job.model)
                result = PullResult(job.model, job.reason, f"pulling {job.model} failed: {exc}",
                                    False, 0.0)
            with self._cond:
                self._running = None
                if not result.cancelled:
                    self._finished[job.model] = result
            if result.cancelled:
                log.info("pull of %s stopped: %s", job.model, CANCELLED)
                continue
            with contextlib.suppress(Exception):
                self._on_done(result)


def ollama_puller(progress_file: Path, say: Callable[[str], None]) -> Puller:
    """The worker's pull: through Ollama's API, its progress in pull.json."""
    def pull(job: PullJob, cancelled: Callable[[], bool]) -> PullResult:
        say(f"pulling {job.model} in the background ({job.reason})")
        try:
            with Ollama(job.url) as ollama:
                return run_pull(ollama, job, progress_writer(progress_file, job.model),
                                cancelled)
        finally:
            clear_progress(progress_file)

    return pull
