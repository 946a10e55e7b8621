"""The browser harness (tests/e2e/browser.py) against a local Caddy with its own internal CA.

No Docker: Caddy runs as a plain process on free ports, serving the LAN name over HTTPS (from
`tls internal`) and over plain HTTP. This pins down what the harness is for: with the CA a page
is a secure context with getUserMedia; without it (or with another CA) TLS fails; over plain
HTTP on a LAN name there is no microphone API at all, the very problem lanai's HTTPS fixes.

Needs the Debian packages chromium, libnss3-tools and caddy; missing ones fail, never skip."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .browser import certutil_path, chromium_path, open_page

LAN_NAME = "ai.home.arpa"
PAGE = "<html><head><title>lanai</title></head><body>Sign in</body></html>"
PLAIN_PAGE = "<html><head><title>lanai plain</title></head><body>Sign in over http</body></html>"
RESOLVE = {LAN_NAME: "127.0.0.1"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class LocalCaddy:
    https_url: str
    http_url: str
    root_ca_pem: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_tools() -> None:
    chromium_path()
    certutil_path()
    if not shutil.which("caddy"):
        raise AssertionError("caddy is not installed; apt-get install -y caddy")


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCaddy]:
    try:
        require_tools()
    except AssertionError as exc:
        pytest.fail(str(exc))
    root = tmp_path_factory.mktemp("caddy")
    https_port, http_port = free_port(), free_port()
    # admin off and explicit ports: nothing here may collide with a Caddy already on the
    # machine (2019, 80, 443); skip_install_trust keeps the CA out of the system store.
    (root / "Caddyfile").write_text(f"""{{
    admin off
    skip_install_trust
    auto_https disable_redirects
    http_port {http_port}
    https_port {https_port}
}}

https://{LAN_NAME}:{https_port} {{
    bind 127.0.0.1
    tls internal
    header Content-Type "text/html; charset=utf-8"
    respond "{PAGE}"
}}

http://{LAN_NAME}:{http_port} {{
    bind 127.0.0.1
    header Content-Type "text/html; charset=utf-8"
    respond "{PLAIN_PAGE}"
}}
""")
    env = {**os.environ, "HOME": str(root), "XDG_DATA_HOME": str(root / "data"),
           "XDG_CONFIG_HOME": str(root / "config")}
    log = (root / "caddy.log").open("wb")
    proc = subprocess.Popen(["caddy", "run", "--config", str(root / "Caddyfile"),
                             "--adapter", "caddyfile"], env=env, cwd=root,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        root_crt = root / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        wait_for_tls(root_crt, https_port, proc, root / "caddy.log")
        yield LocalCaddy(https_url=f"https://{LAN_NAME}:{https_port}/",
                         http_url=f"http://{LAN_NAME}:{http_port}/",
                         root_ca_pem=root_crt.read_text())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for_tls(root_crt: Path, port: int, proc: subprocess.Popen[bytes],
                 log_path: Path, timeout: float = 30) -> None:
    """Caddy is ready once a handshake for the LAN name verifies against its root CA."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"caddy exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        if root_crt.exists():
            try:
                context = ssl.create_default_context(cafile=str(root_crt))
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                        context.wrap_socket(raw, server_hostname=LAN_NAME):
                    return
            except (OSError, ssl.SSLError) as exc:
                last = exc
        time.sleep(0.2)
    pytest.fail(f"caddy never served TLS for {LAN_NAME} ({last}):\n"
                f"{log_path.read_text()[-3000:]}")


def other_ca_pem(tmp: Path) -> str:
    """A self-made CA that did not sign Caddy's certificate: trusting a CA must not mean
    trusting every CA."""
    key, cert = tmp / "other.key", tmp / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=lanai other test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return cert.read_text()


def test_trusted_ca_gives_a_secure_context_with_the_microphone_api(
        caddy: LocalCaddy, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    started = time.monotonic()
    facts = open_page(caddy.https_url, ca_pem=caddy.root_ca_pem, resolve=RESOLVE,
                      screenshot=shot, wait_for_text="Sign in")
    print(f"\npage check took {time.monotonic() - started:.1f}s")
    assert facts.certificate_error is None
    assert facts.url == caddy.https_url
    assert facts.title == "lanai"
    assert facts.text.strip() == "Sign in"
    assert facts.is_secure_context is True
    assert facts.has_get_user_media is True
    png = shot.read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


@pytest.mark.parametrize("which_ca", ["no CA", "another CA"])
def test_untrusted_certificate_fails_on_tls(caddy: LocalCaddy, tmp_path: Path,
                                            which_ca: str) -> None:
    ca_pem = None if which_ca == "no CA" else other_ca_pem(tmp_path)
    shot = tmp_path / "error.png"
    facts = open_page(caddy.https_url, ca_pem=ca_pem, resolve=RESOLVE, screenshot=shot,
                      wait_for_text="Sign in")
    assert facts.certificate_error == "net::ERR_CERT_AUTHORITY_INVALID"
    assert facts.url == caddy.https_url
    assert "Sign in" not in facts.text and facts.title != "lanai"
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_plain_http_on_a_lan_name_has_no_microphone_api(caddy: LocalCaddy,
                                                        tmp_path: Path) -> None:
    facts = open_page(caddy.http_url, ca_pem=caddy.root_ca_pem, resolve=RESOLVE,
                      wait_for_text="Sign in over http")
    assert facts.certificate_error is None
    assert facts.url == caddy.http_url  # not silently upgraded to https
    assert facts.title == "lanai plain"
    assert facts.is_secure_context is False
    assert facts.has_get_user_media is False
