"""Survives faults (issue 6): the example state deployed for real under the daemon, then
one fault per test, each ending with the service answering and nothing lost.

"Nothing lost" is measured through Open WebUI's own API: a family member's account and
chat, made once when the stack is first deployed, reads back identical after every fault.

Ollama's volume lives on its own small disk (an 8 GiB sparse ext4 image, loop-mounted
and bound into the compose volume), as on a server whose models have their own
partition, so that the disk can really fill up. Everything else is the example state.

The tests share one deployment and run in the order of the file. Two of them restart
the host's Docker daemon: any other test using the engine at that time sees it go.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from . import chats
from .harness import (
    REPO_ROOT,
    Outside,
    Server,
    StateRepo,
    example_repo,
    new_project,
    wait_for,
)

SECRET = "e2e-faults-secret-51c0"
ADMIN_EMAIL = "admin@lanai.home.arpa"  # WEBUI_ADMIN_EMAIL in desired-state/compose.yaml
ADMIN_PASSWORD = "e2e-faults-admin-7d2e"
MEMBER = ("sam@example.invalid", "family member pw 42")  # made by the admin before the faults
CONVERSATION = [
    {"role": "user", "content": "What can I cook tonight with leeks and potatoes?"},
    {"role": "assistant", "content": "Leek and potato soup: sweat the leeks, add potatoes "
                                     "and stock, simmer 20 minutes, blend."},
    {"role": "user", "content": "And for the kids?"},
]
DOCKERD_LOG = Path("/var/log/dockerd.log")  # where tests/run starts dockerd's output
TINY = "lanai-test:tiny"  # a 26 MB model of the Ollama double's catalog
FIRST_DEPLOY_S = 900  # Open WebUI's first start plus four model pulls, on two cores


class ModelsDisk:
    """A small disk of its own for Ollama's models: a sparse ext4 image, loop-mounted.

    No reserved blocks (-m 0): Ollama runs as root and would write into them."""

    def __init__(self, root: Path, size: str = "8G") -> None:
        self.image = root / "ollama-disk.img"
        self.path = root / "ollama-disk"
        self.path.mkdir()
        subprocess.run(["truncate", "-s", size, str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(self.image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.path)], check=True)

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bfree * stat.f_frsize

    def fill(self, name: str, leave: int) -> None:
        """Another program takes the disk's space, all but about `leave` bytes. A pull may
        be writing meanwhile: when the space shrank under us, take a little less."""
        for attempt in range(10):
            take = self.free() - leave - attempt * 16 * 1024**2
            assert take > 0, (self.free(), leave)
            done = subprocess.run(["fallocate", "-l", str(take), str(self.path / name)],
                                  capture_output=True, check=False)
            if done.returncode == 0:
                return
            (self.path / name).unlink(missing_ok=True)
        raise AssertionError(f"could not fill {self.path}: {done.stderr!r}")

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=False)
        self.image.unlink(missing_ok=True)


class Deployment:
    def __init__(self, server: Server, repo: StateRepo, disk: ModelsDisk, port: int) -> None:
        self.server, self.repo, self.disk = server, repo, disk
        self.url = f"http://127.0.0.1:{port}"
        self.token = ""
        self.chat_id = ""
        self.chat: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        return self.server.status()

    def wait_settled(self, commit: str, timeout: float, what: str) -> dict[str, Any]:
        """Wait for `settled`; at the deadline, fail with the status and the daemon's log."""
        try:
            return wait_for(lambda: self.settled(commit), timeout, what)
        except AssertionError as exc:
            log = self.server.daemon_log.read_text(errors="replace").splitlines()[-40:]
            raise AssertionError(f"{exc}\nstatus: {json.dumps(self.status())[:3000]}\n"
                                 "daemon log:\n" + "\n".join(log)) from None

    def settled(self, commit: str) -> dict[str, Any] | None:
        """The status once `commit` is applied, in sync and healthy."""
        status = self.status()
        done = (status.get("applied_commit") == commit and status.get("sync") == "Synced"
                and status.get("health") == "Healthy")
        return status if done else None

    def answers(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=5).json().get("status") is True

    def assert_nothing_lost(self) -> None:
        """Open WebUI answers, the family member made before the faults still signs in,
        and their chat reads back identical."""
        wait_for(self.answers, 120, "Open WebUI to answer")
        token = chats.signin(self.url, *MEMBER)
        assert chats.read_chat(self.url, token, self.chat_id) == self.chat


