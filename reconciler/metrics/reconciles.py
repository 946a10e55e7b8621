"""What the daemon observes after each reconcile: how many by result, how long each
phase took (the Outcome's durations, the Timer's laps) and the heals per service.

Observing is a few in-memory increments on the reconcile worker; a scrape reads them
without the reconcile lock, so neither ever waits for the other.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

from reconciler.server.record import Outcome

# An Outcome's status -> the `result` label ("no-op" reads badly in a query).
RESULTS = {"no-op": "unchanged"}
# From a no-op poll (tens of ms) to a first deploy with image pulls (many minutes).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter(
            "lanai_reconciles", "Reconciles since the daemon started, by result.",
            ["result"], registry=registry)
        self.duration = Histogram(
            "lanai_reconcile_duration_seconds",
            "How long a reconcile's phases took (the Timer's laps) and `total`.",
            ["phase"], buckets=BUCKETS, registry=registry)
        self._heals: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, outcome: Outcome) -> None:
        self.reconciles.labels(RESULTS.get(outcome.status, outcome.status)).inc()
        for phase, seconds in outcome.durations.items():
            self.duration.labels(phase).observe(max(0.0, float(seconds)))
        if outcome.status == "healed":
            with self._lock:
                for service in {str(a.get("service")) for a in outcome.actions}:
                    self._heals[service] = self._heals.get(service, 0) + 1

    def heals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._heals)
