"""Security checks, as tests, with the real parts (issue 6).

The example state (desired-state/) is deployed once for the module: Ollama is
unreachable from outside its compose network, the secrets file is root-only,
and no secret value shows up in the state repo, in `docker inspect` of a
container that does not need it, in logs, in lanai's files or in any process's
argv while Open WebUI is recreated. On the small stack with the daemon: the
post-receive hook runs nothing from a ref name, the control socket rejects
what it does not know, and the push webhook deploys only with the right HMAC.

Host keys are verified by bootstrap: test_bootstrap_remote.py covers that.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from reconciler.daemon.control import poke

from .harness import (
    MINI_STATE,
    Server,
    StateRepo,
    example_repo,
    free_port,
    git,
    new_project,
    wait_for,
)

# Distinct random values, so a hit can only be a leak (never a coincidence).
SECRETS = {
    "WEBUI_SECRET_KEY": f"webui-key-{uuid.uuid4().hex}",
    "WEBUI_ADMIN_PASSWORD": f"admin-pw-{uuid.uuid4().hex}",
    # The server's own secret: no container may ever see it.
    "LANAI_WEBHOOK_SECRET": f"hook-{uuid.uuid4().hex}",
}
PROBE_IMAGE = "lanai-test/debian:bookworm"
PROBE_SCRIPT = r"""
import concurrent.futures, json, socket, sys
def attempt(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "open"
    except OSError as exc:
        return type(exc).__name__
targets = sys.argv[1:]
pool = concurrent.futures.ThreadPoolExecutor(len(targets))
futures = {t: pool.submit(attempt, t) for t in targets}
done, _ = concurrent.futures.wait(futures.values(), timeout=8)
print(json.dumps({t: f.result() if f in done else "no answer" for t, f in futures.items()}))
sys.stdout.flush()
import os; os._exit(0)
"""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_body(commit: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": commit,
                       "repository": {"full_name": "family/lanai-state"}}).encode()


class Stack:
    def __init__(self, server: Server, repo: StateRepo, hook_port: int) -> None:
        self.server, self.repo, self.hook_port = server, repo, hook_port
        self.hook_url = f"http://127.0.0.1:{hook_port}/hooks/push"


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("security")
    project = new_project()
    # Only the webhook may start the deploy the argv test watches, never a poll.
    repo, _ = example_repo(root, project, {"poll_interval: 60s": "poll_interval: 1h"})
    server = Server(root, repo, project, docker_client, SECRETS)
    hook_port = free_port()
    server.env["LANAI_WEBHOOK_LISTEN"] = f"127.0.0.1:{hook_port}"
    code, outcome = server.reconcile()
    assert code == 0, outcome
    yield Stack(server, repo, hook_port)
    server.teardown()


def probe(client: docker.DockerClient, network: str, targets: list[str]) -> dict[str, str]:
    """Try TCP connections from a fresh container on `network`."""
    output = client.containers.run(PROBE_IMAGE, ["python3", "-c", PROBE_SCRIPT, *targets],
                                   network=network, remove=True, stdout=True, stderr=True)
    return json.loads(output.decode().strip().splitlines()[-1])


def address_on(container: Any, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


# -- Ollama stays inside its compose network --------------------------------------------------

def test_ollama_publishes_no_port_and_only_open_webui_can_reach_it(stack: Stack):
    client, project = stack.server.client, stack.server.project
    containers = stack.server.containers()
    ollama, webui = containers["ollama"], containers["open-webui"]
    assert not ollama.attrs["HostConfig"].get("PortBindings")
    assert not any(ollama.attrs["NetworkSettings"]["Ports"].values())
    internal, lan = f"{project}_internal", f"{project}_lan"
    # `egress` is Ollama's own way out to its model registry; nothing else joins it.
    egress = f"{project}_egress"
    assert set(ollama.attrs["NetworkSettings"]["Networks"]) == {internal, egress}
    assert set(webui.attrs["NetworkSettings"]["Networks"]) == {internal, lan}
    ollama_ip, egress_ip = address_on(ollama, internal), address_on(ollama, egress)
    targets = [f"{ollama_ip}:11434", f"{egress_ip}:11434", "ollama:11434",
               f"{ollama.name}:11434"]

    # A container on Docker's default bridge, beside a server that it can reach.
    helper = client.containers.run(PROBE_IMAGE, ["python3", "-m", "http.server", "8000"],
                                   detach=True, name=f"{project}-probe-helper")
    try:
        helper_ip = wait_for(lambda: address_on(helper, "bridge"), 30, "the helper's address")
        wait_for(lambda: helper.exec_run(["python3", "-c", "import socket; socket."
                                          "create_connection(('127.0.0.1', 8000))"]
                                         ).exit_code == 0, 30, "the helper listening")
        from_bridge = probe(client, "bridge", [f"{helper_ip}:8000", *targets])
    finally:
        helper.remove(force=True)
    assert from_bridge.pop(f"{helper_ip}:8000") == "open"  # the probe itself can connect
    assert "open" not in from_bridge.values(), from_bridge

    # A container on the stack's own LAN-side network reaches Open WebUI, not Ollama.
    from_lan = probe(client, lan, ["open-webui:8080", *targets])
    assert from_lan.pop("open-webui:8080") == "open"
    assert "open" not in from_lan.values(), from_lan

    # Open WebUI, on both networks, does reach it by name.
    reached = webui.exec_run(["python3", "-c", "import urllib.request; print(urllib.request"
                              ".urlopen('http://ollama:11434/api/version', timeout=10).status)"])
    assert (reached.exit_code, reached.output.decode().strip()) == (0, "200"), reached.output


# -- the secrets file -------------------------------------------------------------------------

def test_secrets_file_is_root_only_and_a_readable_one_is_refused(stack: Stack, tmp_path):
    server = stack.server
    fresh = tmp_path / "etc-lanai" / "secrets.env"
    made = subprocess.run([sys.executable, "-m", "reconciler", "secrets", "set", "NEW_KEY"],
                          input="v4lue\n", env={**server.env, "LANAI_SECRETS_FILE": str(fresh)},
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    info = fresh.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0)
    assert stat.S_IMODE(fresh.parent.stat().st_mode) & 0o077 == 0
    assert "v4lue" not in made.stdout + made.stderr

    before = server.container_ids()
    applied = server.status()["applied_commit"]
    try:
        for mode in (0o644, 0o640):
            server.secrets_file.chmod(mode)
            result = server.lanai("reconcile")
            assert result.returncode == 8, (result.stdout, result.stderr)
            message = result.stderr.strip()
            assert message.count("\n") == 0, message  # one sentence, not a traceback
            assert f"the secrets file {server.secrets_file} can be read by other users" in message
            assert f"chmod 600 {server.secrets_file}" in message
            listed = server.lanai("secrets", "list")
            assert listed.returncode == 8
    finally:
        server.secrets_file.chmod(0o600)
    assert server.container_ids() == before
    assert server.status()["applied_commit"] == applied


# -- no secret in any process's argv, during a deploy started by the webhook --------------------

class ArgvWatch:
    """Reads every process's argv (what `ps` shows) in a loop, on its own thread."""

    def __init__(self, values: list[str]) -> None:
        self.values = [v.encode() for v in values]
        self.hits: list[tuple[int, bytes]] = []
        self.compose_argv: list[bytes] = []
        self.environ_hits: list[int] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    argv = Path(entry.path, "cmdline").read_bytes()
                except OSError:  # the process ended between listing and reading
                    continue
                if any(value in argv for value in self.values):
                    self.hits.append((int(entry.name), argv))
                if b"compose" in argv and b"\0up\0" in argv + b"\0":
                    self.compose_argv.append(argv)
                    try:
                        environ = Path(entry.path, "environ").read_bytes()
                    except OSError:
                        continue
                    if any(value in environ for value in self.values):
                        self.environ_hits.append(int(entry.name))
            self.samples += 1
            # A scan costs ~6 ms; back to back it would take a core from Open WebUI's start.
            self._stop.wait(0.025)


def test_webhook_deploy_recreating_open_webui_puts_no_secret_in_any_argv(stack: Stack):
    server, repo = stack.server, stack.repo
    before = server.container_ids()
    server.start_daemon()
    # The daemon's start reconcile finds nothing to do; only then is the push made.
    wait_for(lambda: "start: commit " in server.daemon_log.read_text(), 300,
             "the daemon's start reconcile")
    repo.replace("compose.yaml", 'WEBUI_ADMIN_NAME: "Admin"',
                 'WEBUI_ADMIN_NAME: "Admin"\n      WEBUI_NAME: "Family AI"')
    commit = repo.commit_push("Name the family's AI")  # no post-receive hook here
    body = push_body(commit)
    canary = f"canary-{uuid.uuid4().hex}"  # a value put in an argv on purpose: it must be seen
    with ArgvWatch([canary, *SECRETS.values()]) as watch:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5)", canary], check=True)
        reply = httpx.post(stack.hook_url, content=body, timeout=10, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": sign(SECRETS["LANAI_WEBHOOK_SECRET"], body)})
        assert reply.status_code == 202, reply.text
        record = wait_for(lambda: [r for r in server.history() if r["commit"] == commit], 600,
                          "the webhook's deploy")[0]
    # On a loaded machine Open WebUI may start too slowly for its health check: say so.
    assert record["status"] == "applied", record["error"]
    assert server.status()["applied_commit"] == commit
    after = server.container_ids()
    assert after["open-webui"] != before["open-webui"]
    assert server.env_of("open-webui")["WEBUI_NAME"] == "Family AI"
    assert server.history()[0]["trigger"] == "webhook"
    # The watch saw the deploy's own `docker compose ... up`, so it was looking.
    assert watch.compose_argv, f"no compose process seen in {watch.samples} samples"
    assert {argv.split(b"\0")[-2] for _, argv in watch.hits} == {canary.encode()}, watch.hits
    assert watch.environ_hits == []
    server.stop_daemon()


# -- no secret where it does not belong -------------------------------------------------------

def test_no_secret_in_repo_inspect_logs_lanai_files_or_daemon_log(stack: Stack):
    server = stack.server
    values = list(SECRETS.values())

    history = subprocess.run(["git", "log", "-p", "--all"], cwd=stack.repo.bare,
                             capture_output=True, text=True, check=True).stdout
    assert "WEBUI_SECRET_KEY" in history  # the repo names the secret ...
    assert not [v for v in values if v in history]  # ... and holds no value

    containers = server.containers()
    webui_inspect = json.dumps(server.client.api.inspect_container(containers["open-webui"].id))
    assert SECRETS["WEBUI_SECRET_KEY"] in webui_inspect  # the one that needs it has it
    assert SECRETS["LANAI_WEBHOOK_SECRET"] not in webui_inspect
    for name in ("ollama", "proxy"):
        inspected = json.dumps(server.client.api.inspect_container(containers[name].id))
        assert not [v for v in values if v in inspected], name

    for name, container in containers.items():
        logs = container.logs().decode(errors="replace")
        assert logs or name == "proxy", f"{name} wrote no logs to check"
        assert not [v for v in values if v in logs], name

    env_files = []
    for path in server.home.rglob("*"):
        if not path.is_file():
            continue
        if ".lanai-secrets" in path.parts:
            env_files.append(path)
            continue
        text = path.read_bytes().decode(errors="replace")
        assert not [v for v in values if v in text], path
    assert env_files
    for path in env_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0, path.parent
        assert SECRETS["LANAI_WEBHOOK_SECRET"] not in path.read_text(), path
    for directory in server.home.rglob(".lanai-secrets"):
        assert stat.S_IMODE(directory.parent.stat().st_mode) & 0o077 == 0, directory

    log = server.daemon_log.read_text()
    assert "webhook from 127.0.0.1: POST /hooks/push -> 202" in log
    assert not [v for v in values if v in log]
    assert "sha256=" not in log


# -- the small stack with the daemon: hook, control socket, webhook ------------------------------

@pytest.fixture
def mini(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Server]:
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(tmp_path, repo, project, docker_client, SECRETS)
    yield server
    server.teardown()


def push_ref(work: Path, refspec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "push", "origin", refspec], cwd=work, capture_output=True,
                          text=True, check=False)


