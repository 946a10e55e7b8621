"""A real HTTP endpoint on 127.0.0.1 that keeps what is POSTed to it (JSON bodies):
what Apprise's json:// notifications reach in the tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        return self.bodies

    def titles(self, kind: str) -> list[str]:
        return [body["title"] for _, body in self.bodies if body.get("type") == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
