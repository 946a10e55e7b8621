"""A real browser for end-to-end tests: headless Debian Chromium that trusts ONLY a given CA.

Browsers hand out the microphone only in secure contexts, so what lanai must prove on the LAN
is that Open WebUI at https://ai.home.arpa is one *for a browser*, not just for curl. This
module opens a page in Chromium and reports what the page itself sees:

    facts = open_page("https://ai.home.arpa:8443/", ca_pem=root_crt_text,
                      resolve={"ai.home.arpa": "127.0.0.1"}, screenshot=tmp / "page.png",
                      wait_for_text="Sign in")
    assert facts.is_secure_context and facts.has_get_user_media

Trust: Chromium on Linux takes locally added roots from the NSS database in
`$HOME/.pki/nssdb`. Each call gets a fresh HOME whose database holds `ca_pem` (and nothing when
it is None) next to a fresh profile, so the machine's own trust settings never leak in; no flag
that weakens certificate checks is used. Names are pinned with --host-resolver-rules, so the
real LAN name (and its certificate's SAN) is what the browser navigates to.

Control is over the Chrome DevTools Protocol, spoken through the minimal WebSocket client below
(the project adds no dependencies for tests). Needs the Debian packages `chromium` and
`libnss3-tools` (certutil); their absence fails loudly, never skips.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TEXT_LIMIT = 5000
CA_NICKNAME = "lanai-test-ca"
_INSTALL_HINT = "apt-get install -y chromium libnss3-tools"


@dataclass
class PageFacts:
    url: str                        # final URL after redirects (the failed one on a net error)
    title: str
    text: str                       # document.body.innerText, truncated to TEXT_LIMIT chars
    is_secure_context: bool
    has_get_user_media: bool
    certificate_error: str | None   # e.g. "net::ERR_CERT_AUTHORITY_INVALID" on a TLS failure
    status: int | None = None       # the HTTP status of the page's own response


def chromium_path() -> str:
    """Debian's Chromium launcher; a missing browser is a broken test machine, not a skip."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"Chromium is not installed (no chromium or chromium-browser on PATH); "
                         f"{_INSTALL_HINT}")


def certutil_path() -> str:
    found = shutil.which("certutil")
    if not found:
        raise AssertionError(f"certutil is not installed (NSS tools); {_INSTALL_HINT}")
    return found


