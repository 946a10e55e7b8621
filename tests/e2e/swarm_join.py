"""Two clean servers added to a lanai server's Docker Swarm with `./bootstrap.sh --join`,
over real SSH, and the proof that it joined them, labelled them, kept the join token
out of every process list and log, changed nothing the second time and left the lanai
server's install and stack as they were.

The check runs on a lanai server another module already bootstrapped (the full
example's trixie server in test_full_example_servers.py), so that it costs only the two
new servers: boot, Docker from Debian, the swarm. All three are on this engine's default
bridge and talk over their bridge addresses (the manager advertises the address its sshd
was reached at); nothing restarts here, so no fixed addresses are needed. The servers
have no GPU: the GPU labels and the GPU swarm settings are proven on real `nvidia-smi`
output in tests/unit/setup/test_swarm_node.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

from .servers import BOOTSTRAP, SERVER_TRIXIE, TestServer, start

MANAGER, WORKERS = "box-a", ("box-b", "box-c")
TOKEN_MARK = "SWMTKN-"  # every swarm join token starts so (after a rotation too)
# Where a token written by mistake would be on a server.
SEARCHED = "/var/log /tmp /root /home /etc /srv /var/lib/lanai /opt/lanai"
PS_LOG = "/run/lanai-test-ps.log"


def ssh_config(servers: dict[str, TestServer], path: Path) -> Path:
    """One ssh_config with an alias per server, named as the server is to be named."""
    blocks = []
    for name, server in servers.items():
        blocks.append("\n".join([
            f"Host {name}", "  HostName 127.0.0.1", f"  Port {server.ssh_port}",
            "  User admin", f"  IdentityFile {server.key}", "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {server.known_hosts}", "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 10",
            "  LogLevel ERROR"]))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


class ProcessWatch:
    """The command line of every process, every ~100 ms, on each server (a loop inside it)
    and on this machine (a thread): what `ps` would have shown anyone during the run.
    A join through `docker swarm join --token` lasts ~0.4 s, `python3 -c` ~0.3 s."""

    def __init__(self, servers: list[TestServer]) -> None:
        self.servers = servers
        self.local: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ProcessWatch:
        for server in self.servers:
            server.container.exec_run(
                ["sh", "-c", f"while :; do ps -eo args >> {PS_LOG}; sleep 0.1; done"],
                detach=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.local.append(subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                             text=True, check=False).stdout)
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for server in self.servers:
            server.exec("sh", "-c", "pkill -f 'lanai-test-ps.log' || true", timeout=60)

    def seen(self, server: TestServer) -> tuple[int, int]:
        """(samples taken, lines with a join token) on the server."""
        counts = server.exec("sh", "-c", f"grep -c ^COMMAND {PS_LOG}; "
                             f"grep -cF -- {TOKEN_MARK} {PS_LOG} || true", timeout=60)
        samples, tokens = counts.stdout.split()
        return int(samples), int(tokens)


def token_found(server: TestServer) -> list[str]:
    """Where on the server a join token is written down (files, the journal)."""
    found = server.exec("sh", "-c", f"grep -rlsF -- {TOKEN_MARK} {SEARCHED} "
                        f"| grep -v '^{PS_LOG}$' || true", timeout=120).stdout.split()
    journal = server.exec("sh", "-c", f"journalctl --no-pager | grep -cF -- {TOKEN_MARK} "
                          "|| true", timeout=120).stdout.strip()
    return found + ([f"journal ({journal} lines)"] if journal not in ("", "0") else [])


def run_bootstrap(args: list[str], config: Path, logs: Path,
                  timeout: float = 900) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), *args, "--ssh-config", str(config), "--yes"],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "LANAI_BOOTSTRAP_LOGS": str(logs)})
    result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return result


def nodes(manager: TestServer) -> list[tuple[str, str, str, dict[str, str]]]:
    """(hostname, state, role, labels) of every node, read on the manager."""
    listed = manager.exec("sh", "-c", "docker node inspect $(docker node ls -q)", check=True)
    return sorted((info["Description"]["Hostname"], info["Status"]["State"],
                   info["Spec"]["Role"], info["Spec"].get("Labels") or {})
                  for info in json.loads(listed.stdout))


@dataclass
class Joined:
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    timings: dict[str, float]


def join_two_servers(manager: TestServer, client: docker.DockerClient, root: Path,
                     manager_unchanged: Callable[[], None], *,
                     lanai_server: bool = True) -> Joined:
    """Boot two clean trixie servers, `./bootstrap.sh --join box-a box-b box-c` (box-a is
    `manager`), check it all, run it again, check nothing changed; then remove the two.
    `manager_unchanged` asserts what the caller knows of the manager's own state;
    `lanai_server` False: the manager only looks like one (a development stand-in), so the
    dry run of the whole form, which includes its full install, is left out."""
    timings: dict[str, float] = {}
    mark = time.monotonic()
    workers: list[TestServer] = []
    threads = [threading.Thread(target=lambda n=n: workers.append(
        start(SERVER_TRIXIE, client, root / n))) for n in WORKERS]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(workers) == 2, "a worker did not boot"
        timings["boot 2 servers"] = time.monotonic() - mark
        servers = {MANAGER: manager, **dict(zip(WORKERS, workers, strict=True))}
        config = ssh_config(servers, root / "ssh_config")
        logs = root / "logs"
        containers_before = manager.exec("docker", "ps", "-q", "--no-trunc",
                                         check=True).stdout.split()
        swarm_before = manager.exec("docker", "info", "--format",
                                    "{{.Swarm.LocalNodeState}}").stdout.strip()
        dry = run_bootstrap(["--join", *servers, "--dry-run"], config, logs)
        timings["--join --dry-run"] = dry.seconds  # type: ignore[attr-defined]
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-8000:]
        for line in ("[box-b] · docker: would install docker.io",
                     "· swarm: would join box-b through the Engine API",
                     "· swarm: would label box-c's node (io.lanai.server=box-c"):
            assert line in dry.stdout, (line, dry.stdout)
        if swarm_before == "inactive":
            assert "· swarm: would run `docker swarm init --advertise-addr " in dry.stdout
        for worker in workers:  # nothing was changed
            assert worker.exec("sh", "-c", "command -v docker").returncode != 0
        assert manager.exec("docker", "info", "--format", "{{.Swarm.LocalNodeState}}"
                            ).stdout.strip() == swarm_before
        with ProcessWatch(list(servers.values())) as watch:
            first = run_bootstrap(["--join", *servers], config, logs)
        timings["first --join"] = first.seconds  # type: ignore[attr-defined]
        output = first.stdout + first.stderr
        assert first.returncode == 0, output[-8000:]
        for line in (f"✓ ssh: [{MANAGER}] connected to {MANAGER} (host key verified)",
                     "✓ swarm: box-b joined (at ", "✓ swarm: box-c joined (at ",
                     "✓ swarm: labelled box-b's node (io.lanai.server=box-b)",
                     "✓ swarm: labelled box-c's node (io.lanai.server=box-c)",
                     "✓ swarm: rotated the worker join token", "✓ swarm: 3 nodes: "):
            assert line in first.stdout, (line, output[-8000:])
        assert "[box-b] ✓ worker: ready for the swarm" in first.stdout, first.stdout
        assert "[box-b] ✓ docker: installed docker.io" in first.stdout, first.stdout
        assert f"[{MANAGER}]" not in first.stdout.replace(f"[{MANAGER}] connected", ""), \
            "the manager's install ran again"
        # The manager's node: a swarm made from it (it was in none), or the one it had.
        assert (f"✓ swarm: {MANAGER} is the manager of a new swarm (at " in first.stdout
                or f"✓ swarm: {MANAGER} already manages the swarm" in first.stdout), first.stdout
        mark = time.monotonic()
        listed = nodes(manager)
        names = {labels.get("io.lanai.server"): (state, role) for _, state, role, labels
                 in listed}
        assert names == {MANAGER: ("ready", "manager"), "box-b": ("ready", "worker"),
                         "box-c": ("ready", "worker")}, listed
        hostnames = {labels["io.lanai.server"]: host for host, _, _, labels in listed}
        assert hostnames["box-b"] == workers[0].name and hostnames["box-c"] == workers[1].name
        # The token: in no process list, no log, no output, no file.
        for name, server in servers.items():
            samples, tokens = watch.seen(server)
            assert samples > 20 and tokens == 0, (name, samples, tokens)
            assert token_found(server) == [], (name, token_found(server))
        assert not any(TOKEN_MARK in sample for sample in watch.local), "a token in ps here"
        assert TOKEN_MARK not in output
        for log in logs.iterdir():
            assert TOKEN_MARK not in log.read_text(), log
            assert oct(log.stat().st_mode & 0o777) == "0o600", log
        assert sorted(p.name for p in logs.iterdir()) == ["bootstrap-box-b.log",
                                                          "bootstrap-box-c.log"]
        # The manager: its containers as they were, its own checks.
        assert manager.exec("docker", "ps", "-q", "--no-trunc",
                            check=True).stdout.split() == containers_before
        manager_unchanged()
        timings["checks"] = time.monotonic() - mark

        second = run_bootstrap(["--join", *servers], config, logs)
        timings["second --join"] = second.seconds  # type: ignore[attr-defined]
        assert second.returncode == 0, (second.stdout + second.stderr)[-8000:]
        for line in (f"✓ swarm: {MANAGER} already manages the swarm",
                     "✓ swarm: box-b is already a member", "✓ swarm: box-c is already a member",
                     f"✓ swarm: {MANAGER}'s node labels already set",
                     "✓ swarm: box-b's node labels already set",
                     "✓ swarm: box-c's node labels already set"):
            assert line in second.stdout, (line, second.stdout)
        changed = [line for line in second.stdout.splitlines() if "✓ " in line and not any(
            word in line for word in ("already", "✓ ssh:", "✓ preflight:", "✓ gpu:",
                                      "ready for the swarm", "3 nodes"))]
        assert changed == [], changed
        assert "joined" not in second.stdout and "rotated" not in second.stdout
        assert nodes(manager) == listed
        # The whole form, `./bootstrap.sh box-a box-b box-c` (the first box the lanai server,
        # its full install run again, the others workers), now that all is set up: every
        # box and the swarm say "already", as test_second_bootstrap_is_a_no_op says it.
        if not lanai_server:
            return Joined(first, second, timings)
        whole = run_bootstrap(list(servers), config, logs)
        timings["all three again"] = whole.seconds  # type: ignore[attr-defined]
        assert whole.returncode == 0, (whole.stdout + whole.stderr)[-8000:]
        for line in (f"[{MANAGER}] ✓ reconciler: ", f"[{MANAGER}] ✓ daemon: ",
                     f"✓ swarm: {MANAGER} already manages the swarm",
                     "✓ swarm: box-c is already a member",
                     f"✓ swarm: {MANAGER}'s node labels already set"):
            assert line in whole.stdout, (line, whole.stdout)
        steps = [line.split("] ", 1)[-1] for line in whole.stdout.splitlines()
                 if line.split("] ", 1)[-1].startswith("✓ ")]
        changed = [line for line in steps if "already" not in line and not line.startswith(
            ("✓ ssh:", "✓ sudo:", "✓ preflight:", "✓ gpu:", "✓ reconcile:", "✓ models:",
             "✓ worker: ready", "✓ swarm: 3 nodes"))]
        assert changed == [], changed
        assert nodes(manager) == listed
        assert manager.exec("docker", "ps", "-q", "--no-trunc",
                            check=True).stdout.split() == containers_before
        manager_unchanged()
        return Joined(first, second, timings)
    finally:
        mark = time.monotonic()
        for server in workers:
            server.teardown()
        timings["teardown"] = time.monotonic() - mark
        print("\n--join of two servers: " + ", ".join(
            f"{what} {seconds:.0f}s" for what, seconds in timings.items()))
