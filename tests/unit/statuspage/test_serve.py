"""The status page's socket server: real HTTP over a real Unix socket, with a stand-in app."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.statuspage.serve import SECURITY_HEADERS, StatusServer
from tests.unix_http import UnixConnection


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class App:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def respond(self, method: str, path: str) -> Answer:
        self.asked.append((method, path))
        if path == "/lanai/boom":
            raise RuntimeError("a bug")
        return Answer(200, "text/plain; charset=utf-8", f"{method} {path}".encode())


@pytest.fixture
def served(tmp_path: Path):
    app = App()
    server = StatusServer(tmp_path / "home" / "status" / "status.sock", app).start()
    yield server, app
    server.stop()


def get(path: Path, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    conn = UnixConnection(path, timeout=5)
    try:
        conn.request(method, target)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_answers_http_on_the_socket_with_the_apps_reply_and_the_security_headers(served) -> None:
    server, _ = served
    status, headers, body = get(server.path, "GET", "/lanai/status.json?x=1")
    assert (status, body) == (200, b"GET /lanai/status.json?x=1")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


def test_head_has_no_body_and_other_methods_reach_the_app(served) -> None:
    server, app = served
    status, headers, body = get(server.path, "HEAD", "/lanai/")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(b"HEAD /lanai/"))
    assert get(server.path, "POST", "/lanai/")[0] == 200
    assert ("POST", "/lanai/") in app.asked  # the app answers 405, not the transport


def test_a_failing_app_is_a_500_and_the_server_goes_on(served) -> None:
    server, _ = served
    status, _, body = get(server.path, "GET", "/lanai/boom")
    assert status == 500 and b"a bug" not in body and b"Traceback" not in body
    assert get(server.path, "GET", "/lanai/")[0] == 200


def test_the_directory_and_socket_are_roots_alone_and_the_socket_goes_at_stop(
        tmp_path: Path) -> None:
    path = tmp_path / "status" / "status.sock"
    path.parent.mkdir(mode=0o755)
    path.write_text("left by a daemon that died")  # taken over, not refused
    server = StatusServer(path, App()).start()
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    finally:
        server.stop()
    assert not path.exists()
    assert path.parent.is_dir()  # kept: the proxy's bind mount holds on to it
