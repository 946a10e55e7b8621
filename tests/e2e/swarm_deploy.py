"""The full example moved onto three servers by a push of `mode: swarm`, and back by
`git revert`: the checks test_full_example_servers.py runs on its trixie lanai server
once swarm_join.py has joined two workers to it (box-a the manager, box-b and box-c the
workers, all booted Debian 13 servers on this engine's default bridge, over real SSH).

What it proves, as issue 16 asks: the stack deployed with `docker stack deploy` from the
same compose.yaml (Open WebUI and the proxy on the manager, one Ollama per worker), each
model pulled on the server models.yaml places it on, chats through the real Open WebUI
behind the proxy answered by both; one server stopped (its container paused: its
heartbeats stop, as when a box drops off the LAN) while the other keeps chatting and
`lanai status` names the missing server; it comes back and converges with no push; a push
rolls out; `git revert` returns the stack to one box with Open WebUI's data kept.

Differences from a user's servers: no GPU (the Ollama double on the CPU; the GPU side of
Swarm is proven on real nvidia-smi output in the unit tests), an UNENCRYPTED overlay
(`swarm.encrypt: false`: this kernel has no ESP, see README "Several servers"), images
loaded with `--images` instead of pulled, servers on one Docker bridge.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from .harness import REPO_ROOT, git, wait_for
from .servers import TestServer, save_images

NAME = "ai.home.arpa"
ADMIN_EMAIL = "admin@lanai.home.arpa"
MODEL_B = "phi3:3.8b-mini-4k-instruct-q4_K_M"  # placed on box-b (and the default)
MODEL_C = "llama3.1:8b-instruct-q4_K_M"  # placed on box-c
EMBED = "nomic-embed-text:v1.5"  # no place: on both
OLLAMA_IMAGE = "ollama/ollama:0.24.0"

SERVERS = """
mode: swarm
servers:
  - {name: box-a, gpu: none}          # the manager: Open WebUI, the proxy, lanai
  - {name: box-b, gpu: none, ollama: true}
  - {name: box-c, gpu: none, ollama: true}
