"""The clean test servers themselves (tests/e2e/servers.py): what bootstrap.sh will meet.

Booted from `lanai-test/server:*` (tests/images/build.sh), reached over real SSH."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

from .servers import SERVER_BOOKWORM, SERVER_TRIXIE, TestServer, boot

T = TypeVar("T")


def require_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {image} is missing; build it with tests/images/build.sh")


@pytest.fixture(scope="module")
def trixie(docker_client: docker.DockerClient,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    require_image(docker_client, SERVER_TRIXIE)
    with boot(SERVER_TRIXIE, docker_client, tmp_path_factory.mktemp("trixie")) as server:
        print(f"\n{SERVER_TRIXIE}: systemd {server.boot_state} after "
              f"{server.timings['systemd']:.1f}s, ssh after {server.timings['ssh']:.1f}s")
        yield server


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def timed(what: str, timings: dict[str, float], run: Callable[..., T], *args: Any,
          **kwargs: Any) -> T:
    started = time.monotonic()
    try:
        return run(*args, **kwargs)
    finally:
        timings[what] = round(time.monotonic() - started, 1)


def test_trixie_boots_to_running_with_ssh_only_by_key(trixie: TestServer) -> None:
    assert trixie.boot_state == "running", ok(trixie.exec("systemctl", "--failed"))
    assert 'VERSION_ID="13"' in ok(trixie.ssh("cat", "/etc/os-release"))
    sshd = ok(trixie.exec("sshd", "-T"))
    assert "passwordauthentication no" in sshd
    assert "kbdinteractiveauthentication no" in sshd
    # No Docker: installing it is bootstrap's job.
    assert trixie.exec("sh", "-c", "command -v docker dockerd").returncode != 0
    # The nested-Docker drop-in is baked in, waiting for docker.service.
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in ok(trixie.exec(
        "cat", "/etc/systemd/system/docker.service.d/lanai-test.conf"))


def test_admin_has_passwordless_sudo(trixie: TestServer) -> None:
    assert ok(trixie.ssh("id", "-un")).strip() == "admin"
    assert ok(trixie.ssh("sudo", "-n", "id", "-u")).strip() == "0"


def test_plain_has_no_sudo(trixie: TestServer) -> None:
    assert ok(trixie.ssh("id", "-un", user="plain")).strip() == "plain"
    result = trixie.ssh("sudo", "-n", "true", user="plain")
    # What a user without sudo rights really sees with -n: sudo asks for the password
    # before it consults the policy, so the refusal reads like a password prompt.
    assert result.returncode == 1
    assert "a password is required" in result.stderr
    assert "sudo" not in ok(trixie.ssh("id", "-nG", user="plain")).split()
    assert "is not allowed to run sudo" in ok(trixie.exec("sudo", "-l", "-U", "plain"))


def test_wrong_key_and_unknown_host_are_refused(trixie: TestServer) -> None:
    wrong = trixie.ssh("true", wrong_key=True)
    assert wrong.returncode == 255
    assert "Permission denied (publickey)" in wrong.stderr
    try:
        trixie.forget()
        unknown = trixie.ssh("true")
        assert unknown.returncode == 255
        assert "Host key verification failed" in unknown.stderr
    finally:
        trixie.trust()
    ok(trixie.ssh("true"))


def test_every_server_makes_its_own_host_key(trixie: TestServer,
                                             docker_client: docker.DockerClient,
                                             tmp_path: Path) -> None:
    baked = docker_client.containers.run(SERVER_TRIXIE, ["ls", "/etc/ssh"], remove=True)
    assert b"ssh_host_" not in baked
    scanned = subprocess.run(["ssh-keygen", "-lf", str(trixie.known_hosts)],
                             capture_output=True, text=True, check=True).stdout
    assert trixie.host_key_fingerprint() in scanned
    with boot(SERVER_TRIXIE, docker_client, tmp_path) as other:
        assert other.host_key_fingerprint() != trixie.host_key_fingerprint()
        # So a known_hosts entry for one is no good for the other.
        other.known_hosts.write_text(trixie.known_hosts.read_text().replace(
            f"[127.0.0.1]:{trixie.ssh_port}", f"[127.0.0.1]:{other.ssh_port}"))
        assert "Host key verification failed" in other.ssh("true").stderr


def test_pypi_is_reachable_from_the_server(trixie: TestServer) -> None:
    timings: dict[str, float] = {}
    ok(timed("venv", timings, trixie.ssh, "python3 -m venv /tmp/v"))
    ok(timed("pip install pyyaml", timings, trixie.ssh,
             "/tmp/v/bin/pip install --quiet --disable-pip-version-check pyyaml"))
    assert ok(trixie.ssh("/tmp/v/bin/python", "-c", "import yaml; print(yaml.__version__)"))
    print(f"\npypi from inside: {timings}")


def test_bookworm_boots_to_running_with_its_own_systemd(docker_client: docker.DockerClient,
                                                        tmp_path: Path) -> None:
    """Debian 12's systemd 252 boots with the same run options as trixie's. (Docker from
    Debian inside the servers, and bullseye being refused, are tested where bootstrap uses
    them: test_full_example_servers.py, test_bootstrap_remote.py.)"""
    require_image(docker_client, SERVER_BOOKWORM)
    with boot(SERVER_BOOKWORM, docker_client, tmp_path) as server:
        print(f"\n{SERVER_BOOKWORM}: systemd {server.boot_state} after "
              f"{server.timings['systemd']:.1f}s, ssh after {server.timings['ssh']:.1f}s")
        assert server.boot_state == "running", ok(server.exec("systemctl", "--failed"))
        assert 'VERSION_ID="12"' in ok(server.ssh("cat", "/etc/os-release"))
        assert ok(server.ssh("sudo", "-n", "id", "-u")).strip() == "0"
        assert server.exec("sh", "-c", "command -v docker dockerd").returncode != 0
