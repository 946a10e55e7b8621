"""A steady stream of HTTPS requests through the proxy, for zero-downtime checks.

Requests go out on schedule (rate per second) whatever the answers take, each to
https://127.0.0.1:PORT/health with the LAN name as Host and SNI, so certificate checks
run against that name without DNS. Used by tests/e2e/test_https.py and
benchmarks/https.py.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time

import httpx


class Probe:
    def __init__(self, port: int, name: str, tls: ssl.SSLContext, rate: float,
                 path: str = "/health") -> None:
        self.url = f"https://127.0.0.1:{port}{path}"
        self.name, self.tls, self.rate = name, tls, rate
        self.results: list[tuple[int | str, float]] = []  # status (or error), seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[int | str, float]]:
        """Stop sending, wait for the answers still out, return every result."""
        self._stop.set()
        self._thread.join(timeout=600)
        return self.results

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=5000, max_keepalive_connections=50)
        async with httpx.AsyncClient(verify=self.tls, timeout=600, limits=limits) as client:
            tasks = []
            start = time.monotonic()
            sent = 0
            while not self._stop.is_set():
                tasks.append(asyncio.create_task(self._one(client)))
                sent += 1
                await asyncio.sleep(max(0.0, start + sent / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient) -> None:
        began = time.monotonic()
        try:
            response = await client.get(self.url, headers={"Host": self.name},
                                        extensions={"sni_hostname": self.name})
            outcome: int | str = response.status_code
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        self.results.append((outcome, time.monotonic() - began))