@pytest.fixture(scope="module")
def deployed(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("faults")
    disk = ModelsDisk(root)
    project = new_project()
    repo, ports = example_repo(root, project, {
        "\nvolumes:\n  ollama:\n": "\nvolumes:\n  ollama:\n    driver_opts: "
                                   f"{{type: none, o: bind, device: {disk.path}}}\n",
        # A host path outside the state repo: lanai.yaml must allow it by name (beside the
        # example's own entry for its Prometheus).
        "  allow:\n": f"  allow:\n    ollama: [{disk.path}]\n"})
    port = ports.webui
    server = Server(root, repo, project, docker_client, {"WEBUI_SECRET_KEY": SECRET,
                                                         "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD})
    deployment = Deployment(server, repo, disk, port)
    try:
        installed = server.lanai("hook", "install", str(repo.bare))
        assert installed.returncode == 0, installed.stderr
        server.start_daemon()
        deployment.wait_settled(repo.head(), FIRST_DEPLOY_S, "the first deploy")
        wait_for(deployment.answers, 120, "Open WebUI to answer")
        admin = chats.signin(deployment.url, ADMIN_EMAIL, ADMIN_PASSWORD)
        chats.add_user(deployment.url, admin, "Sam", MEMBER[0], MEMBER[1])
        deployment.token = chats.signin(deployment.url, *MEMBER)
        deployment.chat_id = chats.create_chat(deployment.url, deployment.token,
                                               "Dinner with leeks", CONVERSATION)
        deployment.chat = chats.read_chat(deployment.url, deployment.token, deployment.chat_id)
        assert chats.spoken(deployment.chat) == [(m["role"], m["content"])
                                                 for m in CONVERSATION]
        yield deployment
    finally:
        try:
            server.teardown()
        finally:
            disk.close()  # even when Docker is gone: no loop device left behind


# -- processes, as /proc shows them -----------------------------------------------------

def processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, [a.decode(errors="replace") for a in argv if a])
    return found


def descendants(pid: int) -> list[int]:
    table = processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in table.items() if pp == parent]
        found += children
        frontier += children
    return found


def compose_up_child(daemon_pid: int) -> int | None:
    """The daemon's `docker compose ... up` child, while it runs."""
    for pid, (parent, argv) in processes().items():
        if parent == daemon_pid and "compose" in argv and "up" in argv:
            return pid
    return None


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (a dockerd that an earlier test started is
    this process's child, and stays a zombie until it is reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return True
    return False


def unit_setting(key: str) -> str | None:
    unit = (REPO_ROOT / "packaging" / "lanai.service").read_text()
    values = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    return values[-1] if values else None


def kill_daemon(server: Server) -> int:
    """SIGKILL, as the OOM killer or a power cut would: nothing runs in the daemon after."""
    assert server.daemon is not None
    pid = server.daemon.pid
    os.kill(pid, signal.SIGKILL)
    server.daemon.wait(timeout=30)
    server.daemon = None
    return pid


# -- the Docker daemon ------------------------------------------------------------------

def restart_dockerd(client: docker.DockerClient) -> None:
    """Stop the host's dockerd (SIGTERM, as `systemctl restart docker` does) and start it
    again with the same argv and environment, its output to the log tests/run uses."""
    pid = next(p for p, (_, argv) in processes().items() if argv[:1] == ["dockerd"]
               or (argv and argv[0].endswith("/dockerd")))
    argv = processes()[pid][1]
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid), 180, "dockerd to stop")
    with DOCKERD_LOG.open("a") as log:
        subprocess.Popen(["nohup", *argv], env=environ, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for(client.ping, 120, "dockerd to answer again")
    for stand_in in Outside.started:  # the session's internet, for the tests after these
        stand_in.wait_running()


# -- the faults, in order -----------------------------------------------------------------

def test_reconciler_sigkilled_mid_apply_and_restarted_as_systemd_would_finishes_the_commit(
        deployed: Deployment):
    """The restart is done by the test, standing in for systemd: the unit says
    Restart=on-failure, which covers a main process killed by a signal (systemd.service(5):
    "on-failure ... killed by a signal"), and the default KillMode=control-group stops
    what is left of the unit (the compose child) before starting it again."""
    assert unit_setting("Restart") == "on-failure"
    assert unit_setting("KillMode") in (None, "control-group")
    server = deployed.server
    deployed.repo.replace("compose.yaml", 'DEFAULT_USER_ROLE: "pending"',
                          'DEFAULT_USER_ROLE: "pending"\n      TZ: "Europe/Oslo"')
    # The hook pokes the daemon and waits for the deploy, which is killed under it.
    commit, push = deployed.repo.commit_push_in_background("Open WebUI in Oslo time")
    assert server.daemon is not None
    daemon_pid = server.daemon.pid
    child = wait_for(lambda: compose_up_child(daemon_pid), 120, "the daemon's compose up",
                     interval=0.02)
    leftovers = [child, *descendants(child)]
    kill_daemon(server)
    lock = server.home / "lock"
    assert json.loads((lock / "owner.json").read_text())["pid"] == daemon_pid  # left behind
    for pid in leftovers:  # systemd: SIGTERM to the rest of the control group
        if not gone(pid):
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: all(gone(pid) for pid in leftovers), 60, "the compose child to stop")
    output, _ = push.communicate(timeout=60)
    assert push.returncode == 0, output  # the push is stored whatever became of its deploy

    server.start_daemon()
    status = deployed.wait_settled(commit, 420, "the commit to be finished")
    assert status["last_error"] is None
    assert server.env_of("open-webui")["TZ"] == "Europe/Oslo"
    assert not lock.exists() or json.loads((lock / "owner.json").read_text())[
        "pid"] != daemon_pid
    deployed.assert_nothing_lost()