# This kernel has no ESP (IPsec): an encrypted overlay would drop every packet between
# the servers. A real LAN keeps the default, true.
swarm: {encrypt: false}
"""


class Fleet:
    """The three servers, lanai on the manager (run here over SSH, as from a laptop)."""

    def __init__(self, manager: TestServer, servers: dict[str, TestServer],
                 config: Path, root: Path) -> None:
        self.manager = manager
        self.servers = servers
        self.config = config
        self.root = root
        self.env = {**os.environ, "GIT_SSH_COMMAND": f"ssh -F {manager.ssh_config_path}"}
        self.clone = root / "state"

    def lanai(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "--host", self.manager.host, "--ssh-config",
             str(self.manager.ssh_config_path), *args],
            capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)

    def status(self) -> dict[str, Any]:
        result = self.lanai("status", "--json")
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def checkout(self) -> Path:
        if not self.clone.exists():
            cloned = subprocess.run(
                ["git", "clone", "--quiet", f"{self.manager.host}:/srv/lanai/state.git",
                 str(self.clone)], env=self.env, capture_output=True, text=True, timeout=120)
            assert cloned.returncode == 0, cloned.stderr
        else:
            pulled = subprocess.run(["git", "pull", "--quiet", "--ff-only"], cwd=self.clone,
                                    env=self.env, capture_output=True, text=True, timeout=120)
            assert pulled.returncode == 0, pulled.stderr
        return self.clone

    def push(self, message: str) -> str:
        git(self.clone, "commit", "--quiet", "-am", message)
        head = git(self.clone, "rev-parse", "HEAD")
        pushed = subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"],
                                cwd=self.clone, env=self.env, capture_output=True, text=True,
                                timeout=900)
        assert pushed.returncode == 0, pushed.stderr
        return head

    def synced(self, head: str, timeout: float, what: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status()
            if status.get("applied_commit") == head and status.get("sync") == "Synced":
                return status
            return None
        try:
            return wait_for(done, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {json.dumps(self.status())[:3000]}"
                                 ) from None

    def ollama_models(self, server: str) -> set[str]:
        """`ollama list` in the Ollama task on `server`, read there as root."""
        box = self.servers[server]
        found = box.exec("sh", "-c", "docker ps -q --filter label=com.docker.swarm.service.name"
                         f"=lanai_ollama-{server}", timeout=60).stdout.split()
        if not found:
            return set()
        listed = box.exec("docker", "exec", found[0], "ollama", "list", timeout=60)
        return {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()}


def admin_password(manager: TestServer) -> str:
    secrets = manager.ssh("sudo", "-n", "cat", "/etc/lanai/secrets.env")
    assert secrets.returncode == 0, secrets.stderr
    values = dict(line.split("=", 1) for line in secrets.stdout.splitlines() if "=" in line)
    return values["WEBUI_ADMIN_PASSWORD"]


class Chat:
    """Open WebUI through the proxy on the manager's 443 (SNI ai.home.arpa, the server's CA),
    signed in as the admin bootstrap made."""

    def __init__(self, fleet: Fleet) -> None:
        ca = fleet.lanai("trust", "--pem")
        assert ca.returncode == 0, ca.stderr
        self.base = f"https://127.0.0.1:{fleet.manager.https_port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cadata=ca.stdout),
                                   timeout=120, headers={"Host": NAME})
        self.password = admin_password(fleet.manager)
        self.token = ""

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.client.request(method, f"{self.base}{path}", headers=headers,
                                   extensions={"sni_hostname": NAME}, **kwargs)

    def sign_in(self) -> None:
        def signed() -> str | None:
            try:
                answer = self.call("POST", "/api/v1/auths/signin",
                                   json={"email": ADMIN_EMAIL, "password": self.password})
            except httpx.HTTPError:
                return None
            return answer.json()["token"] if answer.status_code == 200 else None
        self.token = wait_for(signed, 300, "the admin's sign-in through the proxy")

    def models(self) -> set[str]:
        answer = self.call("GET", "/api/models")
        return {m["id"] for m in answer.json().get("data", [])} if answer.status_code == 200 \
            else set()

    def ask(self, model: str) -> httpx.Response:
        """One chat turn as the chat page sends it, not streamed."""
        return self.call("POST", "/api/chat/completions",
                         json={"model": model, "stream": False, "messages": [
                             {"role": "user", "content": "How long for lentils?"}]})

    def answers(self, model: str) -> str:
        answer = self.ask(model)
        assert answer.status_code == 200, (model, answer.status_code, answer.text[:500])
        content = answer.json()["choices"][0]["message"]["content"]
        assert content, answer.text[:500]
        return str(content)


def images_for_workers(root: Path) -> Path:
    """The one image a worker runs (Ollama), as its own `docker save` archive."""
    archive = root / "ollama-image.tar"
    if not archive.exists():
        save_images([OLLAMA_IMAGE], archive)
    return archive


def switch_to_swarm(clone: Path) -> None:
    """lanai.yaml: three servers; models.yaml: phi3 on box-b, llama3.1 on box-c; webui.yaml
    without the one-box Ollama connection (swarm mode writes one per server)."""
    settings = clone / "lanai.yaml"
    settings.write_text(settings.read_text() + SERVERS)
    models = clone / "models.yaml"
    data = yaml.safe_load(models.read_text())
    assert {m["name"] if isinstance(m, dict) else m for m in data["local"]} == {
        MODEL_B, MODEL_C, EMBED}, data["local"]
    data["local"] = [{"name": MODEL_B, "place": "box-b"},
                     {"name": MODEL_C, "place": "box-c", "context": 8192}, EMBED]
    data["default"] = MODEL_B
    models.write_text(yaml.safe_dump(data, sort_keys=False))
    webui = clone / "webui.yaml"
    text = webui.read_text()
    line = "  ollama: [http://ollama:11434]\n"
    assert line in text
    webui.write_text(text.replace(line, ""))


def server_line(status: dict[str, Any], name: str) -> dict[str, Any]:
    for server in status.get("servers") or []:
        if server.get("server") == name:
            return dict(server)
    raise AssertionError(f"no server {name} in status: {json.dumps(status)[:2000]}")


def timed(timings: dict[str, float], what: str, step: Callable[[], Any]) -> Any:
    mark = time.monotonic()
    result = step()
    timings[what] = time.monotonic() - mark
    return result
