"""`/metrics` over HTTP: prometheus_client's WSGI app on a threaded server of its own.

Off unless server.yaml sets `metrics_listen`; a value without a host listens on the
loopback only, so the numbers leave the machine only when an address is named.
The server is bound when made (a taken port refuses the start: exit 9) and serves
once started, on its own thread beside the reconcile worker.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from reconciler.core.errors import NotSetUp
from reconciler.server.settings import ServerSettings, parse_listen

log = logging.getLogger("lanai.metrics")

PATH = "/metrics"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9469


def metrics_address(settings: ServerSettings) -> tuple[str, int] | None:
    """(host, port) of /metrics, or None when it is off. "9469" and ":9469" are loopback."""
    value = settings.metrics_listen
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        value = ":" + value
    return parse_listen(value, "metrics_listen", default_host=DEFAULT_HOST,
                        example=f"{DEFAULT_HOST}:{DEFAULT_PORT}")


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # A scrape every 15 s is no news; wsgiref would print each to stderr.
        log.debug("metrics http: " + format, *args)


class _Server(ThreadingWSGIServer):
    pass


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _only_metrics(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; metrics are at /metrics\n"]
        return app(environ, start_response)
    return routed


class MetricsServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self.httpd = make_server(host, port, _only_metrics(make_wsgi_app(registry)),
                                     server_class, handler_class=_Quiet)
        except OSError as exc:
            raise NotSetUp(
                f"/metrics cannot listen on {host}:{port} ({exc.strerror}); free that port "
                "or change metrics_listen in server.yaml.") from None
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics at http://%s%s", self.address, PATH)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
