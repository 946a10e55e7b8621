"""The end-to-end harness: a real bare git repo, the real `lanai` CLI and daemon,
a real Docker engine. Nothing here is imitated except Ollama (see tests/ollama_double)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import docker
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_STATE = REPO_ROOT / "desired-state"
MINI_STATE = Path(__file__).parent / "stacks" / "mini"
REQUIRED_IMAGES = ("ollama/ollama:0.24.0", "ghcr.io/open-webui/open-webui:v0.12.4",
                   "lanai-test/debian:bookworm", "caddy:2.6.2", "prom/prometheus:v3.5.0")
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # the thing polled may not exist yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class StateRepo:
    """A bare repo (the remote the server follows) and a working clone (the user's laptop)."""

    def __init__(self, root: Path, source: Path, replacements: dict[str, str]) -> None:
        self.bare = root / "state.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(root, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-b", "main")
        for item in source.iterdir():
            target = self.work / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
        for name in ("compose.yaml", "lanai.yaml", "monitoring/prometheus.yml"):
            path = self.work / name
            if not path.exists():  # a state without monitoring
                continue
            text = path.read_text()
            for old, new in replacements.items():
                text = text.replace(old, new)
            path.write_text(text)
        self.commit_push("Initial state")

    def read(self, name: str) -> str:
        return (self.work / name).read_text()

    def write(self, name: str, text: str) -> None:
        (self.work / name).write_text(text)

    def replace(self, name: str, old: str, new: str) -> None:
        text = self.read(name)
        assert old in text, f"{old!r} not in {name}"
        self.write(name, text.replace(old, new, 1))

    def commit(self, message: str) -> None:
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)

    def commit_push(self, message: str) -> str:
        self.commit(message)
        return self.push()

    def push(self) -> str:
        git(self.work, "push", "--quiet", "origin", "HEAD:main")
        return self.head()

    def commit_push_in_background(self, message: str) -> tuple[str, subprocess.Popen[str]]:
        """Commit and start `git push` without waiting for it: the push's hook waits for the
        deploy's result, and a test may need to act while that deploy runs."""
        self.commit(message)
        push = subprocess.Popen(["git", "push", "--quiet", "origin", "HEAD:main"],
                                cwd=self.work, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        return self.head(), push

    def revert_push(self, commit: str = "HEAD") -> str:
        git(self.work, "revert", "--no-edit", commit)
        return self.push()

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")


class Outside:
    """A container that stands for a service on the internet, one for the session: a stack's
    `service` reaches it by `host` on each of the service's networks with a route out (not
    `internal: true`), and on no other, as on a real server."""

    HOST = ""
    SERVICE = ""
    SCRIPT = ""
    started: ClassVar[list[Outside]] = []  # set for the session by tests/e2e/conftest.py

    def __init__(self, client: docker.DockerClient, environment: dict[str, str] | None = None
                 ) -> None:
        self.client = client
        self.container = client.containers.run(
            REQUIRED_IMAGES[0], name=f"lanai-e2e-{self.SERVICE}-outside-{uuid.uuid4().hex[:6]}",
            entrypoint=["python3", f"/usr/lib/ollama-double/{self.SCRIPT}"],
            environment=environment or {}, detach=True, labels={"io.lanai.test": self.HOST},
            # The internet does not go away when the host's Docker restarts (test_faults
            # restarts it): the engine starts the stand-in again, on the networks it joined.
            restart_policy={"Name": "always"})
        wait_for(lambda: b"listening" in self.container.logs(), 60, self.HOST)

    def wait_running(self, timeout: float = 60) -> None:
        """Until the stand-in runs again (after a restart of the host's Docker)."""
        def running() -> bool:
            self.container.reload()
            return self.container.status == "running"
        wait_for(running, timeout, f"{self.HOST} to run again")

    def attach(self, project: str, compose_text: str) -> list[str]:
        """Join the networks with a route out that the stack's service will be on, made now
        with the labels Compose gives its own so that Compose adopts them (lanai talks to
        the stack right after its deploy). Returns the networks joined."""
        spec = yaml.safe_load(compose_text) or {}
        declared = spec.get("networks") or {}
        service = (spec.get("services") or {}).get(self.SERVICE)
        if service is None:
            return []
        joined = []
        for key in service.get("networks") or ["default"]:
            options = declared.get(key) or {}
            if options.get("internal") or options.get("external"):
                continue
            name = options.get("name") or f"{project}_{key}"
            try:
                network = self.client.networks.get(name)
            except docker.errors.NotFound:
                network = self.client.networks.create(name, driver="bridge", labels={
                    "com.docker.compose.project": project, "com.docker.compose.network": key,
                    "com.docker.compose.version": compose_version()})
            network.reload()
            if self.container.id not in {c.id for c in network.containers}:
                network.connect(self.container, aliases=[self.HOST])
            joined.append(name)
        return joined

    def join(self, network: Any) -> None:
        """Be reachable by `HOST` on a network a test made itself (a route out)."""
        network.connect(self.container, aliases=[self.HOST])

    def leave(self, network: Any) -> None:
        network.disconnect(self.container, force=True)

    def requests_from(self, address: str) -> list[str]:
        """The requests (as "GET /v2/... HTTP/1.1") it logged from one address."""
        lines = self.container.logs().decode(errors="replace").splitlines()
        return [line.split('"')[1] for line in lines
                if f"] {address} " in line and line.count('"') >= 2]

    def stop(self) -> None:
        self.container.remove(force=True)


class ModelRegistry(Outside):
    """registry.ollama.ai (tests/ollama_double/registry.py), where Ollama pulls models."""

    HOST, SERVICE, SCRIPT = "registry.ollama.ai", "ollama", "registry.py"
    current: ModelRegistry | None = None


class CloudProvider(Outside):
    """An OpenAI-compatible cloud provider (tests/ollama_double/cloud.py) for Open WebUI's
    cloud connections; a name under .example, so nothing real answers if it is not there."""

    HOST, SERVICE, SCRIPT = "api.cloud.example", "open-webui", "cloud.py"
    KEY = "sk-cloud-e2e-123"
    MODELS = ("cloud-large", "cloud-mini")
    URL = f"http://{HOST}/v1"
    current: CloudProvider | None = None

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__(client, {"CLOUD_API_KEY": self.KEY,
                                  "CLOUD_MODELS": ",".join(self.MODELS)})


def compose_version() -> str:
    out = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().lstrip("v")


class Server:
    """This machine as a lanai server, isolated in a temp dir with its own project name."""

    def __init__(self, root: Path, repo: StateRepo, project: str, client: docker.DockerClient,
                 secrets: dict[str, str] | None = None) -> None:
        for outside in Outside.started:
            outside.attach(project, repo.read("compose.yaml"))
        self.root = root
        self.repo = repo
        self.project = project
        self.client = client
        self.home = root / "home"
        self.secrets_file = root / "secrets.env"
        self.secrets_file.write_text("".join(f"{k}={v}\n" for k, v in (secrets or {}).items()))
        self.secrets_file.chmod(0o600)
        self.env = {**os.environ, "LANAI_HOME": str(self.home), "LANAI_REPO": str(repo.bare),
                    "LANAI_SECRETS_FILE": str(self.secrets_file),
                    "LANAI_CONFIG": str(root / "no-server.yaml"), "COLUMNS": "200"}
        self.daemon: subprocess.Popen[str] | None = None
        self.daemon_log = root / "daemon.log"

    # -- the CLI, as a user runs it ---------------------------------------------------

    def lanai(self, *args: str, stdin: str | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], env=self.env,
                              capture_output=True, text=True, input=stdin, timeout=timeout,
                              check=False)

    def lanai_json(self, *args: str) -> tuple[int, Any]:
        result = self.lanai(*args, "--json")
        try:
            return result.returncode, json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"lanai {' '.join(args)} --json printed no JSON: "
                                 f"{result.stdout!r} {result.stderr!r}") from None

    def reconcile(self, *args: str) -> tuple[int, dict[str, Any]]:
        return self.lanai_json("reconcile", *args)

    def status(self) -> dict[str, Any]:
        return self.lanai_json("status")[1]

    def history(self) -> list[dict[str, Any]]:
        return self.lanai_json("history", "-n", "100")[1]

    # -- the daemon ---------------------------------------------------------------------

    def start_daemon(self) -> None:
        log = self.daemon_log.open("a")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--log-level", "debug"], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: self.lanai_json("status")[1].get("daemon"), 30, "the daemon's socket")

    def stop_daemon(self) -> int | None:
        if self.daemon is None:
            return None
        self.daemon.terminate()
        try:
            code = self.daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            code = self.daemon.wait()
        self.daemon = None
        return code

    # -- facts for assertions ---------------------------------------------------------------

    def containers(self) -> dict[str, Any]:
        found = self.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={self.project}"})
        return {c.labels["com.docker.compose.service"]: c for c in found}

    def container_ids(self) -> dict[str, str]:
        return {name: c.id for name, c in self.containers().items()}

    def env_of(self, service: str) -> dict[str, str]:
        container = self.containers()[service]
        return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])

    def docker_writes(self, since: float, until: float) -> list[dict[str, Any]]:
        """This project's Docker events in a window, less health-check execs (not writes).

        Other tests' and benchmarks' containers may be busy on the same engine."""
        events = self.client.events(since=since, until=until, decode=True)
        return [e for e in events if self._ours(e) and not str(e.get("Action", "")).startswith(
            ("exec_", "health_status"))]

    def _ours(self, event: dict[str, Any]) -> bool:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        return attributes.get("com.docker.compose.project") == self.project or str(
            attributes.get("name", "")).startswith(self.project)

    def teardown(self) -> None:
        self.stop_daemon()
        for container in self.containers().values():
            container.remove(force=True, v=True)
        label = f"com.docker.compose.project={self.project}"
        for network in self.client.networks.list(filters={"label": label}):
            network.reload()
            for container in network.containers:  # the model registry
                network.disconnect(container, force=True)
            network.remove()
        for volume in self.client.volumes.list(filters={"label": label}):
            volume.remove(force=True)


