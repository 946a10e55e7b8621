"""The scrape: a prometheus_client Collector that reads lanai's own records (state,
history, models, bench runs, backups) and the live readings (live.Live, cached per
interval) each time /metrics is asked, and never takes the reconcile lock.

Label values are service and model names from the state repo, health and drift kinds,
filesystem paths and GPU indexes: never a secret, never anything read from a secret.
"""

from __future__ import annotations

import shutil
import statistics
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.backup.store import Store
from reconciler.bench.compare import limit_pct
from reconciler.bench.store import BenchRun, load_runs
from reconciler.metrics.live import Live
from reconciler.metrics.reconciles import ReconcileMetrics
from reconciler.models import state as models_state
from reconciler.models.ollama import Loaded
from reconciler.server import working
from reconciler.server.record import State, load_state, parse_iso, read_history
from reconciler.server.settings import ServerSettings
from reconciler.stack import readiness
from reconciler.stack.health import service_health, sync_status
from reconciler.stack.render import Rendered
from reconciler.stack.sync import applied_deployment

HEALTHS = ("Healthy", "Progressing", "Degraded", "Missing", "Suspended", "Unknown")
HISTORY_LIMIT = 1000  # records read for the last successful apply of each service
MiB = 1024 * 1024


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _stamp(text: str | None) -> float | None:
    try:
        return parse_iso(text).timestamp() if text else None
    except ValueError:
        return None


