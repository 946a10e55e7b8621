"""`./bootstrap.sh admin@server` over real SSH to a fresh Debian 13 server (a systemd
container with sshd and a sudo user, no Docker): failures that change nothing, then
a full install, a push that deploys, and a second run that is a no-op.

Docker Hub is unreachable here, so the stack is the small test stack and its images
travel with `--images` (a `docker save` archive), as they would to an offline server.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from .harness import REPO_ROOT, git, wait_for
from .servers import (
    BOOTSTRAP,
    SUDO_PASSWORD,
    TestServer,
    boot,
    bootstrap,
    mini_seed_and_images,
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


@pytest.fixture(scope="module")
def seed_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return mini_seed_and_images(tmp_path_factory.mktemp("seed"))


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


def test_bootstrap_installs_docker_the_reconciler_and_the_state_repo(
        server: TestServer, seed_and_images: tuple[Path, Path]):
    seed, images = seed_and_images
    result = bootstrap(server, "--docker-from", "distro", "--seed", str(seed),
                       "--images", str(images))
    print(f"first bootstrap: {result.seconds:.0f}s")  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("✓ ssh: connected to", "✓ docker:", "✓ reconciler:", "✓ state repo:",
                 "✓ reconcile: the server matches the state repo", "✓ daemon:"):
        assert line in result.stdout, result.stdout
    assert f"git clone {server.host}:/srv/lanai/state.git" in result.stdout
    assert server.exec("systemctl", "is-active", "lanai", "docker").stdout.split() == [
        "active", "active"]
    assert server.exec("stat", "-c", "%a %U", "/etc/lanai/secrets.env").stdout.strip() == \
        "600 root"
    secret = server.exec("cat", "/etc/lanai/secrets.env").stdout.split("=", 1)[1].strip()
    assert secret and secret not in result.stdout + result.stderr
    assert server.ssh("sudo", "-n", "docker", "compose", "version").returncode == 0
    assert httpx.get(f"http://127.0.0.1:{server.web_port}/", timeout=10).status_code == 200
    leftovers = server.exec("sh", "-c", "ls -d /tmp/lanai-bootstrap.* 2>/dev/null || true")
    assert leftovers.stdout.strip() == ""


def test_lanai_host_reads_the_server_from_here(server: TestServer):
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--host", server.host, "--ssh-config",
         str(server.ssh_config_path), "status", "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["sync"] == "Synced" and status["health"] == "Healthy"
    assert status["daemon"]["pid"]


def test_a_push_from_a_laptop_clone_deploys(server: TestServer, tmp_path: Path):
    env = {**os.environ, "GIT_SSH_COMMAND": f"ssh -F {server.ssh_config_path}"}
    clone = tmp_path / "state"
    cloned = subprocess.run(["git", "clone", "--quiet", f"{server.host}:/srv/lanai/state.git",
                             str(clone)], env=env, capture_output=True, text=True, timeout=60)
    assert cloned.returncode == 0, cloned.stderr
    compose = clone / "compose.yaml"
    compose.write_text(compose.read_text().replace('GREETING: "hello"', 'GREETING: "from git"'))
    git(clone, "commit", "--quiet", "-am", "Greet from git")
    head = git(clone, "rev-parse", "HEAD")
    pushed = subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    assert "lanai: deploying" in pushed.stderr  # the hook reached the daemon's socket

    def applied() -> bool:
        out = server.ssh("sudo", "-n", "lanai", "status", "--json").stdout
        return json.loads(out)["applied_commit"] == head

    wait_for(applied, 90, "the pushed commit on the server")
    env_line = server.ssh("sudo", "-n", "docker", "inspect", "-f",
                          "{{range .Config.Env}}{{println .}}{{end}}", "lanai-web-1").stdout
    assert "GREETING=from git" in env_line


def test_a_backup_taken_on_the_server_downloads_to_the_laptop_over_ssh(server: TestServer,
                                                                      tmp_path: Path):
    """`lanai --host ... backup --download` runs here and reads the archive over SSH. The
    mini stack's web service stands in for Open WebUI (backups.service), with a SQLite
    database in its data volume."""
    env = {**os.environ, "GIT_SSH_COMMAND": f"ssh -F {server.ssh_config_path}"}
    clone = tmp_path / "state"
    subprocess.run(["git", "clone", "--quiet", f"{server.host}:/srv/lanai/state.git",
                    str(clone)], env=env, check=True, capture_output=True, timeout=60)
    compose = clone / "compose.yaml"
    compose.write_text(compose.read_text().replace(
        '      GREETING: "from git"\n', '      GREETING: "from git"\n    volumes:\n'
        '      - webdata:/data\n').replace("volumes:\n  ollama:\n",
                                          "volumes:\n  ollama:\n  webdata:\n"))
    settings = clone / "lanai.yaml"
    settings.write_text(settings.read_text() + "\nbackups:\n  service: web\n"
                        "  data_path: /data\n  schedule: null\n")
    git(clone, "commit", "--quiet", "-am", "Back up web's data")
    head = git(clone, "rev-parse", "HEAD")
    subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"], cwd=clone, env=env,
                   check=True, capture_output=True, timeout=60)
    wait_for(lambda: json.loads(server.ssh("sudo", "-n", "lanai", "status", "--json").stdout)[
        "applied_commit"] == head, 90, "the commit with the data volume")
    made = server.ssh("sudo", "-n", "docker", "exec", "lanai-web-1", "python3", "-c",
                      "import sqlite3; c = sqlite3.connect('/data/webui.db'); "
                      "c.execute('CREATE TABLE user (id TEXT)'); "
                      "c.execute(\"INSERT INTO user VALUES ('me')\"); c.commit()")
    assert made.returncode == 0, made.stderr

    def lanai(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", "--host", server.host,
                               "--ssh-config", str(server.ssh_config_path), *args],
                              capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)

    taken = lanai("backup", "--json")
    assert taken.returncode == 0, taken.stderr
    backup_id = json.loads(taken.stdout)["id"]
    assert json.loads(taken.stdout)["counts"] == {"users": 1}
    got = lanai("backup", "--download", "latest", "--to", str(tmp_path / "here"), "--json")
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    path = Path(data["downloaded"])
    assert (data["id"], data["counts"]) == (backup_id, {"users": 1})
    assert path.parent == tmp_path / "here" and path.stat().st_mode & 0o777 == 0o600
    missing = lanai("backup", "--download", "no-such-backup", "--to", str(tmp_path))
    assert missing.returncode == 10 and "no single backup" in missing.stderr, missing.stderr


def daemon_pid(server: TestServer) -> int:
    out = server.ssh("sudo", "-n", "systemctl", "show", "-p", "MainPID", "--value", "lanai")
    return int(out.stdout.strip() or 0)


def remote_status(server: TestServer) -> dict:
    result = server.ssh("sudo", "-n", "lanai", "status", "--json")
    return json.loads(result.stdout) if result.returncode in (0, 1) and result.stdout else {}


def test_a_sigkilled_reconciler_is_restarted_by_systemd(server: TestServer):
    before = daemon_pid(server)
    assert before > 0
    killed = server.ssh("sudo", "-n", "systemctl", "kill", "-s", "KILL", "lanai")
    assert killed.returncode == 0, killed.stderr
    after = wait_for(lambda: (pid := daemon_pid(server)) not in (0, before) and pid, 60,
                     "systemd to start lanai again (Restart=on-failure)")
    wait_for(lambda: (remote_status(server).get("daemon") or {}).get("pid") == after, 60,
             "the restarted daemon to answer on its socket")
    assert remote_status(server)["sync"] == "Synced"


def test_a_reboot_of_the_server_brings_the_daemon_and_the_stack_back(server: TestServer):
    """The server's container is restarted: systemd boots it again, Docker starts the stack's
    containers (restart: unless-stopped), systemd starts lanai, which finds it all in sync."""
    applied = remote_status(server)["applied_commit"]
    server.reboot()
    status = wait_for(lambda: (s := remote_status(server)).get("daemon") and
                      s.get("health") == "Healthy" and s, 180,
                      "lanai and a healthy stack after the reboot")
    assert status["applied_commit"] == applied and status["sync"] == "Synced", status
    assert server.ssh("sudo", "-n", "systemctl", "is-active", "lanai", "docker").returncode == 0


def test_second_bootstrap_is_a_no_op(server: TestServer, seed_and_images: tuple[Path, Path]):
    seed, _ = seed_and_images
    before = server.ssh("sudo", "-n", "docker", "ps", "-q", "--no-trunc").stdout.split()
    result = bootstrap(server, "--seed", str(seed))
    print(f"second bootstrap: {result.seconds:.0f}s")  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("✓ ")]
    changed = [line for line in steps if "already" not in line and not line.startswith(
        ("✓ ssh:", "✓ sudo:", "✓ preflight:", "✓ gpu:", "✓ reconcile:"))]
    assert changed == [], steps
    assert "in sync at" in result.stdout
    assert server.ssh("sudo", "-n", "docker", "ps", "-q", "--no-trunc").stdout.split() == before


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


def test_uninstall_over_ssh_keeps_the_data_and_purge_removes_it(server: TestServer):
    kept = bootstrap(server, "--uninstall")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    gone = server.exec("sh", "-c", "ls -d /opt/lanai /etc/systemd/system/lanai.service "
                       "2>/dev/null; systemctl is-active lanai || true")
    assert gone.stdout.split() == ["inactive"], gone.stdout
    assert server.exec("test", "-f", "/srv/lanai/state.git/HEAD").returncode == 0
    assert server.exec("test", "-f", "/etc/lanai/secrets.env").returncode == 0
    assert server.exec("docker", "ps", "-q").stdout.split()  # the stack keeps serving
    purged = bootstrap(server, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert server.exec("sh", "-c", "ls -d /etc/lanai /srv/lanai/state.git /var/lib/lanai "
                       "2>/dev/null || true").stdout.strip() == ""
    assert server.exec("docker", "ps", "-aq").stdout.split() == []
    assert server.exec("sh", "-c", "docker volume ls -q --filter "
                       "label=com.docker.compose.project=lanai").stdout.strip() == ""


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