def test_git_remote_unreachable_keeps_the_stack_running_and_catches_up_when_back(
        deployed: Deployment):
    server, repo = deployed.server, deployed.repo
    before = server.container_ids()
    away = repo.bare.with_name("state.git.away")
    repo.bare.rename(away)  # the git server is down: nothing answers at that path
    try:
        assert server.lanai("reconcile", "--now").returncode == 0  # poke the daemon
        status = wait_for(lambda: (s := deployed.status())["source_error"] and s, 60,
                          "status to say the source cannot be fetched")
        assert str(repo.bare) in status["source_error"], status["source_error"]
        assert status["health"] == "Healthy"
        deployed.assert_nothing_lost()
        assert server.container_ids() == before
    finally:
        away.rename(repo.bare)
    repo.write("NOTES.md", "The git server was down for a while.\n")
    commit = repo.commit_push("Notes after the outage")  # the hook pokes the daemon
    status = deployed.wait_settled(commit, 120, "the daemon to catch up")
    assert status["source_error"] is None
    assert server.container_ids() == before
    deployed.assert_nothing_lost()


def test_hung_open_webui_fails_its_health_check_and_is_restarted_with_the_event_recorded(
        deployed: Deployment):
    """A hung server (all of Open WebUI's processes stopped with SIGSTOP from the host):
    the container runs, its health check times out, the daemon restarts it."""
    server = deployed.server
    container = server.containers()["open-webui"]
    started_at = container.attrs["State"]["StartedAt"]
    main_pid = container.attrs["State"]["Pid"]
    hung = [main_pid, *descendants(main_pid)]
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)

    def healed() -> dict[str, Any] | None:
        return next((r for r in server.history() if r["status"] == "healed" and any(
            d["service"] == "open-webui" and d["kind"] == "unhealthy" for d in r["drift"])),
            None)

    record = wait_for(healed, 420, "the daemon to restart the hung Open WebUI")
    assert record["trigger"] == "event"
    assert ("restart", "open-webui", "ok") in [(a["kind"], a["service"], a["result"])
                                               for a in record["actions"]]
    container.reload()
    assert container.attrs["State"]["StartedAt"] != started_at
    status = wait_for(lambda: (s := deployed.status())["health"] == "Healthy" and s, 180,
                      "a healthy stack after the restart")
    assert status["last_heal"]["drift"][0]["service"] == "open-webui"
    deployed.assert_nothing_lost()


def test_docker_daemon_restart_brings_the_stack_back_and_the_daemon_reconnects(
        deployed: Deployment):
    server = deployed.server
    assert server.daemon is not None
    restart_dockerd(server.client)
    wait_for(lambda: all(c.status == "running" for c in server.containers().values())
             and len(server.containers()) == 3, 120, "the containers back (unless-stopped)")
    wait_for(lambda: deployed.status()["health"] == "Healthy", 300, "a healthy stack")
    assert server.daemon.poll() is None  # the daemon lived through it
    log = server.daemon_log.read_text()
    assert "docker events unavailable" in log
    # Reconnected: a container stopped now is seen at once and healed.
    healed_before = len([r for r in server.history() if r["status"] == "healed"])
    server.containers()["proxy"].stop(timeout=5)
    wait_for(lambda: len([r for r in server.history() if r["status"] == "healed"])
             > healed_before, 60, "a heal after the docker restart")
    deployed.wait_settled(deployed.repo.head(), 120, "in sync and healthy")
    deployed.assert_nothing_lost()


