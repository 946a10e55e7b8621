"""The status page's answers, one per path, without any HTTP: the transport (serve) hands
in the method and the full path the proxy passed on, and sends back the Response.

    /lanai/             the page (assets/index.html)
    /lanai/page.js      its script: fetches status.json every 10 s and draws it
    /lanai/page.css     its style
    /lanai/status.json  the snapshot (snapshot.py)
    /lanai/bench.svg    the bench history as a chart (bench.chart), or a placeholder

GET and HEAD only. A failure while reading the records is a 500 with one line of JSON;
the traceback goes to the daemon's log, never to the browser.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from reconciler.bench.chart import render_svg
from reconciler.metrics.live import Live
from reconciler.server.settings import ServerSettings
from reconciler.statuspage import records
from reconciler.statuspage.snapshot import chart_runs, snapshot

log = logging.getLogger("lanai.statuspage")

PREFIX = "/lanai/"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
SVG = "image/svg+xml"
ASSETS = {  # path under PREFIX -> (file in assets/, content type)
    "": ("index.html", HTML),
    "page.js": ("page.js", "text/javascript; charset=utf-8"),
    "page.css": ("page.css", "text/css; charset=utf-8"),
}
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="360" height="60" viewBox="0 0 360 60" '
    'font-family="sans-serif" font-size="13"><title>no bench runs yet</title>'
    '<text x="8" y="34" fill="#888888">No bench runs yet: run `lanai bench` on the server.'
    "</text></svg>\n")


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


def _json(status: int, data: dict[str, Any]) -> Response:
    return Response(status, JSON, json.dumps(data, separators=(",", ":")).encode())


def _asset(name: str) -> bytes:
    return (resources.files("reconciler.statuspage") / "assets" / name).read_bytes()


class StatusApp:
    def __init__(self, settings: ServerSettings, live: Live) -> None:
        self.settings = settings
        self.live = live
        # Read once: they are part of the installed package and change with it only.
        self._assets = {path: Response(200, kind, _asset(name))
                        for path, (name, kind) in ASSETS.items()}

    def respond(self, method: str, path: str) -> Response:
        """The answer to `method` on `path` (the query string, if any, is ignored); for
        HEAD, GET's status and type without the body."""
        answer = self._route(method, path.split("?", 1)[0].split("#", 1)[0])
        if method == "HEAD":
            return Response(answer.status, answer.content_type, b"")
        return answer

    def _route(self, method: str, path: str) -> Response:
        if not path.startswith(PREFIX):
            return _json(404, {"error": "not found"})
        name = path[len(PREFIX):]
        if name not in ASSETS and name not in ("status.json", "bench.svg"):
            return _json(404, {"error": "not found"})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "only GET and HEAD are answered here"})
        if name in self._assets:
            return self._assets[name]
        try:
            if name == "status.json":
                return _json(200, snapshot(self.settings, self.live))
            return Response(200, SVG, self._chart().encode())
        except Exception:
            log.exception("status page: reading lanai's records for /lanai/%s failed", name)
            return _json(500, {"error": "lanai could not read its records for the status "
                               "page; the daemon's log (journalctl -u lanai) says why"})

    def _chart(self) -> str:
        runs = chart_runs(records.bench_runs(self.settings.bench_file))
        if not runs:
            return PLACEHOLDER_SVG
        return render_svg(runs)
