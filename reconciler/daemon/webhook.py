"""The daemon's optional push webhook: a forge (GitHub, Gitea, Forgejo) says "pushed".

Off unless server.yaml sets `webhook_listen`. A request is trusted only when
`X-Hub-Signature-256` is the HMAC-SHA256 of its exact body under
LANAI_WEBHOOK_SECRET (all three forges send that header). A trusted push only
queues a reconcile, which fetches the repo itself: nothing in the body is
acted on, so a replayed delivery costs one fetch and nothing more.

`decide` is pure (request in, reply out); `WebhookServer` is the stdlib HTTP edge.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.core.errors import NotSetUp, SecretsError
from reconciler.server import settings as settings_mod
from reconciler.server.secrets import read_secrets
from reconciler.server.settings import ServerSettings

log = logging.getLogger("lanai.webhook")

PATH = "/hooks/push"
SECRET_NAME = "LANAI_WEBHOOK_SECRET"
MIN_SECRET_CHARS = 16
MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT_S = 10.0  # per read: a client that stalls is dropped
REQUEST_DEADLINE_S = 30.0  # per connection: one that sends a byte now and then is too
MAX_HANDLERS = 8  # requests served at once; more are closed unanswered (forges retry)
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event")
TRIGGER = "webhook"


@dataclass(frozen=True)
class Reply:
    status: int
    message: str
    queue: bool = False  # whether this request asks for a reconcile


@dataclass(frozen=True)
class WebhookConfig:
    host: str
    port: int
    secret: bytes


# -- the pure core ----------------------------------------------------------------------

def sign(secret: bytes, body: bytes) -> str:
    """The header value a forge sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    # compare_digest on bytes: constant time, and no TypeError on non-ASCII input.
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def event_of(headers: Mapping[str, str]) -> str | None:
    for name in EVENT_HEADERS:
        value = headers.get(name)
        if value:
            return value.strip().lower()
    return None


def check_request(method: str, path: str, length: str | None,
                  chunked: bool) -> Reply | None:
    """What to answer before reading a body, or None to read it."""
    if path.split("?", 1)[0] != PATH:
        return Reply(404, "not found")
    if method != "POST":
        return Reply(405, f"only POST is accepted on {PATH}")
    if chunked or length is None:
        return Reply(411, "a Content-Length is required")
    if not length.isdigit():
        return Reply(400, "Content-Length is not a number")
    if int(length) > MAX_BODY_BYTES:
        return Reply(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    return None


def decide(secret: bytes, headers: Mapping[str, str], body: bytes) -> Reply:
    """The answer to a POST on PATH whose body was read in full."""
    if not signature_valid(secret, body, headers.get(SIGNATURE_HEADER)):
        return Reply(401, f"missing or wrong {SIGNATURE_HEADER}; set the webhook's secret to "
                          f"the server's {SECRET_NAME}")
    event = event_of(headers)
    if event == "ping":
        return Reply(200, "pong")
    if event == "push":
        return Reply(202, "reconcile queued", queue=True)
    return Reply(400, f"event {event!r} is not handled; send push events only")


def parse_listen(value: str) -> tuple[str, int]:
    """"0.0.0.0:9095", "[::]:9095", ":9095" (every interface) -> (host, port)."""
    return settings_mod.parse_listen(value, "webhook_listen", default_host="0.0.0.0",
                                     example="0.0.0.0:9095")


def webhook_config(settings: ServerSettings) -> WebhookConfig | None:
    """The webhook's address and secret; None when it is off; refuses a weak setup."""
    if not settings.webhook_listen:
        return None
    host, port = parse_listen(settings.webhook_listen)
    secret = read_secrets(settings.secrets_file).get(SECRET_NAME, "")
    if len(secret) < MIN_SECRET_CHARS:
        problem = "is missing from" if not secret else "is shorter than 16 characters in"
        raise SecretsError(
            f"webhook_listen is set but {SECRET_NAME} {problem} {settings.secrets_file}; "
            f"add a long random one with `openssl rand -hex 32 | lanai secrets set "
            f"{SECRET_NAME}` (and give the forge the same), or unset webhook_listen.")
    return WebhookConfig(host, port, secret.encode())


# -- the HTTP edge ------------------------------------------------------------------------

class WebhookServer:
    """A ThreadingHTTPServer on its own thread; `queue` is called for each trusted push."""

    def __init__(self, config: WebhookConfig, queue: Callable[[str], None]) -> None:
        handler = _handler(config.secret, queue)
        server_class = _IPv6Server if ":" in config.host else _BoundedServer
        try:
            self.httpd = server_class((config.host, config.port), handler)
        except OSError as exc:
            raise NotSetUp(
                f"the webhook cannot listen on {config.host}:{config.port} ({exc.strerror}); "
                "free that port or change webhook_listen in server.yaml.") from None
        self.address = f"{config.host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="webhook",
                                        daemon=True)

    def start(self) -> WebhookServer:
        self._thread.start()
        log.info("webhook listening on http://%s%s", self.address, PATH)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _BoundedServer(ThreadingHTTPServer):
    """At most MAX_HANDLERS threads, each for at most REQUEST_DEADLINE_S: senders that are
    slow (or many) cannot pile up threads in the daemon."""

    def server_bind(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("webhook from %s: %d requests already in progress; closed unanswered",
                        client_address[0], MAX_HANDLERS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # shutdown() (not close) wakes a read blocked in the handler: it sees the end.
        cut = threading.Timer(REQUEST_DEADLINE_S, _cut, (request,))
        cut.daemon = True
        cut.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cut.cancel()
            self._slots.release()


def _cut(request: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        request.shutdown(socket.SHUT_RDWR)


class _IPv6Server(_BoundedServer):
    address_family = socket.AF_INET6


def _handler(secret: bytes, queue: Callable[[str], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lanai-webhook"
        sys_version = ""
        timeout = READ_TIMEOUT_S  # a client that stalls mid-request is dropped

        def do_POST(self) -> None:  # http.server dispatches on these names
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

        def _serve(self) -> None:
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            reply = check_request(self.command, self.path, self.headers.get("Content-Length"),
                                  chunked)
            if reply is None:
                try:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                except TimeoutError:
                    body = None
                if body is None or len(body) != int(self.headers["Content-Length"]):
                    reply = Reply(400, "the body ended before its Content-Length")
                else:
                    reply = decide(secret, self.headers, body)
            if reply.queue:
                queue(TRIGGER)
            # The outcome and who asked; never the signature or anything from the body.
            log.log(logging.INFO if reply.status < 300 else logging.WARNING,
                    "webhook from %s: %s %s -> %d %s", self.client_address[0], self.command,
                    self.path.split("?", 1)[0][:100], reply.status, reply.message)
            self._answer(reply)

        def _answer(self, reply: Reply) -> None:
            data = (json.dumps({"ok": reply.status < 300, "message": reply.message}) + "\n"
                    ).encode()
            self.send_response(reply.status)
            if reply.status == 405:
                self.send_header("Allow", "POST")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # An unread body (413, 411) must not be parsed as the next request.
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # http.server's own lines go to stderr with the raw request line; ours say enough.
            log.debug("webhook http: " + format, *args)

    return Handler