class LanaiCollector(Collector):
    def __init__(self, settings: ServerSettings, live: Live,
                 reconciles: ReconcileMetrics | None = None) -> None:
        self.settings = settings
        self.live = live
        self.reconciles = reconciles
        self._drift_kinds: set[str] = set()  # every kind seen stays exported (0)
        self._history: tuple[tuple[int, int] | None, dict[str, float]] = (None, {})
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # the kinds seen and the history's cache
            state = load_state(self.settings.state_file)
            applied = applied_deployment(self.settings, state)
            yield from self._stack(state, applied)
            yield from self._drift(state)
            yield from self._models(applied)
            yield from self._bench()
            yield from self._backups()
            yield from self._disks()
            yield from self._gpus()

    # -- the stack ----------------------------------------------------------------------

    def _stack(self, state: State, applied: Rendered | None) -> Iterator[Metric]:
        home = self.settings.home
        running = working.read(working.file(home), self.settings.lock_dir) is not None
        synced = _gauge("lanai_stack_synced", "1 when `lanai status` says the stack is "
                        "Synced (applied commit = head of the followed branch, no drift).")
        synced.add_metric([], 1.0 if sync_status(state) == "Synced" and not running else 0.0)
        yield synced
        service_synced = _gauge("lanai_service_synced", "1 when the service matches the "
                                "applied commit, 0 when it drifted or is missing.", ["service"])
        health = _gauge("lanai_service_health", "1 for the service's current health, 0 for "
                        "the others.", ["service", "health"])
        heals = CounterMetricFamily("lanai_service_heals", "Restarts lanai made to heal the "
                                    "service (since the daemon started).", labels=["service"])
        applied_at = _gauge("lanai_service_last_applied_timestamp_seconds", "When the service "
                            "was last applied successfully (Unix time).", ["service"])
        if applied is not None:
            facts = self.live.containers.get().facts
            live = facts.by_service() if facts is not None else None
            passed = readiness.read(readiness.file(home))
            drifted = {str(d.get("service")) for d in state.drift}
            suspended = self.settings.suspend_file.exists()
            counted = self.reconciles.heals() if self.reconciles else {}
            last = self._last_applied(state)
            for name, spec in sorted(applied.services.items()):
                if live is None:
                    now, matches = "Unknown", name not in drifted
                else:
                    now, _, detail = service_health(spec.hash, live.get(name, []), passed)
                    matches = now != "Missing" and detail != "differs from git" \
                        and name not in drifted
                if suspended and now == "Healthy":
                    now = "Suspended"  # reconciling is paused; a broken service still shows
                service_synced.add_metric([name], 1.0 if matches else 0.0)
                for value in HEALTHS:
                    health.add_metric([name, value], 1.0 if value == now else 0.0)
                heals.add_metric([name], float(counted.get(name, 0)))
                when = last.get(name) or _stamp(state.applied_at)
                if when is not None:
                    applied_at.add_metric([name], when)
        yield from (service_synced, health, heals, applied_at)

    def _last_applied(self, state: State) -> dict[str, float]:
        """Service -> the time of its newest successful action in the history; the history
        is read again only when its file changed."""
        path = self.settings.history_file
        try:
            stat = path.stat()
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        if key is not None and key == self._history[0]:
            return self._history[1]
        found: dict[str, float] = {}
        for record in read_history(path, HISTORY_LIMIT) if key else []:
            when = _stamp(record.get("at"))
            if when is None or record.get("status") not in ("applied", "healed"):
                continue
            for action in record.get("actions") or []:
                if action.get("result") == "ok":
                    found.setdefault(str(action.get("service")), when)  # newest first
        self._history = (key, found)
        return found

    def _drift(self, state: State) -> Iterator[Metric]:
        counts: dict[str, int] = {}
        for item in state.drift:
            counts[str(item.get("kind"))] = counts.get(str(item.get("kind")), 0) + 1
        self._drift_kinds |= counts.keys()
        drift = _gauge("lanai_drift_items", "Drift items now, by kind.", ["kind"])
        for kind in sorted(self._drift_kinds):
            drift.add_metric([kind], float(counts.get(kind, 0)))
        yield drift

    # -- models -------------------------------------------------------------------------

    def _models(self, applied: Rendered | None) -> Iterator[Metric]:
        families = {
            "pulled": _gauge("lanai_model_pulled", "1 when the model of models.yaml is on "
                             "the server.", ["model"]),
            "loaded": _gauge("lanai_model_loaded", "1 when Ollama has it in memory "
                             "(/api/ps).", ["model"]),
            "estimate": _gauge("lanai_model_vram_estimate_bytes", "lanai's estimate of the "
                               "model's GPU memory at its context.", ["model"]),
            "vram": _gauge("lanai_model_vram_bytes", "GPU memory Ollama reports for the "
                           "loaded model (/api/ps size_vram).", ["model"]),
            "size": _gauge("lanai_model_size_bytes", "Memory of the loaded model in all "
                           "(/api/ps size).", ["model"]),
            "ratio": _gauge("lanai_model_gpu_ratio", "Share of the loaded model on the GPU, "
                            "0..1 (size_vram / size).", ["model"]),
        }
        if applied is not None and applied.models is not None:
            state = models_state.load(self.settings.models_file)
            fits = {row.get("model"): row for row in state.fits}
            loaded = self.live.loaded.get() or []
            for entry in applied.models.local:
                name = entry.name
                rec = state.models.get(name)
                families["pulled"].add_metric([name], 1.0 if rec and rec.digest else 0.0)
                estimate = fits.get(name, {}).get("total")
                if isinstance(estimate, int | float):
                    families["estimate"].add_metric([name], float(estimate))
                now = _find(loaded, name)
                families["loaded"].add_metric([name], 1.0 if now else 0.0)
                if now is not None:
                    families["vram"].add_metric([name], float(now.size_vram))
                    families["size"].add_metric([name], float(now.size))
                    if now.size:
                        families["ratio"].add_metric([name], min(1.0, now.size_vram / now.size))
        yield from families.values()

    def _bench(self) -> Iterator[Metric]:
        tps = _gauge("lanai_bench_tokens_per_second", "The last `lanai bench` generation "
                     "speed (median over its prompts).", ["model"])
        ratio = _gauge("lanai_bench_bandwidth_ratio", "That speed as a share of the GPU's "
                       "memory-bandwidth limit, 0..1.", ["model"])
        for model, (speed, share) in sorted(_last_bench(load_runs(
                self.settings.bench_file, warn=lambda _m: None)).items()):
            tps.add_metric([model], speed)
            if share is not None:
                ratio.add_metric([model], share)
        yield from (tps, ratio)

    # -- the server -----------------------------------------------------------------------

    def _backups(self) -> Iterator[Metric]:
        at = _gauge("lanai_backup_last_timestamp_seconds", "When the newest backup was "
                    "taken (Unix time).")
        size = _gauge("lanai_backup_last_size_bytes", "The newest backup's size.")
        listed = Store(self.settings.backups_dir).list()
        when = _stamp(listed[0].created) if listed else None
        if when is not None:
            at.add_metric([], when)
            size.add_metric([], float(listed[0].size))
        yield from (at, size)

    def _disks(self) -> Iterator[Metric]:
        free = _gauge("lanai_disk_free_bytes", "Free bytes on the filesystem of lanai's "
                      "home and of Docker's data root.", ["path"])
        size = _gauge("lanai_disk_size_bytes", "Size of that filesystem.", ["path"])
        paths = [self.settings.home, self.live.containers.get().docker_root]
        for path in dict.fromkeys(p for p in paths if p is not None):
            usage = _usage(path)
            if usage is not None:
                free.add_metric([str(path)], float(usage.free))
                size.add_metric([str(path)], float(usage.total))
        yield from (free, size)

    def _gpus(self) -> Iterator[Metric]:
        used = _gauge("lanai_gpu_memory_used_bytes", "NVIDIA GPU memory used (nvidia-smi).",
                      ["gpu"])
        total = _gauge("lanai_gpu_memory_total_bytes", "NVIDIA GPU total memory.", ["gpu"])
        util = _gauge("lanai_gpu_utilization_ratio", "NVIDIA GPU utilisation, 0..1.", ["gpu"])
        temp = _gauge("lanai_gpu_temperature_celsius", "NVIDIA GPU temperature.", ["gpu"])
        for gpu in self.live.gpus.get().gpus:
            index = [str(gpu.index)]
            if gpu.memory_used_mib is not None:
                used.add_metric(index, float(gpu.memory_used_mib * MiB))
            if gpu.memory_total_mib is not None:
                total.add_metric(index, float(gpu.memory_total_mib * MiB))
            if gpu.utilization_gpu_pct is not None:
                util.add_metric(index, gpu.utilization_gpu_pct / 100)
            if gpu.temperature_c is not None:
                temp.add_metric(index, float(gpu.temperature_c))
        yield from (used, total, util, temp)


def _find(loaded: list[Loaded], name: str) -> Loaded | None:
    """Ollama lists a model named without a tag as NAME:latest."""
    wanted = {name, name if ":" in name else f"{name}:latest"}
    return next((m for m in loaded if m.name in wanted), None)


def _last_bench(runs: list[BenchRun]) -> dict[str, tuple[float, float | None]]:
    """Model -> (tokens/s, share of the bandwidth limit) from its newest run that measured
    it: the medians over its prompts."""
    found: dict[str, tuple[float, float | None]] = {}
    for run in reversed(runs):
        for model in run.results:
            if model.model in found or model.error:
                continue
            speeds = [p.gen_tps.median for p in model.prompts.values()
                      if p.gen_tps.median is not None]
            if not speeds:
                continue
            shares: list[float] = []
            for prompt in model.prompts.values():
                pct = limit_pct(run, model, prompt)
                if pct is not None:
                    shares.append(pct[0] / 100)
            found[model.model] = (float(statistics.median(speeds)),
                                  float(statistics.median(shares)) if shares else None)
    return found


def _usage(path: Path) -> Any:
    try:
        return shutil.disk_usage(path)
    except OSError:  # not there (yet), or not ours to read
        return None


