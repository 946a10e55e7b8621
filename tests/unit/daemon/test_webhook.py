"""The push webhook: HMAC over the exact body, and a real HTTP server on 127.0.0.1
answering each kind of request, with a fake queue standing in for the daemon."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.core.errors import ExitCode, NotSetUp, SecretsError
from reconciler.daemon import webhook as webhook_mod
from reconciler.daemon.webhook import (
    MAX_BODY_BYTES,
    PATH,
    WebhookConfig,
    WebhookServer,
    decide,
    parse_listen,
    sign,
    signature_valid,
    webhook_config,
)
from reconciler.server.settings import load_settings

SECRET = b"0123456789abcdef-unit-secret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40,
                   "repository": {"full_name": "family/lanai-state"}}).encode()


def github_signature(secret: bytes, body: bytes) -> str:
    # Written out as GitHub documents it, not through the module under test.
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# -- signatures ------------------------------------------------------------------------------

def test_sign_matches_githubs_documented_construction():
    assert sign(SECRET, BODY) == github_signature(SECRET, BODY)


def test_signature_holds_only_for_the_exact_bytes():
    header = github_signature(SECRET, BODY)
    assert signature_valid(SECRET, BODY, header)
    changed = bytearray(BODY)
    changed[10] ^= 0x01
    assert not signature_valid(SECRET, bytes(changed), header)
    assert not signature_valid(SECRET, BODY + b"\n", header)
    # The same JSON serialized differently is other bytes: refused.
    assert not signature_valid(SECRET, json.dumps(json.loads(BODY), indent=1).encode(), header)


def test_signature_for_another_secret_fails():
    assert not signature_valid(SECRET, BODY, github_signature(b"another-secret-of-16+", BODY))


@pytest.mark.parametrize("header", [
    None, "", "sha256=", "sha256=" + "0" * 64,
    github_signature(SECRET, BODY).removeprefix("sha256="),  # bare hex (X-Gitea-Signature)
    "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest(),
    github_signature(SECRET, BODY).upper(),
    github_signature(SECRET, BODY) + "00",
    "sha256=" + "é" * 64,
])
def test_malformed_or_missing_signatures_fail(header):
    assert not signature_valid(SECRET, BODY, header)


def test_sha1_x_hub_signature_alone_is_refused():
    headers = {"X-GitHub-Event": "push",
               "X-Hub-Signature": "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()}
    reply = decide(SECRET, headers, BODY)
    assert (reply.status, reply.queue) == (401, False)


def test_decide_by_event_after_the_signature():
    signed = {"X-Hub-Signature-256": github_signature(SECRET, BODY)}
    assert decide(SECRET, {**signed, "X-GitHub-Event": "push"}, BODY).queue
    assert decide(SECRET, {**signed, "X-Gitea-Event": "push"}, BODY).queue
    assert decide(SECRET, {**signed, "X-Forgejo-Event": "push"}, BODY).queue
    ping = decide(SECRET, {**signed, "X-GitHub-Event": "ping"}, BODY)
    assert (ping.status, ping.queue) == (200, False)
    other = decide(SECRET, {**signed, "X-GitHub-Event": "issues"}, BODY)
    assert (other.status, other.queue) == (400, False)
    none = decide(SECRET, signed, BODY)
    assert (none.status, none.queue) == (400, False)


# -- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("0.0.0.0:9095", ("0.0.0.0", 9095)), ("127.0.0.1:1", ("127.0.0.1", 1)),
    (":9095", ("0.0.0.0", 9095)), ("[::]:9095", ("::", 9095)),
])
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9095", "0.0.0.0", "0.0.0.0:http", "0.0.0.0:0",
                                   "0.0.0.0:70000", "host:-1"])
def test_parse_listen_refuses_what_is_not_host_port(value):
    with pytest.raises(NotSetUp) as caught:
        parse_listen(value)
    assert "webhook_listen" in caught.value.message
    assert caught.value.exit_code == ExitCode.NOT_SET_UP


def server_settings(tmp_path: Path, listen: str | None, secrets: str):
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(secrets)
    secrets_file.chmod(0o600)
    env = {"LANAI_HOME": str(tmp_path / "home"), "LANAI_CONFIG": str(tmp_path / "none.yaml"),
           "LANAI_SECRETS_FILE": str(secrets_file)}
    if listen:
        env["LANAI_WEBHOOK_LISTEN"] = listen
    return load_settings(env)


def test_webhook_is_off_unless_webhook_listen_is_set(tmp_path):
    assert webhook_config(server_settings(tmp_path, None, "")) is None


def test_webhook_listen_comes_from_server_yaml(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text("webhook_listen: 127.0.0.1:9095\n")
    settings = load_settings({"LANAI_CONFIG": str(config)})
    assert settings.webhook_listen == "127.0.0.1:9095"


def test_webhook_config_reads_the_secret(tmp_path):
    settings = server_settings(tmp_path, "127.0.0.1:9095",
                               f"LANAI_WEBHOOK_SECRET={SECRET.decode()}\n")
    assert webhook_config(settings) == WebhookConfig("127.0.0.1", 9095, SECRET)


@pytest.mark.parametrize(("secrets", "problem"), [
    ("", "is missing from"), ("OTHER=x\n", "is missing from"),
    ("LANAI_WEBHOOK_SECRET=fifteen-chars!!\n", "is shorter than 16"),
])
def test_a_missing_or_short_secret_refuses_the_start(tmp_path, secrets, problem):
    settings = server_settings(tmp_path, "0.0.0.0:9095", secrets)
    with pytest.raises(SecretsError) as caught:
        webhook_config(settings)
    message = caught.value.message
    assert problem in message and "LANAI_WEBHOOK_SECRET" in message
    assert "lanai secrets set LANAI_WEBHOOK_SECRET" in message
    assert caught.value.exit_code == ExitCode.SECRETS


def test_a_world_readable_secrets_file_refuses_the_webhook(tmp_path):
    settings = server_settings(tmp_path, "0.0.0.0:9095",
                               f"LANAI_WEBHOOK_SECRET={SECRET.decode()}\n")
    settings.secrets_file.chmod(0o644)
    with pytest.raises(SecretsError, match="can be read by other users"):
        webhook_config(settings)


def test_a_port_in_use_is_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NotSetUp) as caught:
            WebhookServer(WebhookConfig("127.0.0.1", port, SECRET), lambda _: None)
    assert f"cannot listen on 127.0.0.1:{port}" in caught.value.message
    assert "change webhook_listen" in caught.value.message


# -- the real server --------------------------------------------------------------------------

class Running:
    def __init__(self, server: WebhookServer, queued: list[str]) -> None:
        self.server, self.queued = server, queued
        self.port = server.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    def post(self, body: bytes, headers: dict[str, str], url: str | None = None
             ) -> httpx.Response:
        return httpx.post(url or self.url, content=body, headers=headers, timeout=10)


@pytest.fixture
def running() -> Iterator[Running]:
    queued: list[str] = []
    server = WebhookServer(WebhookConfig("127.0.0.1", 0, SECRET), queued.append).start()
    yield Running(server, queued)
    server.stop()


def push_headers(body: bytes, secret: bytes = SECRET, event: str = "push") -> dict[str, str]:
    return {"Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-Hub-Signature-256": github_signature(secret, body)}


def test_signed_push_is_accepted_and_queues_one_reconcile(running: Running):
    reply = running.post(BODY, push_headers(BODY))
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"ok": True, "message": "reconcile queued"}
    assert running.queued == ["webhook"]


def test_gitea_and_forgejo_headers_are_accepted(running: Running):
    for event_header in ("X-Gitea-Event", "X-Forgejo-Event"):
        headers = {"content-type": "application/json", event_header: "push",
                   "x-hub-signature-256": github_signature(SECRET, BODY)}
        assert running.post(BODY, headers).status_code == 202
    assert running.queued == ["webhook", "webhook"]


def test_ping_is_answered_and_queues_nothing(running: Running):
    reply = running.post(BODY, push_headers(BODY, event="ping"))
    assert reply.status_code == 200
    assert running.queued == []


@pytest.mark.parametrize("headers", [
    push_headers(BODY, secret=b"the-wrong-secret-16+"),
    {"X-GitHub-Event": "push"},
    {"X-GitHub-Event": "push",
     "X-Hub-Signature": "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()},
])
def test_bad_signatures_get_401_and_queue_nothing(running: Running, headers):
    reply = running.post(BODY, headers)
    assert reply.status_code == 401
    assert "X-Hub-Signature-256" in reply.json()["message"]
    assert running.queued == []


def test_a_signed_body_replayed_with_one_byte_changed_is_refused(running: Running):
    headers = push_headers(BODY)
    tampered = BODY.replace(b"refs/heads/main", b"refs/heads/mair")
    assert running.post(tampered, headers).status_code == 401
    assert running.queued == []


def test_other_methods_and_paths_are_refused(running: Running):
    base = f"http://127.0.0.1:{running.port}"
    get = httpx.get(running.url, timeout=10)
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert httpx.put(running.url, content=BODY, headers=push_headers(BODY),
                     timeout=10).status_code == 405
    assert httpx.get(f"{base}/", timeout=10).status_code == 404
    other = running.post(BODY, push_headers(BODY), url=f"{base}/hooks/push/../other")
    assert other.status_code == 404
    assert running.post(BODY, push_headers(BODY), url=f"{base}/hooks").status_code == 404
    assert running.queued == []


def test_a_body_of_exactly_the_limit_is_read(running: Running):
    body = b"{" + b" " * (MAX_BODY_BYTES - 2) + b"}"
    assert running.post(body, push_headers(body)).status_code == 202
    assert running.queued == ["webhook"]


def test_an_oversize_body_gets_413_even_when_signed(running: Running):
    body = b"{" + b" " * (MAX_BODY_BYTES - 1) + b"}"
    reply = running.post(body, push_headers(body))
    assert reply.status_code == 413
    assert running.queued == []


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + body)
        conn.shutdown(socket.SHUT_WR)  # the client sends nothing more
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def test_oversize_content_length_is_refused_before_any_body_is_sent(running: Running):
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            f"Content-Length: {50 * MAX_BODY_BYTES}\r\n\r\n").encode()
    assert raw_request(running.port, head).startswith(b"HTTP/1.0 413 ")
    assert running.queued == []


def test_chunked_or_lengthless_bodies_are_refused(running: Running):
    chunked = running.post(iter([BODY]), push_headers(BODY))  # a generator: httpx chunks it
    assert chunked.status_code == 411
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n\r\n".encode()
    assert raw_request(running.port, head).startswith(b"HTTP/1.0 411 ")
    bad = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n").encode()
    assert raw_request(running.port, bad).startswith(b"HTTP/1.0 400 ")
    assert running.queued == []


def test_a_body_shorter_than_its_content_length_is_refused(running: Running):
    signature = github_signature(SECRET, BODY[:-1])
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(BODY)}\r\n\r\n").encode()
    assert raw_request(running.port, head, BODY[:-1]).startswith(b"HTTP/1.0 400 ")
    assert running.queued == []


def test_log_names_the_sender_and_outcome_never_the_secret_or_signature(
        running: Running, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="lanai.webhook")
    good, bad = push_headers(BODY), push_headers(BODY, secret=b"the-wrong-secret-16+")
    running.post(BODY, good)
    running.post(BODY, bad)
    lines = [r.getMessage() for r in caplog.records]
    assert any("from 127.0.0.1" in line and "202" in line for line in lines), lines
    assert any("from 127.0.0.1" in line and "401" in line for line in lines), lines
    text = "\n".join(lines)
    for value in (SECRET.decode(), good["X-Hub-Signature-256"], bad["X-Hub-Signature-256"],
                  good["X-Hub-Signature-256"].removeprefix("sha256=")[:16]):
        assert value not in text


# -- slow and many senders ------------------------------------------------------------------

def _slow_sender(port: int, stop: threading.Event) -> socket.socket:
    """A connection that sends its headers one byte at a time, each well within the
    per-read timeout, until the server closes it or `stop` is set."""
    conn = socket.create_connection(("127.0.0.1", port))

    def drip() -> None:
        request = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n" + "X-Slow: " + "a" * 10_000
        for char in request:
            if stop.wait(0.05):  # the pace of the attack itself, not a wait for a result
                return
            try:
                conn.send(char.encode())
            except OSError:
                return  # the server cut the connection

    threading.Thread(target=drip, daemon=True).start()
    return conn


def _closed_by_server(conn: socket.socket, timeout: float) -> bool:
    conn.settimeout(timeout)
    try:
        return conn.recv(1024) == b""  # unanswered: closed without a reply
    except (TimeoutError, ConnectionResetError) as exc:
        return isinstance(exc, ConnectionResetError)


def test_a_sender_that_trickles_bytes_is_cut_at_the_request_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_mod, "REQUEST_DEADLINE_S", 1.0)
    server = WebhookServer(WebhookConfig("127.0.0.1", 0, SECRET), [].append).start()
    stop = threading.Event()
    try:
        conn = _slow_sender(server.httpd.server_address[1], stop)
        # Each byte comes within READ_TIMEOUT_S (10 s): only the deadline ends it.
        assert _closed_by_server(conn, timeout=8), "the slow sender still holds its thread"
    finally:
        stop.set()
        server.stop()


def test_no_more_than_max_handlers_requests_are_served_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_mod, "MAX_HANDLERS", 3)
    monkeypatch.setattr(webhook_mod, "REQUEST_DEADLINE_S", 60.0)
    queued: list[str] = []
    server = WebhookServer(WebhookConfig("127.0.0.1", 0, SECRET), queued.append).start()
    port = server.httpd.server_address[1]
    stop = threading.Event()
    try:
        holders = [_slow_sender(port, stop) for _ in range(3)]
        # The next connection is closed unanswered while three are in progress.
        extra = socket.create_connection(("127.0.0.1", port))
        extra.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert _closed_by_server(extra, timeout=10)
        stop.set()
        for conn in holders:
            conn.close()
        body = b'{"ref": "refs/heads/main"}'

        def accepted() -> bool:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}{PATH}", content=body,
                                   headers=push_headers(body), timeout=10)
            except httpx.TransportError:
                return False
            return reply.status_code == 202

        deadline = time.monotonic() + 20
        while not accepted():  # the slots come back as the holders' threads end
            assert time.monotonic() < deadline, "the webhook did not serve again"
        assert queued
    finally:
        stop.set()
        server.stop()
