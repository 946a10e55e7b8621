"""`lanai run`: the reconciler daemon.

apscheduler runs every reconcile on one worker thread, so they never overlap
in this process (the lock covers other processes). Three things queue one:
the poll interval, a poke on the control socket (the state repo's
post-receive hook, `lanai reconcile --now`, `lanai resume`), and Docker events
of managed containers (a stop, a death, a failing health check), which are
seen within a second and start a drift check at once. A forge's signed push
webhook (reconciler.daemon.webhook, when server.yaml sets webhook_listen) queues one too.
With metrics_listen set, /metrics (reconciler.metrics) is served on a thread of its own:
each reconcile's outcome is counted here, the rest is read at scrape time. The status page
(reconciler.statuspage) is served on a Unix socket for the https proxy; both read the same
live readings, each taken at most once per interval.

Model pulls do not run on that worker: a pull of tens of gigabytes would hold back
every heal, deploy and backup for hours. They run on one pull worker of their own
(reconciler.models.pulls), outside the reconcile lock; when one ends it queues a reconcile,
which records it and finishes the models step.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import queue as queue_mod
import signal
import socketserver
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from reconciler.core.errors import ExitCode, LanaiError, LockHeld
from reconciler.daemon.control import SOCKET_TIMEOUT_S
from reconciler.daemon.webhook import WebhookServer, webhook_config
from reconciler.engine.reconcile import Engine, unexpected
from reconciler.metrics.collect import LanaiCollector
from reconciler.metrics.live import Live
from reconciler.metrics.reconciles import ReconcileMetrics
from reconciler.metrics.serve import MetricsServer, metrics_address
from reconciler.models.pulls import PullResult, PullWorker, ollama_puller
from reconciler.notify import send as notify_send
from reconciler.notify.notices import Notice
from reconciler.server.record import Outcome, parse_iso
from reconciler.server.settings import ServerSettings
from reconciler.stack.facts import LABEL_PROJECT
from reconciler.stack.health import sync_status
from reconciler.stack.render import LABEL_MANAGED
from reconciler.statuspage.app import StatusApp
from reconciler.statuspage.serve import StatusServer

log = logging.getLogger("lanai.daemon")
EVENT_ACTIONS = {"die", "stop", "kill", "destroy", "oom", "pause", "health_status: unhealthy"}
EVENT_DEBOUNCE_S = 0.2
SOCKET_GROUP = "lanai"
# The longest a push waits for its reconcile (an image pull may take longer: it goes on).
MAX_WAIT_S = 60.0


class Daemon:
    def __init__(self, settings: ServerSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or Engine(settings)
        self.pulls = PullWorker(ollama_puller(settings.pull_file, log.info), self._pulled)
        self.engine.pulls = self.pulls
        self._worker = ThreadPoolExecutor(1)
        self.scheduler = BackgroundScheduler(
            executors={"default": self._worker},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC")
        self.stopping = threading.Event()
        self.poll_interval = 60.0
        self._server: socketserver.UnixStreamServer | None = None
        self.last_outcome: Outcome | None = None
        self._daily_at: dict[str, str | None] = {}  # daily job id -> its HH:MM (UTC)
        self._pending: set[str] = set()
        # Pushes waiting for the result of the reconcile their poke queued (the hook prints it).
        self._waiters: dict[str, list[queue_mod.SimpleQueue[dict[str, Any]]]] = {}
        self._events: tuple[Any, str | None] = (None, None)
        self._pending_lock = threading.Lock()
        # Counted whether or not /metrics is served: a few increments per reconcile.
        self.registry = CollectorRegistry()
        self.metrics = ReconcileMetrics(self.registry)
        # Docker, Ollama and nvidia-smi as /metrics and the status page see them (cached).
        self.live = Live(settings, docker_client=self.engine.client_factory)

    # -- scheduling -----------------------------------------------------------

    def queue(self, trigger: str, *, retry: bool = False, delay: float = 0.0,
              waiter: queue_mod.SimpleQueue[dict[str, Any]] | None = None) -> None:
        """Run a reconcile soon; requests of one kind that have not started yet collapse.

        A request that arrives while a reconcile runs is kept (it may carry a newer
        push or a new failure) and runs right after it, on the single worker.
        """
        with self._pending_lock:
            if waiter is not None:  # told by the next run of `trigger` to start
                self._waiters.setdefault(trigger, []).append(waiter)
            if trigger in self._pending and not retry:
                return
            self._pending.add(trigger)
        when = datetime.now(UTC) + timedelta(seconds=delay)
        self.scheduler.add_job(self._run, "date", run_date=when,
                               id=f"{trigger}-{time.monotonic_ns()}",
                               kwargs={"trigger": trigger, "retry": retry, "queued": True})

    def _run(self, trigger: str, retry: bool = False, queued: bool = False) -> None:
        waiters: list[queue_mod.SimpleQueue[dict[str, Any]]] = []
        if queued:
            with self._pending_lock:
                self._pending.discard(trigger)
                waiters = self._waiters.pop(trigger, [])
        started = time.monotonic()
        try:
            outcome = self.engine.reconcile(trigger=trigger, retry=retry)
        except LockHeld as exc:
            log.info("%s; trying again in 2s", exc.message)
            for waiter in waiters:  # they wait for the run that gets the lock
                self.queue(trigger, retry=retry, delay=2, waiter=waiter)
            if not waiters:
                self.queue(trigger, retry=retry, delay=2)
            return
        except LanaiError as exc:
            log.error("reconcile (%s) failed: %s", trigger, exc.message)
            failed = Outcome("failed", error=exc.message, exit_code=int(exc.exit_code))
            self.metrics.observe(failed)
            self._answer(waiters, failed)
            self._tell(failed)
            return
        except Exception as exc:  # the daemon must outlive any one bad reconcile
            log.exception("reconcile (%s) crashed", trigger)
            failed = Outcome("failed", error=unexpected("reconciling", exc),
                             exit_code=int(ExitCode.APPLY_FAILED))
            self.metrics.observe(failed)
            self._answer(waiters, failed)
            self._tell(failed)
            return
        self.last_outcome = outcome
        self.metrics.observe(outcome)
        self._answer(waiters, outcome)
        self._log(outcome, trigger, time.monotonic() - started)
        self._after(outcome)

    def _answer(self, waiters: list[queue_mod.SimpleQueue[dict[str, Any]]],
                outcome: Outcome) -> None:
        if not waiters:
            return
        state = self.engine.state()
        reply = {"ok": True, "done": True, "status": outcome.status,
                 "sync": sync_status(state),
                 "commit": outcome.commit, "applied_commit": outcome.applied_commit,
                 "error": outcome.error, "exit_code": outcome.exit_code}
        for waiter in waiters:
            waiter.put(reply)

    def _pulled(self, result: PullResult) -> None:
        """A background pull ended: the next reconcile records it and finishes the models."""
        log.info("pull of %s %s after %.0fs", result.model,
                 "failed" if result.error else "finished", result.seconds)
        self.queue("models-pulled")

    def _log(self, outcome: Outcome, trigger: str, seconds: float) -> None:
        commit = (outcome.commit or "?")[:12]
        if outcome.status in ("no-op",) and not outcome.drift:
            log.debug("%s: commit %s, nothing to do (%.0f ms)", trigger, commit, seconds * 1000)
            return
        actions = ", ".join(f"{a['kind']} {a['service']}: {a['result']}"
                            for a in outcome.actions) or "no actions"
        level = logging.ERROR if outcome.error else logging.INFO
        log.log(level, "%s: commit %s -> %s (%s)%s", trigger, commit, outcome.status, actions,
                f": {outcome.error}" if outcome.error else "")
        for drift in outcome.drift:
            log.warning("drift: %s %s: %s", drift["service"], drift["kind"], drift["detail"])

    def _after(self, outcome: Outcome) -> None:
        """Follow-ups: a transient failure retries on its backoff; the poll interval follows git."""
        state = self.engine.state()
        self._tell(outcome)
        failure = state.failure
        if failure and not failure.deterministic and failure.next_retry:
            due = parse_iso(failure.next_retry)
            delay = max(0.0, (due - datetime.now(UTC)).total_seconds())
            self.queue("retry", delay=delay)
        models_retry = outcome.models.get("next_retry") if outcome.models else None
        if models_retry:
            # A model that failed to pull is tried again on its own backoff, not the poll's.
            delay = max(0.0, (parse_iso(models_retry) - datetime.now(UTC)).total_seconds())
            self.queue("models-retry", delay=delay)
        self._follow_project()
        applied = self.engine.applied(state)
        if applied is not None:
            interval = applied.config.source.poll_interval
            if interval != self.poll_interval:
                self.poll_interval = interval
                self.scheduler.reschedule_job("poll", trigger="interval", seconds=interval)
                log.info("poll interval is now %.0fs", interval)
            self._schedule_report(applied.config.drift_report.at)
            self._schedule_backups(applied.config.backups.schedule)

    def _tell(self, outcome: Outcome) -> None:
        """Notices to the owner and the drift since-times; a failure here is only logged."""
        try:
            state = self.engine.state()
            notify_send.after_reconcile(self.settings, self.engine.applied(state),
                                        outcome.to_json(), state.drift)
        except Exception:
            log.exception("telling the owner failed")

    def _schedule_report(self, at: str) -> None:
        """The daily drift report runs on the reconcile worker, at drift_report.at (UTC)."""
        self._daily("drift-report", self._report, at)

    def _daily(self, job_id: str, func: Any, at: str | None) -> None:
        """A job at HH:MM UTC every day on the reconcile worker (so it never overlaps a
        deploy); rescheduled when the applied commit changes the time, gone with None."""
        if self._daily_at.get(job_id) == at:
            return
        if at is None:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job_id)
        else:
            hour, minute = (int(part) for part in at.split(":"))
            self.scheduler.add_job(func, "cron", hour=hour, minute=minute, id=job_id,
                                   replace_existing=True)
        self._daily_at[job_id] = at

    def _report(self) -> None:
        applied = self.engine.deployed()
        notify_send.daily_report(self.settings, applied.config if applied else None)

    def _schedule_backups(self, at: str | None) -> None:
        """The daily backup (backups.schedule, UTC)."""
        self._daily("backup", self._backup, at)

    def _backup(self) -> None:
        applied = self.engine.deployed()
        try:
            taken = self.engine.backup(kind="scheduled", reason="daily")
        except LockHeld:
            self.scheduler.add_job(self._backup, "date", id="backup-retry", replace_existing=True,
                                   run_date=datetime.now(UTC) + timedelta(seconds=60))
            return
        except LanaiError as exc:
            log.error("scheduled backup failed: %s", exc.message)
            if applied is not None:
                notify_send.notify_event(self.settings, applied.config, Notice(
                    "failure", f"backup: {exc.message}", "lanai: the daily backup failed",
                    exc.message))
            return
        except Exception:  # the daemon must outlive a bad backup
            log.exception("scheduled backup crashed")
            return
        if taken is not None:
            log.info("scheduled backup %s taken (%d bytes)", taken.id, taken.size)

    # -- inputs ---------------------------------------------------------------

    def serve_socket(self) -> None:
        path = self.settings.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(SOCKET_TIMEOUT_S)
                try:
                    request = json.loads(self.rfile.readline() or b"{}")
                except (ValueError, OSError):  # ValueError: bad JSON or bytes not UTF-8
                    request = {}
                if not isinstance(request, dict):  # a JSON list or string: unknown too
                    request = {}
                reply = daemon.handle(request)
                self.wfile.write((json.dumps(reply) + "\n").encode())

        old_umask = os.umask(0o117)  # socket: owner and group only
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        finally:
            os.umask(old_umask)
        with contextlib.suppress(KeyError):  # the lanai group (who push) may poke us
            os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)
        threading.Thread(target=self._server.serve_forever, name="socket", daemon=True).start()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "ping":
            return {"ok": True, "pid": os.getpid()}
        if command == "reconcile":
            trigger = str(request.get("trigger") or "poke")
            try:
                wait_s = min(float(request.get("wait_s") or 0), MAX_WAIT_S)
            except (TypeError, ValueError):
                wait_s = 0.0
            if wait_s <= 0:
                self.queue(trigger, retry=bool(request.get("retry")))
                return {"ok": True, "queued": True}
            waiter: queue_mod.SimpleQueue[dict[str, Any]] = queue_mod.SimpleQueue()
            self.queue(trigger, retry=bool(request.get("retry")), waiter=waiter)
            try:
                return waiter.get(timeout=wait_s)
            except queue_mod.Empty:
                return {"ok": True, "queued": True, "done": False}
        return {"ok": False, "error": f"unknown command {command!r}"}

    def watch_events(self) -> None:
        """Follow Docker events of managed containers; reconnect with backoff if Docker goes."""
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                client = self.engine.client_factory()
                project = self._project()
                labels = [f"{LABEL_MANAGED}=true"]
                if project:
                    labels.append(f"{LABEL_PROJECT}={project}")
                # Filtered by the engine: health-check execs and other projects never reach us.
                stream = client.events(decode=True, filters={
                    "type": "container", "label": labels,
                    "event": sorted({a.split(":")[0] for a in EVENT_ACTIONS})})
                self._events = (stream, project)
                backoff = 1.0
                for event in stream:
                    if self.stopping.is_set():
                        break
                    action = str(event.get("Action") or event.get("status") or "")
                    if action in EVENT_ACTIONS:
                        service = (event.get("Actor") or {}).get("Attributes", {}).get(
                            "com.docker.compose.service", "?")
                        log.info("docker event: %s %s", service, action)
                        self.queue("event", delay=EVENT_DEBOUNCE_S)
            except Exception as exc:  # Docker restarting, socket gone: keep trying
                if self.stopping.is_set():
                    break
                log.warning("docker events unavailable (%s); retrying in %.0fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30)
                # A restarted Docker daemon may have changed anything: look now.
                self.queue("docker-restart", delay=0)

    def _project(self) -> str | None:
        applied = self.engine.deployed()
        return applied.project if applied else None

    def _follow_project(self) -> None:
        """Reconnect the event stream when the applied commit renamed the project."""
        stream, project = self._events
        if stream is not None and project != self._project():
            stream.close()

    # -- lifecycle --------------------------------------------------------------

    def metrics_server(self, host: str, port: int) -> MetricsServer:
        """/metrics on host:port, bound now (a taken port refuses the start), not started."""
        collector = LanaiCollector(self.settings, self.live, self.metrics)
        server = MetricsServer(host, port, self.registry)
        self.registry.register(collector)
        return server

    def status_page(self) -> StatusServer | None:
        """The status page's socket, started; a failure costs the page, not the daemon."""
        server = StatusServer(self.settings.status_socket, StatusApp(self.settings, self.live))
        try:
            return server.start()
        except OSError as exc:
            log.error("the status page cannot listen on %s (%s); https://<server>/lanai/ "
                      "answers 502 until the daemon is restarted", server.path,
                      exc.strerror or exc)
            return None

    def run(self) -> None:
        # A weak or broken webhook setup refuses the start before anything listens.
        hook_config = webhook_config(self.settings)
        address = metrics_address(self.settings)
        webhook = WebhookServer(hook_config, self.queue) if hook_config else None
        try:
            metrics = self.metrics_server(*address) if address else None
        except LanaiError:
            if webhook is not None:  # bound, not started: close it, start nothing
                webhook.httpd.server_close()
            raise
        self.serve_socket()
        status = self.status_page()
        self.scheduler.add_job(self._run, "interval", seconds=self.poll_interval, id="poll",
                               kwargs={"trigger": "poll"})
        self.scheduler.start()
        self.queue("start")
        if webhook is not None:
            webhook.start()
        if metrics is not None:
            metrics.start()
        threading.Thread(target=self.watch_events, name="events", daemon=True).start()
        log.info("lanai daemon started (pid %d), following %s", os.getpid(),
                 self.settings.repo)
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.stopping.wait()
        log.info("stopping: waiting for a running reconcile to finish")
        if webhook is not None:
            webhook.stop()
        if metrics is not None:
            metrics.stop()
        if status is not None:
            status.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        # Let a running reconcile finish before shutdown() takes the scheduler's locks: its
        # follow-ups (reschedule_job, queue) need them, so a stop mid-deploy would deadlock.
        self.scheduler.pause()
        self.pulls.stop()  # Ollama keeps what it downloaded: the next start resumes it
        self._worker.shutdown(wait=True)
        self.scheduler.shutdown(wait=True)
        self.settings.socket_path.unlink(missing_ok=True)

