"""The status page's HTTP server: on a Unix socket, for the https proxy only.

Nothing listens on a port: the proxy reaches the socket through a bind mount of its
directory (settings.status_dir), and sends a request on only after Open WebUI has said
the browser's session is an admin's (forward auth in the Caddyfile). The directory and
the socket are root's alone, so no other local user reads the page around the proxy.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("lanai.statuspage")

# The page is lanai's own script and style; nothing else may run or load in it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The state changes every few seconds and is the admin's alone: no cache keeps it.
    "Cache-Control": "no-store",
}
REQUEST_TIMEOUT_S = 10.0


class Reply(Protocol):
    status: int
    content_type: str
    body: bytes


class App(Protocol):
    def respond(self, method: str, path: str) -> Reply: ...


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.1"  # keep-alive: the proxy reuses its connection

    def _answer(self) -> None:
        try:
            reply = self.server.app.respond(self.command, self.path)
        except Exception:  # the daemon outlives a bad page; the app logs its own failures
            log.exception("status page: %s %s failed", self.command, self.path)
            self.send_error(500)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def address_string(self) -> str:  # a Unix socket's peer has no address
        return "proxy"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status page: " + format, *args)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, app: App) -> None:
        self.app = app
        super().__init__(str(path), _Handler)


class StatusServer:
    """The page's socket, bound by start() and removed by stop()."""

    def __init__(self, path: Path, app: App) -> None:
        self.path = path
        self.app = app
        self._server: _Server | None = None

    def start(self) -> StatusServer:
        directory = self.path.parent
        # Made once and never removed: the proxy's bind mount holds on to this directory,
        # and a new one made after the proxy started would stay invisible to it.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.path.unlink(missing_ok=True)  # a dead daemon's socket, as for the control socket
        old_umask = os.umask(0o177)  # the socket: root only (the proxy runs as root)
        try:
            self._server = _Server(self.path, self.app)
        finally:
            os.umask(old_umask)
        threading.Thread(target=self._server.serve_forever, name="status-page",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.path.unlink(missing_ok=True)
