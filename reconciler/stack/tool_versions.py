"""The Docker Engine and Compose versions lanai needs, and the checks against them.

The floor is what every supported OS's own packages give (README "Requirements"):
Compose 2.20.2 reads everything lanai generates (plain `env_file`, `!reset`,
`config --format json`, `up --pull never`), checked against the real binaries in
tests/compat. Engine 20.10 is Debian 12's docker.io.
"""

from __future__ import annotations

import re
import subprocess

from reconciler.core.errors import DockerError
from reconciler.stack.compose import compose_env

MIN_COMPOSE = "2.20.2"
MIN_ENGINE = "20.10"
# Docker API 1.44 (Engine 25) added healthcheck start_interval; Compose refuses the key
# against an older engine, so lanai adds it only where the engine has it.
START_INTERVAL_API = "1.44"


def parse(text: str) -> tuple[int, ...]:
    """`v2.26.1`, `2.26.1+ds1-1`, `26.1.5+dfsg1` -> (2, 26, 1); () when there is no number."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def at_least(found: str, floor: str) -> bool:
    have, need = parse(found), parse(floor)
    return bool(have) and have >= need


def compose_version(timeout: float = 30) -> str:
    """The Compose v2 plugin's version, as `docker compose version --short` prints it."""
    try:
        result = subprocess.run(["docker", "compose", "version", "--short"], env=compose_env(),
                                capture_output=True, text=True, timeout=timeout, check=False,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed; install Docker Engine with the "
                          "Compose v2 plugin (bootstrap.sh does).") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"`docker compose version` did not answer within {timeout:.0f}s; "
                          "check the Compose plugin and `docker info`.") from None
    version = result.stdout.strip().removeprefix("v")
    if result.returncode != 0 or not parse(version):
        raise DockerError("`docker compose` (Compose v2) is not installed; install the "
                          "docker-compose-v2 (Ubuntu), docker-compose (Debian 13) or "
                          "docker-compose-plugin package, or run bootstrap.sh again.")
    return version


def docker_cli_version(timeout: float = 30) -> tuple[int, int]:
    """The docker CLI's (major, minor): which stack file format and flags it reads (swarm
    mode's `docker stack deploy` is the CLI's, not the engine's)."""
    try:
        result = subprocess.run(["docker", "version", "--format", "{{.Client.Version}}"],
                                capture_output=True, text=True, timeout=timeout, check=False,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed; install Docker Engine (bootstrap.sh "
                          "does).") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"`docker version` did not answer within {timeout:.0f}s; check "
                          "`docker info`.") from None
    found = parse(result.stdout.strip())
    if len(found) < 2:  # the client prints its version even when the engine is down
        raise DockerError("`docker version` printed no client version "
                          f"({(result.stderr or result.stdout).strip()[:200]}); check the "
                          "docker CLI.")
    return found[0], found[1]


def upgrade_hint() -> str:
    return ("upgrade it (`apt-get install --only-upgrade docker-compose-v2`, docker-compose "
            "or docker-compose-plugin, whichever is installed) or run bootstrap.sh again, "
            "which installs a newer one")


def check_compose(version: str) -> None:
    if not at_least(version, MIN_COMPOSE):
        raise DockerError(f"Docker Compose {version} is older than {MIN_COMPOSE}, which lanai "
                          f"needs; {upgrade_hint()}.")


def check_engine(version: str) -> None:
    if not at_least(version, MIN_ENGINE):
        raise DockerError(f"Docker Engine {version} is older than {MIN_ENGINE}, which lanai "
                          "needs; upgrade it (`apt-get install --only-upgrade docker.io` or "
                          "docker-ce) and start lanai again.")


def has_start_interval(api_version: str) -> bool:
    """Whether an engine speaking Docker API `api_version` runs healthcheck start_interval."""
    return at_least(api_version, START_INTERVAL_API)