def test_post_receive_hook_runs_nothing_from_a_ref_name_and_never_fails_a_push(mini: Server):
    repo = mini.repo
    installed = mini.lanai("hook", "install", str(repo.bare))
    assert installed.returncode == 0, installed.stderr
    hook = (repo.bare / "hooks" / "post-receive").read_text()
    # The hook only execs the poke; the refs git gives it on stdin are never read.
    commands = [line for line in hook.splitlines() if line and not line.startswith("#")]
    assert all(line.startswith("export LANAI_") for line in commands[:-1]), commands
    assert re.fullmatch(r"exec \S+ -I -S \S+/reconciler/daemon/control\.py --socket \S+",
                        commands[-1]), commands

    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    names = [f"x$(touch${{IFS}}{marker})", f"y`touch${{IFS}}{marker}`", f"z;touch${{IFS}}{marker}"]
    for name in names:
        checked = subprocess.run(["git", "check-ref-format", "--branch", name],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"git refuses {name!r}, so this check proves nothing"

    # No daemon yet: the push is stored and says how to deploy it.
    git(repo.work, "tag", names[0])
    pushed = push_ref(repo.work, f"refs/tags/{names[0]}")
    assert pushed.returncode == 0, pushed.stderr
    assert "daemon is not running" in pushed.stderr
    assert not marker.exists()

    mini.start_daemon()
    wait_for(lambda: mini.status().get("applied_commit") == repo.head(), 120, "the first deploy")
    for name in names:
        pushed = push_ref(repo.work, f"HEAD:refs/heads/{name}")
        assert pushed.returncode == 0, pushed.stderr
        # The hook ran, only poked, and printed the result of the reconcile it queued (no new
        # commit on the followed branch: main stays Synced).
        assert f"lanai: Synced at {repo.head()[:12]}" in pushed.stderr, pushed.stderr
    assert not marker.exists()
    # The odd refs break nothing: the next push to main deploys.
    repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "after odd refs"')
    commit = repo.commit_push("After odd refs")
    wait_for(lambda: mini.status().get("applied_commit") == commit, 60, "the next deploy")
    assert not marker.exists()


def test_control_socket_is_owner_and_group_only_and_rejects_unknown_commands(mini: Server):
    mini.start_daemon()
    path = mini.home / "daemon.sock"
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_uid == 0
    try:
        expected_gid = grp.getgrnam("lanai").gr_gid
    except KeyError:  # no lanai group on this machine: the daemon's own group
        expected_gid = os.getgid()
    assert info.st_gid == expected_gid

    for request in ({"command": "shell", "argv": ["touch", "/tmp/x"]}, {"command": None},
                    {"command": "reconcile; rm -rf /"}, {}):
        reply = poke(path, request)
        assert reply is not None and reply["ok"] is False, (request, reply)
    # Bytes that are not UTF-8, not JSON, or JSON that is not an object: answered, refused.
    for garbage in (b"\x00\xffnot json\n", b"[1, 2]\n", b"\"reconcile\"\n", b"{\n"):
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(path))
            conn.sendall(garbage)
            assert json.loads(conn.makefile().readline())["ok"] is False, garbage
    assert poke(path, {"command": "ping"}) == {"ok": True, "pid": mini.daemon.pid}
    # SIGTERM, most likely while the first deploy still runs: it finishes, then the daemon
    # exits by itself (it once deadlocked here, until systemd's SIGKILL) and removes its socket.
    assert mini.stop_daemon() == 0
    assert not path.exists()