def open_page(url: str, *, ca_pem: str | None, resolve: dict[str, str] | None = None,
              screenshot: Path | None = None, wait_for_text: str | None = None,
              timeout: float = 60, before_load: str | None = None,
              cookies: dict[str, str] | None = None, phone: bool = False) -> PageFacts:
    """Open `url` in a fresh headless Chromium that trusts only `ca_pem`; report what it saw.

    A TLS failure is a result (`certificate_error`; the facts are then the error page's and
    `wait_for_text` is not waited for), other navigation failures raise AssertionError, and
    running past `timeout` (for the whole call) raises TimeoutError. `before_load` is
    JavaScript run in the page before its own scripts (e.g. to put a session token in
    localStorage, as a signed-in browser has it). `cookies` are set for the URL's site
    (secure, HTTP-only) before it loads, as a signed-in browser sends them. `phone`: a
    390x844 touch screen at 3x, as a phone shows the page.
    Chromium and its temporary HOME and profile are removed however the call ends."""
    deadline = time.monotonic() + timeout
    browser = chromium_path()
    workdir = Path(tempfile.mkdtemp(prefix="lanai-browser-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        home = workdir / "home"
        _make_nss_db(home / ".pki" / "nssdb", ca_pem, workdir)
        profile = workdir / "profile"
        profile.mkdir()
        log_path = workdir / "chromium.log"
        with log_path.open("wb") as log:
            # stderr goes to a file, not a pipe: an undrained pipe would stall Chromium.
            # A new session lets teardown kill the browser and all its helpers as one group.
            proc = subprocess.Popen(_chromium_args(browser, profile, resolve),
                                    env=_browser_env(home, workdir), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        ws_url = _devtools_url(proc, profile, log_path, deadline)
        with _CDP(ws_url, deadline) as cdp:
            return _visit(cdp, url, screenshot, wait_for_text, deadline, before_load,
                          cookies or {}, phone)
    finally:
        if proc is not None:
            _kill_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --- browser process ------------------------------------------------------------------------

def _make_nss_db(nssdb: Path, ca_pem: str | None, workdir: Path) -> None:
    """The user NSS database Chromium reads for extra roots: empty, or holding just `ca_pem`."""
    certutil = certutil_path()
    nssdb.mkdir(parents=True)
    _run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"])
    if ca_pem is not None:
        ca_file = workdir / "ca.pem"
        ca_file.write_text(ca_pem)
        # "C,,": a CA trusted to issue TLS server certificates, nothing else.
        _run([certutil, "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", CA_NICKNAME,
              "-i", str(ca_file)])


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()}")


def _chromium_args(browser: str, profile: Path, resolve: dict[str, str] | None) -> list[str]:
    args = [
        browser,
        "--headless=new",
        "--no-sandbox",                 # the tests run as root, where the sandbox refuses
        "--disable-gpu",
        "--remote-debugging-port=0",    # Chromium picks a free port, written to DevToolsActivePort
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",            # a proxy from the environment would bypass the mapping
        "--disable-dev-shm-usage",      # small /dev/shm in containers and CI
        "--window-size=1280,800",
    ]
    if resolve:
        rules = []
        for host, address in resolve.items():
            if any(c in host + address for c in " ,"):
                raise ValueError(f"bad resolve entry {host!r}: {address!r}")
            rules.append(f"MAP {host} {address}")
        args.append(f"--host-resolver-rules={','.join(rules)}")
    args.append("about:blank")
    return args


def _browser_env(home: Path, workdir: Path) -> dict[str, str]:
    """The caller's environment with a throwaway HOME (hence NSS db) and no proxy settings."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
               TMPDIR=str(workdir))
    return env


def _devtools_url(proc: subprocess.Popen[bytes], profile: Path, log_path: Path,
                  deadline: float) -> str:
    """The browser's DevTools endpoint, from the DevToolsActivePort file it writes at start."""
    port_file = profile / "DevToolsActivePort"
    while True:
        with contextlib.suppress(OSError):
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if proc.poll() is not None:
            raise AssertionError(f"Chromium exited ({proc.returncode}) before DevTools was up:\n"
                                 f"{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Chromium DevTools did not come up:\n{_tail(log_path)}")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and every helper process it started (they share its process group)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no helper outlived it either.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


# --- the page -------------------------------------------------------------------------------

_FACTS_JS = f"""({{
  url: location.href,
  title: document.title,
  text: (document.body ? document.body.innerText : "").slice(0, {TEXT_LIMIT}),
  isSecureContext: window.isSecureContext === true,
  hasGetUserMedia: !!(navigator.mediaDevices
                      && typeof navigator.mediaDevices.getUserMedia === "function"),
}})"""


def _visit(cdp: _CDP, url: str, screenshot: Path | None, wait_for_text: str | None,
           deadline: float, before_load: str | None = None,
           cookies: dict[str, str] | None = None, phone: bool = False) -> PageFacts:
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    page = _Session(cdp, session)
    page.call("Page.enable")
    page.call("Network.enable")
    for name, value in (cookies or {}).items():
        page.call("Network.setCookie", {"name": name, "value": value, "url": url,
                                        "secure": True, "httpOnly": True})
    if phone:
        page.call("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
        page.call("Emulation.setTouchEmulationEnabled", {"enabled": True})
    if before_load:
        page.call("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
    page.call("Page.setLifecycleEventsEnabled", {"enabled": True})
    nav = page.call("Page.navigate", {"url": url})
    error = nav.get("errorText") or None
    certificate_error = None
    if error:
        # TLS failures are what the tests look for; anything else (refused, DNS) is a bug.
        if "CERT" not in error and "SSL" not in error:
            raise AssertionError(f"Chromium could not load {url}: {error}")
        certificate_error = error
    # The load of *this* navigation (about:blank's replayed events carry another loaderId);
    # an error page loads under the same loaderId, so this holds for TLS failures too.
    cdp.wait_event(lambda m: m.get("method") == "Page.lifecycleEvent"
                   and m.get("sessionId") == session
                   and m["params"].get("name") == "load"
                   and m["params"].get("loaderId") == nav.get("loaderId"),
                   f"{url} to load")
    status = None
    for event in cdp.events:
        params = event.get("params") or {}
        if event.get("method") == "Network.responseReceived" \
                and event.get("sessionId") == session and params.get("type") == "Document" \
                and params.get("loaderId") == nav.get("loaderId"):
            status = int(params["response"]["status"])
    if wait_for_text is not None and certificate_error is None:
        _wait_for_text(page, wait_for_text, url, deadline)
    facts = page.evaluate(_FACTS_JS)
    if screenshot is not None:
        png = page.call("Page.captureScreenshot", {"format": "png"})["data"]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(png))
    final_url = facts["url"]
    if certificate_error is not None:
        final_url = _main_frame_url(page) or url  # location.href is chrome-error://...
    return PageFacts(url=final_url, title=facts["title"], text=facts["text"],
                     is_secure_context=facts["isSecureContext"],
                     has_get_user_media=facts["hasGetUserMedia"],
                     certificate_error=certificate_error, status=status)


def _wait_for_text(page: _Session, text: str, url: str, deadline: float) -> None:
    """SPAs (Open WebUI) render after the load event: poll the body until `text` shows."""
    seen = ""
    while time.monotonic() < deadline:
        seen = page.evaluate('document.body ? document.body.innerText : ""') or ""
        if text in seen:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} never showed {text!r}; its text was: {seen[:500]!r}")


def _main_frame_url(page: _Session) -> str | None:
    frame = page.call("Page.getFrameTree")["frameTree"]["frame"]
    return frame.get("unreachableUrl") or frame.get("url")


# --- Chrome DevTools Protocol ---------------------------------------------------------------

class CDPError(AssertionError):
    """A DevTools command answered with an error."""


class _CDP:
    """One WebSocket to the browser endpoint; page sessions are multiplexed on it (flatten)."""

    def __init__(self, ws_url: str, deadline: float) -> None:
        self.deadline = deadline
        self.ws = _WebSocket(ws_url, deadline)
        self.events: list[dict[str, Any]] = []  # events that arrived while awaiting answers
        self._next_id = 0

    def __enter__(self) -> _CDP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()

    def call(self, method: str, params: dict[str, Any] | None = None,
             session_id: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        self.ws.send_text(json.dumps(message))
        while True:
            reply = self._receive(f"the answer to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, matches: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        while True:
            for i, event in enumerate(self.events):
                if matches(event):
                    return self.events.pop(i)
            message = self._receive(what)
            if "method" in message:
                self.events.append(message)

    def _receive(self, what: str) -> dict[str, Any]:
        try:
            return json.loads(self.ws.receive(self.deadline))
        except TimeoutError:
            raise TimeoutError(f"Chromium: timed out waiting for {what}") from None


class _Session:
    def __init__(self, cdp: _CDP, session_id: str) -> None:
        self.cdp = cdp
        self.session_id = session_id

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.cdp.call(method, params, self.session_id)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


# --- a minimal WebSocket client (RFC 6455), enough for DevTools -----------------------------

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class _WebSocket:
    def __init__(self, url: str, deadline: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"only ws:// URLs are supported, not {url!r}")
        port = parts.port or 80
        path = parts.path or "/"
        self.sock = socket.create_connection((parts.hostname, port),
                                             timeout=_remaining(deadline))
        self.buffer = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium only checks --remote-allow-origins when one is sent.
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)  # a frame may follow the handshake in the same read
        status, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in header_lines)}
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if " 101 " not in f"{status} " or headers.get("sec-websocket-accept") != accept:
            self.sock.close()
            raise ConnectionError(f"WebSocket handshake with {url} failed: {status}")

    def send_text(self, text: str) -> None:
        self._send_frame(_OP_TEXT, text.encode())

    def receive(self, deadline: float) -> str:
        """The next whole text message; answers pings, joins fragments, raises on close."""
        parts: list[bytes] = []
        opcode_of_message: int | None = None
        while True:
            fin, opcode, payload = self._read_frame(deadline)
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
            elif opcode == _OP_PONG:
                continue
            elif opcode == _OP_CLOSE:
                with contextlib.suppress(OSError):
                    self._send_frame(_OP_CLOSE, payload[:2])
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionError(f"DevTools closed the connection (code {code})")
            else:
                if opcode != _OP_CONT:
                    opcode_of_message = opcode
                parts.append(payload)
                if fin:
                    data = b"".join(parts)
                    if opcode_of_message == _OP_BINARY:
                        raise ConnectionError("unexpected binary WebSocket message")
                    return data.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(_OP_CLOSE, struct.pack("!H", 1000))
        self.sock.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        # Clients must mask every frame (RFC 6455 5.3).
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += struct.pack("!BH", 0x80 | 126, n)
        else:
            header += struct.pack("!BQ", 0x80 | 127, n)
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + _mask(payload, mask))

    def _read_frame(self, deadline: float) -> tuple[bool, int, bytes]:
        first, second = self._read(2, deadline)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        mask = self._read(4, deadline) if second & 0x80 else None
        payload = self._read(n, deadline)
        if mask:
            payload = _mask(payload, mask)
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            self._fill(deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(_remaining(deadline))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError("WebSocket read timed out") from None
        if not chunk:
            raise ConnectionError("DevTools connection closed")
        self.buffer += chunk


def _mask(payload: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: fast enough for megabyte frames without per-byte Python loops.
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left
