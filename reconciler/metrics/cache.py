"""A reading taken at most once per interval, however often (and however many at once)
scrapes ask: Ollama, Docker and nvidia-smi are asked on a clock, not per scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Every(Generic[T]):
    """`fetch()`'s value, fetched again only once `interval` seconds have passed.

    `fetch` must not raise: it returns what it could read (None for nothing), and that
    answer is kept for the interval too, so a service that is down is not asked per scrape.
    """

    def __init__(self, fetch: Callable[[], T], interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # two scrapes at once: one asks, the other waits
        self._at: float | None = None
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self.interval:
                self._value = self._fetch()
                self._at = self._clock()
            return self._value  # type: ignore[return-value]  # set above on first use