def test_power_cut_simulated_daemon_killed_stale_lock_of_another_boot_and_docker_restart(
        deployed: Deployment):
    """A reboot, simulated: the daemon dies without a word (SIGKILL), its lock stays
    behind with the previous boot's id (and a pid that is alive now, as pids are reused
    after a reboot), Docker restarts and restarts the containers; then the daemon starts."""
    server = deployed.server
    kill_daemon(server)
    lock = server.home / "lock"
    lock.mkdir(exist_ok=True)
    (lock / "owner.json").write_text(json.dumps({
        "pid": os.getpid(), "host": os.uname().nodename,
        "boot_id": "00000000-0000-4000-8000-000000000000", "purpose": "reconcile"}))
    restart_dockerd(server.client)
    server.start_daemon()
    deployed.wait_settled(deployed.repo.head(), 300, "a healthy stack in sync")
    wait_for(lambda: not lock.exists(), 60, "the stale lock to be taken over and released")
    deployed.assert_nothing_lost()


def test_disk_filling_up_during_a_model_pull_is_reported_and_nothing_is_corrupted(
        deployed: Deployment):
    server, repo, disk = deployed.server, deployed.repo, deployed.disk
    code, listed = server.lanai_json("models")
    assert code == 0, listed
    ready = {r["model"] for r in listed["models"] if r["state"] == "ready"}
    assert len(ready) == 4, listed
    # Slow pulls that write what they download (Ollama double knobs), then a model that
    # fits: the disk has 2 GiB (disk_keep_free) + 100 MiB free (the up-front check passes: the
    # tiny model is 25 MiB; recreating Ollama writes a little too) when the pull starts.
    repo.replace("compose.yaml", 'OLLAMA_HOST: "0.0.0.0:11434"',
                 'OLLAMA_HOST: "0.0.0.0:11434"\n      OLLAMA_DOUBLE_PULL_BYTES_PER_SEC: '
                 '"2000000"\n      OLLAMA_DOUBLE_PULL_WRITES: "1"')
    repo.replace("models.yaml", "local:\n", f"local:\n  - {TINY}\n")
    disk.fill("other-program", leave=2 * 1024**3 + 100 * 1024**2)
    repo.commit_push("A tiny model, pulled slowly")
    partials = disk.path / "models" / "blobs"
    wait_for(lambda: any(p.stat().st_size > 0 for p in partials.glob("*-partial")), 180,
             "the pull to be writing")
    disk.fill("other-program-2", leave=1024 * 1024)  # and now the disk is full

    def failed() -> dict[str, Any] | None:
        rows = {r["model"]: r for r in server.lanai_json("models")[1]["models"]}
        return rows if rows[TINY]["state"] == "failed" else None

    rows = wait_for(failed, 120, f"the pull of {TINY} to fail")
    note = rows[TINY]["note"]
    assert "is full (no space left on device)" in note and "free some space" in note, note
    assert {m for m, r in rows.items() if r["state"] == "ready"} == ready
    # The stack serves, but the models part did not converge: Degraded, saying why.
    status = deployed.status()
    assert status["health"] == "Degraded", status
    assert "no space left on device" in status["problems"]["models"], status
    # The other models are still there and answer, through Open WebUI.
    token = chats.signin(deployed.url, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    tags = httpx.get(f"{deployed.url}/ollama/api/tags", headers=headers, timeout=30).json()
    assert ready <= {m["name"] for m in tags["models"]}
    answer = httpx.post(f"{deployed.url}/ollama/api/generate", headers=headers, timeout=120,
                        json={"model": "phi3:3.8b-mini-4k-instruct-q4_K_M",
                              "prompt": "Say hi", "stream": False})
    assert answer.status_code == 200 and answer.json()["done"], answer.text
    deployed.assert_nothing_lost()
    # Space freed, an explicit retry pulls it.
    (disk.path / "other-program").unlink()
    (disk.path / "other-program-2").unlink()
    code, outcome = server.reconcile("--retry")
    assert code == 0, outcome
    assert server.lanai_json("models")[1]["models"] and TINY in {
        r["model"] for r in server.lanai_json("models")[1]["models"] if r["state"] == "ready"}
