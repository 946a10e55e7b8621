"""The generated stack file through REAL docker CLIs: Debian 12's 20.10 and a newer one.

`docker stack deploy` loads and schema-checks the file before it talks to the engine
(docker/cli `cli/command/stack/deploy.go`: LoadComposefile first, both versions): against
an engine that is no swarm manager, a file the CLI accepts fails only with "this node is
not a swarm manager", and a file it does not accept fails with its schema error, or is
deployed with "Ignoring unsupported options" / "Ignoring deprecated options" (keys dropped
without a word to the user). tests/run installs Debian's docker.io and starts dockerd.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.swarm.stackfile import stack_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "swarm"
EXAMPLE = ROOT / "desired-state"
DEBIAN_CLI = Path("/usr/bin/docker")  # Debian 12's docker.io: the oldest CLI lanai supports
NEWER_CLI = Path("/usr/local/bin/docker")  # where one is installed beside it, if any
ENGINE = "unix:///var/run/docker.sock"
ACCEPTED = "this node is not a swarm manager"
IGNORING = ("Ignoring unsupported options", "Ignoring deprecated options")


def cli_version(cli: Path) -> tuple[int, int] | None:
    """(major, minor) from `docker --version`, which needs no engine."""
    out = subprocess.run([str(cli), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    found = re.search(r"version (\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else None


def clis() -> list[pytest.param]:
    """The 20.10 CLI always (skipped, with the reason, where it is not there), and a newer
    one where this machine has it."""
    out = [pytest.param(DEBIAN_CLI, id="debian-20.10")]
    if NEWER_CLI.is_file() and cli_version(NEWER_CLI) not in (None, (20, 10)):
        out.append(pytest.param(NEWER_CLI, id="newer"))
    return out


@pytest.fixture
def docker_env(tmp_path: Path) -> dict[str, str]:
    """This machine's engine, and an empty CLI config (no context, no plugins of the user)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_HOST")}
    env["DOCKER_HOST"] = ENGINE
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    return env


def engine_ready(cli: Path, env: dict[str, str]) -> None:
    """Fails (never skips) without an engine: the check would pass any file. Refuses a swarm
    manager: there the probe stack would really be deployed."""
    server = subprocess.run([str(cli), "version", "--format", "{{.Server.Version}}"], env=env,
                            capture_output=True, text=True, timeout=60)
    lines = (server.stderr or server.stdout).strip().splitlines() or ["no answer"]
    assert server.returncode == 0, (
        f"the Docker engine at {ENGINE} does not answer ({lines[-1]}); start dockerd "
        "(tests/run does) and run the test again")
    manager = subprocess.run([str(cli), "info", "--format", "{{.Swarm.ControlAvailable}}"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert manager.stdout.strip() == "false", (
        f"the engine at {ENGINE} is a swarm manager ({manager.stdout.strip()}), where this "
        "probe would deploy a stack; run the test against an engine outside any swarm")


def the_cli(cli: Path) -> tuple[int, int]:
    version = cli_version(cli) if cli.is_file() else None
    if cli == DEBIAN_CLI and version != (20, 10):
        found = f"version {version[0]}.{version[1]}" if version else "missing"
        pytest.skip(f"{DEBIAN_CLI} is {found}, not Debian 12's docker.io 20.10 CLI that this "
                    "check is for (tests/run installs it: apt-get install docker.io)")
    assert version is not None, f"{cli}: no version in `docker --version`"
    return version


def example_stack(version: tuple[int, int]) -> str:
    compose = json.loads((FIXTURES / "compose-config.json").read_text())
    config = LanaiConfig.model_validate(yaml.safe_load((FIXTURES / "lanai.yaml").read_text()))
    models = ModelsConfig.model_validate(yaml.safe_load((EXAMPLE / "models.yaml").read_text()))
    raw = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
    stack = stack_file(compose, config, models, ollama_service="ollama",
                       gpu_servers={"box-b", "box-c"}, cli_version=version, raw_compose=raw)
    assert stack.refusals == []
    return stack.dump()


def deploy(cli: Path, env: dict[str, str], text: str, directory: Path
           ) -> subprocess.CompletedProcess[str]:
    path = directory / "lanai.stack.yaml"
    path.write_text(text)
    return subprocess.run([str(cli), "stack", "deploy", "--compose-file", str(path), "probe"],
                          env=env, capture_output=True, text=True, timeout=120)


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Why the CLI did not take the file whole: its error, or the keys it ignored."""
    output = result.stdout + result.stderr
    found = [line for line in output.splitlines() if line.startswith(IGNORING)]
    if ACCEPTED not in output:
        found.append(f"rejected: {output.strip()}")
    return found


@pytest.mark.parametrize("cli", clis())
def test_the_cli_takes_the_example_stack_file_whole(cli: Path, docker_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    version = the_cli(cli)
    engine_ready(cli, docker_env)
    text = example_stack(version)
    expected = "3.12" if version >= (26, 0) else "3.9"
    assert text.startswith(f"version: '{expected}'\n")
    result = deploy(cli, docker_env, text, tmp_path)
    assert result.returncode != 0
    assert problems(result) == [], text


@pytest.mark.parametrize("broken,expected", [
    # Compose's own keys, which the stack loader warns about and drops...
    ("restart: unless-stopped", "Ignoring unsupported options: restart"),
    ("container_name: webui", "Ignoring deprecated options:"),
    # ... or refuses.
    ("healthcheck: {test: [CMD, 'true'], start_interval: 1s}", "rejected: "),
], ids=["unsupported", "deprecated", "schema"])
def test_the_check_sees_what_the_cli_ignores_or_rejects(broken: str, expected: str,
                                                        docker_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    """The check itself: with the 20.10 CLI, each way a file can go wrong is caught."""
    the_cli(DEBIAN_CLI)
    engine_ready(DEBIAN_CLI, docker_env)
    text = f"version: '3.9'\nservices:\n  web:\n    image: busybox:1\n    {broken}\n"
    found = problems(deploy(DEBIAN_CLI, docker_env, text, tmp_path))
    assert found and found[0].startswith(expected), found
