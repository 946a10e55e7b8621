"""What /metrics and the status page cost the idle daemon: CPU seconds and RSS with
metrics off, beside metrics on and scraped every 15 s, beside the status page open in a
browser (status.json every 10 s), measured in the same run on the same stack.

`python -m benchmarks.metrics [--window 60] [--interval 15] [--json]`

It sets up the isolated server of benchmarks/reconcile.py (the mini stack, a bare repo
with the hook, a temp LANAI_HOME: see benchmarks/README.md), then measures two idle
windows of the daemon, each on a freshly started daemon once its first reconcile is done:
1. metrics off (no metrics_listen), 2. metrics on (LANAI_METRICS_LISTEN on 127.0.0.1),
with a scraper asking /metrics every `--interval` seconds from the window's start,
3. metrics off and the status page's status.json asked every 10 s on the daemon's socket
(what an open page does; the proxy and its admin check are not part of the daemon's cost).
The numbers are the daemon's own CPU (and with its children: nvidia-smi, where present),
its mean and peak RSS, and the scrapes' latency; "on" is shown as a ratio to "off".
Exit status as benchmarks/reconcile.py: 0 ran, 1 could not finish, 2 a precondition
is missing (Docker, the test images, `lanai`), 130 interrupted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from typing import Any

from benchmarks.reconcile import (
    Bench,
    Metric,
    poll,
    read_state,
    run_bench,
    say,
)
from tests.e2e.harness import free_port
from tests.unix_http import UnixConnection

PAGE_INTERVAL_S = 10.0  # how often the status page asks for status.json


def get_url(url: str) -> None:
    """GET an http:// URL, or unix:SOCKET:PATH on a Unix socket; raises OSError on failure."""
    if not url.startswith("unix:"):
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        return
    _, sock, path = url.split(":", 2)
    conn = UnixConnection(sock)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"{path}: HTTP {response.status}")
    finally:
        conn.close()


class Scraper:
    """GET a URL every `interval` seconds on a thread; keeps each request's latency."""

    def __init__(self, url: str, interval: float) -> None:
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                get_url(self.url)
                self.latencies.append(time.monotonic() - started)
            except OSError as exc:
                self.errors.append(str(exc))
            self._stop.wait(self.interval)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


class MetricsBench(Bench):
    def restart_daemon(self, metrics_listen: str | None) -> None:
        """A fresh daemon (so both windows start alike), settled after its first reconcile."""
        assert self.server is not None
        self.server.stop_daemon()
        self.server.env.pop("LANAI_METRICS_LISTEN", None)
        if metrics_listen:
            self.server.env["LANAI_METRICS_LISTEN"] = metrics_listen
        before = read_state(self.home).get("last_check")
        self.server.start_daemon()
        poll(lambda: read_state(self.home).get("last_check") != before, 60,
             "the restarted daemon's first reconcile", interval=0.1)
        self.wait_healthy(60)
        time.sleep(2)  # let the start's imports and first reconcile settle (not a wait on state)

    def compare(self, interval: float) -> None:
        say(f"idle daemon over {self.args.window:.0f}s windows: metrics off, then on "
            f"(scraped every {interval:.0f}s)")
        self.restart_daemon(None)
        off = self.idle_window("metrics off")
        port = free_port()
        self.restart_daemon(f"127.0.0.1:{port}")
        with Scraper(f"http://127.0.0.1:{port}/metrics", interval) as scraper:
            on = self.idle_window("metrics on")
        if not scraper.latencies:
            raise RuntimeError(f"no scrape of /metrics succeeded: {scraper.errors[:3]}")
        scrapes = {"count": len(scraper.latencies), "errors": scraper.errors,
                   "ms": [round(s * 1000, 1) for s in scraper.latencies]}
        self.restart_daemon(None)
        socket_path = self.home / "status" / "status.sock"
        with Scraper(f"unix:{socket_path}:/lanai/status.json", PAGE_INTERVAL_S) as page:
            open_page = self.idle_window("status page open")
        if not page.latencies:
            raise RuntimeError(f"no status.json was answered: {page.errors[:3]}")
        self.results.raw["metrics"] = {"off": off, "on": on, "scrapes": scrapes,
                                       "page": open_page,
                                       "page_ms": [round(s * 1000, 1) for s in page.latencies]}
        add = self.results.add
        window = on["window_s"]

        def cpu_s(window_out: dict[str, Any], key: str) -> float:
            return window_out[key] / 100 * window_out["window_s"]

        for label, key in (("daemon CPU", "cpu_pct"),
                           ("daemon CPU incl. children", "cpu_pct_with_children")):
            base, with_metrics = cpu_s(off, key), cpu_s(on, key)
            add(Metric(f"{label} over {window:.0f}s, metrics off", base, "s"))
            add(Metric(f"{label} over {window:.0f}s, metrics on", with_metrics, "s",
                       ratio=with_metrics / base if base else None, baseline="metrics off"))
            paged = cpu_s(open_page, key)
            add(Metric(f"{label} over {window:.0f}s, status page open", paged, "s",
                       ratio=paged / base if base else None, baseline="metrics off"))
        add(Metric("daemon RSS mean, metrics off", off["rss_mb_mean"], "MB"))
        add(Metric("daemon RSS mean, metrics on", on["rss_mb_mean"], "MB",
                   ratio=on["rss_mb_mean"] / off["rss_mb_mean"], baseline="metrics off"))
        add(Metric("daemon RSS max, metrics on", on["rss_mb_max"], "MB",
                   ratio=on["rss_mb_max"] / off["rss_mb_max"], baseline="metrics off"))
        add(Metric("daemon RSS mean, status page open", open_page["rss_mb_mean"], "MB",
                   ratio=open_page["rss_mb_mean"] / off["rss_mb_mean"], baseline="metrics off"))
        add(Metric("scrape latency, median", statistics.median(scraper.latencies) * 1000,
                   "ms", note=f"{len(scraper.latencies)} scrapes"))
        add(Metric("status.json latency, median", statistics.median(page.latencies) * 1000,
                   "ms", note=f"{len(page.latencies)} requests"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds of each idle window (default 60: 4 scrapes)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between scrapes")
    parser.add_argument("--keep-log", default=None, help="keep the daemon's log here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = MetricsBench(args)
    return run_bench(bench, lambda: bench.compare(args.interval), lambda s: (
        f"lanai /metrics benchmark, {s['date']}, {s['machine']['cpus']} CPUs, "
        f"{s['elapsed_s']:.0f}s"), args.json)

if __name__ == "__main__":
    sys.exit(main())
