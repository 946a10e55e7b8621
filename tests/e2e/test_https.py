"""HTTPS on the LAN, end to end: the example state's Caddy proxy in front of the real Open
WebUI, its certificates from the server's own CA, checked by headless Chromium that
trusts only that CA, and an Open WebUI update under a steady stream of requests.

Caddy here is Debian's caddy 2.6.2 binary in a local image tagged caddy:2.6.2 (Docker
Hub is unreachable); the proxy publishes on free loopback ports instead of 443/80, and
`ai.home.arpa` is mapped to 127.0.0.1 for the browser and the probes.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from .browser import open_page
from .chats import add_user, signin
from .harness import (
    REPO_ROOT,
    Server,
    StateRepo,
    example_repo,
    new_project,
)
from .probe import Probe

NAME = "ai.home.arpa"
ADMIN_EMAIL = "admin@lanai.home.arpa"  # WEBUI_ADMIN_EMAIL in desired-state/compose.yaml
ADMIN_PASSWORD = "e2e-pw-7"
ARTIFACTS = REPO_ROOT / "tests" / "e2e" / "artifacts"
WEBUI = "ghcr.io/open-webui/open-webui:v0.12.4"
PROBE_RPS = 20


class Https:
    def __init__(self, server: Server, repo: StateRepo, https_port: int, http_port: int,
                 webui_port: int) -> None:
        self.server, self.repo = server, repo
        self.https_port, self.http_port, self.webui_port = https_port, http_port, webui_port
        self.url = f"https://{NAME}:{https_port}/"

    def trust(self) -> dict[str, Any]:
        code, info = self.server.lanai_json("trust", "--output",
                                            str(self.server.root / "lanai-ca.crt"))
        assert code == 0, info
        return info

    def tls(self, ca_pem: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=ca_pem)
        return context

    def get(self, path: str, ca_pem: str, *, session: str | None = None,
            **kwargs: Any) -> httpx.Response:
        """GET https://ai.home.arpa:PORT/path, connecting to 127.0.0.1 (no DNS needed);
        `session`: an Open WebUI token, sent as its cookie."""
        headers = {"Host": NAME}
        if session is not None:
            headers["Cookie"] = f"token={session}"
        with httpx.Client(verify=self.tls(ca_pem), timeout=30) as client:
            return client.get(f"https://127.0.0.1:{self.https_port}{path}",
                              headers=headers, extensions={"sni_hostname": NAME}, **kwargs)


@pytest.fixture(scope="module")
def https(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Https]:
    root = tmp_path_factory.mktemp("https")
    project = new_project()
    repo, ports = example_repo(root, project)
    webui, secure, plain = ports.webui, ports.https, ports.http
    server = Server(root, repo, project, docker_client,
                    {"WEBUI_SECRET_KEY": "e2e-https-secret",
                     "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD})
    code, outcome = server.reconcile()
    assert code == 0, outcome
    yield Https(server, repo, secure, plain, webui)
    server.teardown()
    for tag in docker_client.images.get(WEBUI).tags:
        if tag.endswith("-https-e2e"):
            docker_client.images.remove(tag)


def test_chromium_trusting_only_the_servers_ca_gets_a_secure_context_for_voice(
        https: Https):
    info = https.trust()
    assert info["urls"][0] == f"https://{NAME}:{https.https_port}/"
    assert Path(info["file"]).read_text() == info["ca_pem"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "https-login.png"
    shot.unlink(missing_ok=True)
    facts = open_page(https.url, ca_pem=info["ca_pem"], resolve={NAME: "127.0.0.1"},
                      screenshot=shot, wait_for_text="Sign in", timeout=120)
    assert facts.certificate_error is None
    assert facts.is_secure_context is True
    assert facts.has_get_user_media is True  # what voice chat needs from the browser
    assert "Open WebUI" in facts.title
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_the_ca_the_browser_refuses_the_certificate(https: Https):
    facts = open_page(https.url, ca_pem=None, resolve={NAME: "127.0.0.1"}, timeout=60)
    assert facts.certificate_error == "net::ERR_CERT_AUTHORITY_INVALID"
    assert facts.is_secure_context is False or "Sign in" not in facts.text


def test_plain_http_redirects_to_https_and_hands_out_the_ca(https: Https):
    ca = https.trust()["ca_pem"]
    with httpx.Client(timeout=30) as client:
        page = client.get(f"http://127.0.0.1:{https.http_port}/auth?x=1", headers={"Host": NAME})
        assert page.status_code == 308
        assert page.headers["location"] == f"https://{NAME}/auth?x=1"
        download = client.get(f"http://127.0.0.1:{https.http_port}/lanai-ca.crt",
                              headers={"Host": NAME})
    assert download.status_code == 200
    assert download.text == ca
    assert download.headers["content-type"] == "application/x-x509-ca-cert"


def test_only_declared_names_get_a_certificate(https: Https):
    ca = https.trust()["ca_pem"]
    assert https.get("/health", ca).json() == {"status": True}
    context = https.tls(ca)
    context.check_hostname = False  # we want to see whether any certificate comes at all
    with socket.create_connection(("127.0.0.1", https.https_port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="other.home.arpa").close()


def test_websockets_pass_through_the_proxy(https: Https):
    ca = https.trust()["ca_pem"]
    with socket.create_connection(("127.0.0.1", https.https_port), timeout=30) as raw, \
            https.tls(ca).wrap_socket(raw, server_hostname=NAME) as conn:
        conn.sendall((f"GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                      f"Host: {NAME}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = conn.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 101"), head


def test_the_ca_survives_a_redeploy_of_the_proxy(https: Https):
    before = https.trust()
    proxy_id = https.server.containers()["proxy"].id
    https.repo.replace("lanai.yaml", "  hold: 120s", "  hold: 110s")
    https.repo.commit_push("Hold requests a little less long")
    code, outcome = https.server.reconcile()
    assert code == 0, outcome
    assert [(a["kind"], a["service"]) for a in outcome["actions"]] == [("update", "proxy")]
    assert https.server.containers()["proxy"].id != proxy_id
    after = https.trust()
    assert after["fingerprint_sha256"] == before["fingerprint_sha256"]
    assert https.get("/health", before["ca_pem"]).status_code == 200


def test_an_open_webui_update_pushed_through_git_fails_no_request(https: Https,
                                                                 docker_client):
    ca = https.trust()["ca_pem"]
    # A new tag of the same image: compose replaces the container, as for an upgrade.
    docker_client.images.get(WEBUI).tag(WEBUI.rsplit(":", 1)[0], "v0.12.4-https-e2e")
    https.repo.replace("compose.yaml", f"image: {WEBUI}", f"image: {WEBUI}-https-e2e")
    https.repo.commit_push("Open WebUI update")
    old = https.server.containers()["open-webui"].id
    probe = Probe(https.https_port, NAME, https.tls(ca), PROBE_RPS)
    probe.start()
    time.sleep(2)  # the probe is steady before the update starts
    try:
        code, outcome = https.server.reconcile()
        time.sleep(2)
    finally:
        results = probe.stop()
    assert code == 0, outcome
    assert ("update", "open-webui") in [(a["kind"], a["service"]) for a in outcome["actions"]]
    assert https.server.containers()["open-webui"].id != old
    failed = [r for r in results if r[0] != 200]
    assert failed == [], failed[:5]
    assert len(results) >= PROBE_RPS * 10  # the update took a while: the probe covered it
    slowest = max(r[1] for r in results)
    print(f"\nprobe: {len(results)} requests, 0 failed, slowest {slowest:.1f}s")


def test_lanai_trust_prints_fingerprint_steps_and_qr_codes(https: Https):
    result = https.server.lanai("trust")
    assert result.returncode == 0, result.stderr
    assert "SHA-256 fingerprint" in result.stdout and "Android" in result.stdout
    assert "▀" in result.stdout or "▄" in result.stdout
    pem = https.server.lanai("trust", "--pem")
    assert pem.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert subprocess.run(["openssl", "x509", "-noout"], input=pem.stdout, text=True,
                          check=False).returncode == 0


def test_the_status_page_shows_the_admin_the_state_and_nobody_else_anything(https: Https):
    """Signed in to Open WebUI as the admin (its session cookie), Chromium on a phone-sized
    screen gets /lanai/ from the daemon through the proxy; a family member's session, or
    none, gets Open WebUI's 401 and nothing of the daemon's."""
    ca = https.trust()["ca_pem"]
    webui = f"http://127.0.0.1:{https.webui_port}"
    admin = signin(webui, ADMIN_EMAIL, ADMIN_PASSWORD)
    add_user(webui, admin, "Kid", "kid@home.arpa", "kid-password-5")
    kid = signin(webui, "kid@home.arpa", "kid-password-5")
    applied = https.server.status()["applied_commit"]
    subject = subprocess.run(["git", "--git-dir", str(https.repo.bare), "log", "-1",
                              "--format=%s", applied], capture_output=True, text=True,
                             check=True).stdout.strip()
    page = f"https://{NAME}:{https.https_port}/lanai/"
    https.server.start_daemon()
    try:
        shot = ARTIFACTS / "status-page-phone.png"
        shot.unlink(missing_ok=True)
        facts = open_page(page, ca_pem=ca, resolve={NAME: "127.0.0.1"}, phone=True,
                          cookies={"token": admin}, screenshot=shot, wait_for_text=subject,
                          timeout=90)
        assert facts.status == 200, facts
        for service in ("ollama", "open-webui", "proxy"):
            assert service in facts.text
        assert applied[:7] in facts.text
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        state = https.get("/lanai/status.json", ca, session=admin)
        assert state.status_code == 200 and "open-webui" in state.text
        for who, session in (("a family member", kid), ("signed out", None)):
            denied = open_page(page, ca_pem=ca, resolve={NAME: "127.0.0.1"}, timeout=60,
                               cookies={"token": session} if session else None)
            assert denied.status in (401, 403), (who, denied)
            assert "open-webui" not in denied.text and applied[:7] not in denied.text, who
            data = https.get("/lanai/status.json", ca, session=session)
            assert data.status_code in (401, 403) and "open-webui" not in data.text, who
    finally:
        https.server.stop_daemon()
