"""`./bootstrap.sh admin@server` over real SSH to a fresh Debian 13 server (a systemd
container with sshd and a sudo user, no Docker): failures that change nothing, sudo
with a password, and an unsupported OS. The install itself, and life on the installed
server, are in test_full_example_servers.py (the full example).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .harness import wait_for
from .servers import (
    BOOTSTRAP,
    SUDO_PASSWORD,
    TestServer,
    boot,
    bootstrap,
)


def untouched(server: TestServer) -> None:
    """Nothing of lanai on the server, not even the upload directory."""
    listing = server.exec("sh", "-c", "ls -d /etc/lanai /opt/lanai /srv/lanai "
                          "/tmp/lanai-bootstrap.* 2>/dev/null; command -v docker || true")
    assert listing.stdout.strip() == "", listing.stdout


@pytest.fixture(scope="module")
def server(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestServer]:
    with boot("lanai-test/server:trixie", docker_client,
              tmp_path_factory.mktemp("server")) as booted:
        yield booted


def test_unknown_host_key_is_refused_with_its_fingerprint_and_nothing_changes(
        server: TestServer):
    server.forget()
    result = bootstrap(server)
    assert result.returncode == 13, result.stderr
    assert "host key of" in result.stderr and "is not known yet" in result.stderr
    assert server.host_key_fingerprint() in result.stderr
    assert "--accept-new-host-key" in result.stderr
    untouched(server)
    server.trust()


def test_user_without_sudo_is_refused_and_nothing_changes(server: TestServer):
    result = bootstrap(server, target=server.target("plain"))
    assert result.returncode == 3, result.stderr
    assert "plain may not use sudo" in result.stderr
    assert "usermod -aG sudo plain" in result.stderr
    untouched(server)


def test_port_taken_is_refused_and_nothing_changes(server: TestServer):
    squatter = server.exec("sh", "-c", "nohup python3 -m http.server 3000 >/dev/null 2>&1 & "
                           "echo $!")
    pid = squatter.stdout.strip()
    try:
        wait_for(lambda: server.exec("sh", "-c", "ss -Hltn 'sport = :3000'").stdout.strip(),
                 20, "the squatter on port 3000")
        result = bootstrap(server)
        assert result.returncode == 6, result.stderr
        assert "port 3000 is in use by python3" in result.stderr
        assert "/tmp/lanai-bootstrap." not in server.exec("sh", "-c", "ls -d /tmp/*").stdout
        assert server.exec("sh", "-c", "ls -d /etc/lanai /opt/lanai /srv/lanai 2>/dev/null"
                           ).stdout.strip() == ""
    finally:
        server.exec("kill", pid)


def bootstrap_on_a_terminal(server: TestServer, typed: str, *args: str) -> tuple[int, str]:
    """bootstrap.sh as pwadmin on a terminal (script(1)); `typed` is typed at the sudo
    password prompt once it shows, as a person would (typed earlier, a terminal echoes)."""
    command = shlex.join(["bash", str(BOOTSTRAP), server.target("pwadmin"), "--ssh-config",
                          str(server.ssh_config_path), *args])
    proc = subprocess.Popen(["script", "-qec", command, "/dev/null"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    seen, typed_yet = b"", False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if not typed_yet and b"sudo password for" in seen:
            proc.stdin.write(typed.encode() + b"\n")
            proc.stdin.flush()
            typed_yet = True
    proc.stdin.close()
    code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return code, seen.decode(errors="replace")


def test_sudo_with_a_password_is_asked_once_and_never_shown(server: TestServer):
    code, out = bootstrap_on_a_terminal(server, SUDO_PASSWORD, "--dry-run")
    assert code == 0, out
    assert out.count("sudo password for pwadmin on") == 1
    assert "✓ sudo: pwadmin may use sudo" in out
    assert "dry run: nothing was changed" in out
    assert SUDO_PASSWORD not in out
    assert SUDO_PASSWORD not in server.exec("journalctl", "--no-pager", "-q").stdout


def test_a_wrong_sudo_password_is_refused_cleanly(server: TestServer):
    code, out = bootstrap_on_a_terminal(server, "not-the-password", "--dry-run")
    assert code == 3, out
    assert "did not accept that password" in out


def test_wrong_key_is_refused_cleanly(server: TestServer):
    # Last on this server: after a failed login, OpenSSH 10 penalizes the source address
    # for a while (PerSourcePenalties), as a real server would.
    before = server.exec("sh", "-c", "ls /tmp").stdout
    result = bootstrap(server, target=server.target(wrong_key=True))
    assert result.returncode == 14, result.stderr
    assert "refused our SSH key" in result.stderr and "ssh-copy-id" in result.stderr
    assert server.exec("sh", "-c", "ls /tmp").stdout == before


def test_unsupported_os_is_refused_and_nothing_changes(docker_client: docker.DockerClient,
                                                       tmp_path: Path):
    with boot("lanai-test/server:bullseye", docker_client, tmp_path) as old:
        old.trust()
        result = bootstrap(old)
        assert result.returncode == 4, result.stderr
        assert "Debian GNU/Linux 11 (bullseye) is not supported" in result.stderr
        untouched(old)