def new_project() -> str:
    return f"lanai-e2e-{uuid.uuid4().hex[:6]}"


class ExamplePorts:
    """Free loopback ports for the example state's published ports, and for its monitoring
    profile: Prometheus (on the host's network) and the daemon's /metrics it scrapes."""

    def __init__(self) -> None:
        self.webui, self.https, self.http = free_port(), free_port(), free_port()
        self.prometheus, self.metrics = free_port(), free_port()


def example_repo(root: Path, project: str, extra: dict[str, str] | None = None
                 ) -> tuple[StateRepo, ExamplePorts]:
    """desired-state/ as a state repo under its own project name, with Open WebUI, the
    https proxy and the monitoring profile's Prometheus on free loopback ports, Prometheus
    scraping /metrics on another (plus `extra` text replacements)."""
    ports = ExamplePorts()
    repo = StateRepo(root, EXAMPLE_STATE, {
        "project: lanai": f"project: {project}",
        '"127.0.0.1:3000:8080"': f'"127.0.0.1:{ports.webui}:8080"',
        '"443:443"': f'"127.0.0.1:{ports.https}:443"',
        '"80:80"': f'"127.0.0.1:{ports.http}:80"',
        "127.0.0.1:9090": f"127.0.0.1:{ports.prometheus}",
        "127.0.0.1:9469": f"127.0.0.1:{ports.metrics}", **(extra or {})})
    return repo, ports