def test_daemon_refuses_to_start_with_a_webhook_and_no_or_a_short_secret(mini: Server):
    mini.env["LANAI_WEBHOOK_LISTEN"] = f"127.0.0.1:{free_port()}"
    for secrets in ("", "LANAI_WEBHOOK_SECRET=only-15-chars!!\n"):
        mini.secrets_file.write_text(secrets)
        result = mini.lanai("run", timeout=60)
        assert result.returncode == 8, (result.stdout, result.stderr)
        message = result.stderr.strip()
        assert message.count("\n") == 0 and "LANAI_WEBHOOK_SECRET" in message, message
        assert "lanai secrets set LANAI_WEBHOOK_SECRET" in message
        assert not (mini.home / "daemon.sock").exists()
        assert mini.container_ids() == {}


def test_webhook_deploys_only_a_correctly_signed_push(mini: Server):
    repo, secret = mini.repo, SECRETS["LANAI_WEBHOOK_SECRET"]
    url = f"http://127.0.0.1:{free_port()}"
    mini.env["LANAI_WEBHOOK_LISTEN"] = url.removeprefix("http://")
    url += "/hooks/push"
    mini.start_daemon()
    first = wait_for(lambda: mini.status().get("applied_commit") == repo.head(), 120,
                     "the first deploy")
    assert first
    # No post-receive hook and a 300 s poll: only a request can deploy this commit.
    repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "webhook"')
    commit = repo.commit_push("Deployed by the webhook")
    body = push_body(commit)
    good = sign(secret, body)
    json_type = {"Content-Type": "application/json"}

    def post(content: bytes, headers: dict[str, str]) -> int:
        return httpx.post(url, content=content, timeout=30,
                          headers={**json_type, **headers}).status_code

    oversize = b"{" + b" " * (1024 * 1024) + b"}"
    refused = {
        "wrong signature": post(body, {"X-GitHub-Event": "push",
                                       "X-Hub-Signature-256": sign("not-the-secret-16+", body)}),
        "no signature": post(body, {"X-GitHub-Event": "push"}),
        "replayed with another body": post(push_body("f" * 40), {
            "X-GitHub-Event": "push", "X-Hub-Signature-256": good}),
        "GET": httpx.get(url, timeout=30).status_code,
        "oversize": post(oversize, {"X-GitHub-Event": "push",
                                    "X-Hub-Signature-256": sign(secret, oversize)}),
        "ping": post(body, {"X-Gitea-Event": "ping", "X-Hub-Signature-256": good}),
    }
    assert refused == {"wrong signature": 401, "no signature": 401,
                       "replayed with another body": 401, "GET": 405, "oversize": 413,
                       "ping": 200}
    # Had any of those queued a reconcile, it would run before this poke (one worker,
    # in order) and deploy the commit under the trigger "webhook".
    assert poke(mini.home / "daemon.sock", {"command": "reconcile", "trigger": "after-refused"})
    wait_for(lambda: mini.status().get("applied_commit") == commit, 60, "the poked deploy")
    assert mini.history()[0]["trigger"] == "after-refused"
    assert "webhook" not in {r["trigger"] for r in mini.history()}

    repo.replace("compose.yaml", 'GREETING: "webhook"', 'GREETING: "signed"')
    signed = repo.commit_push("Signed push")
    body = push_body(signed)
    assert post(body, {"X-Gitea-Event": "push", "X-Hub-Signature-256": sign(secret, body)}) == 202
    wait_for(lambda: mini.status().get("applied_commit") == signed, 60, "the webhook's deploy")
    assert mini.history()[0]["trigger"] == "webhook"
    assert mini.env_of("web")["GREETING"] == "signed"
    mini.stop_daemon()
    log = mini.daemon_log.read_text()
    assert log.count("webhook from 127.0.0.1:") == 7, log
    assert secret not in log and "sha256=" not in log and good[7:] not in log
