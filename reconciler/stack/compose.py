"""The real `docker compose`: argument lists built here (tested as exact lists), run here.

lanai never imitates compose; it renders a project directory and asks compose
to converge it. The environment passed to compose is fixed, so the daemon and
a CLI run in a login shell interpolate the same file the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import DockerError

OVERRIDE_FILE = "lanai.override.yaml"
_PASS_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT",
             "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_API_VERSION")


def profile_flags(profiles: Sequence[str]) -> list[str]:
    """`--profile X` for each profile lanai.yaml switches on."""
    return [arg for profile in profiles for arg in ("--profile", profile)]


@dataclass(frozen=True)
class Project:
    name: str
    directory: Path
    compose_file: str
    profiles: tuple[str, ...] = ()  # lanai.yaml's `profiles`: on for every command

    def base(self, *, override: bool = True) -> list[str]:
        files = ["--file", str(self.directory / self.compose_file)]
        if override:
            files += ["--file", str(self.directory / OVERRIDE_FILE)]
        return ["docker", "compose", "--project-name", self.name,
                "--project-directory", str(self.directory), *files,
                *profile_flags(self.profiles)]

    def config_cmd(self, *, override: bool = True) -> list[str]:
        """`override=False`: the user's file alone (whose file compose rejects)."""
        return [*self.base(override=override), "config", "--format", "json"]

    def pull_cmd(self, services: Sequence[str]) -> list[str]:
        return [*self.base(), "pull", *services]

    def up_cmd(self, services: Sequence[str], *, remove_orphans: bool) -> list[str]:
        # --pull never: images are pulled (or found missing) before anything is touched.
        flags = ["up", "--detach", "--pull", "never"]
        if remove_orphans:
            flags.append("--remove-orphans")
        return [*self.base(), *flags, *services]

    def remove_cmd(self, services: Sequence[str]) -> list[str]:
        """Stop and remove the containers of services whose profile was switched off:
        `up --remove-orphans` keeps them (a service still in the file is no orphan to
        Compose), and a service named on the command line is found whatever its profile."""
        return [*self.base(), "rm", "--stop", "--force", *services]

    def restart_cmd(self, services: Sequence[str]) -> list[str]:
        return [*self.base(), "restart", *services]

    def logs_cmd(self, services: Sequence[str], *, tail: int | None, follow: bool,
                 timestamps: bool = False) -> list[str]:
        flags = ["logs", "--no-color"]
        if tail is not None:
            flags += ["--tail", str(tail)]
        if follow:
            flags.append("--follow")
        if timestamps:
            flags.append("--timestamps")
        return [*self.base(), *flags, *services]


def compose_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    out = {key: env[key] for key in _PASS_ENV if key in env}
    # Set, and empty: a COMPOSE_PROFILES in the state repo's .env would otherwise switch on
    # profiles lanai.yaml does not list (the environment wins over .env in every Compose).
    out["COMPOSE_PROFILES"] = ""
    out.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return out


def run(argv: list[str], *, cwd: Path, timeout: float,
        on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run compose; a missing binary or a hang becomes a DockerError with the fix.

    With `on_line`, output is streamed to it line by line (progress of long pulls)."""
    try:
        if on_line is not None:
            return _stream(argv, cwd, timeout, on_line)
        return subprocess.run(argv, cwd=cwd, env=compose_env(), capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed; install Docker Engine with the "
                          "Compose v2 plugin (bootstrap.sh does).") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"`docker compose {subcommand(argv)}` did not finish within "
                          f"{timeout:.0f}s; check `docker info` and the Docker daemon's "
                          "logs.") from None


def _stream(argv: list[str], cwd: Path, timeout: float,
            on_line: Callable[[str], None]) -> subprocess.CompletedProcess[str]:
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=cwd, env=compose_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL) as proc:
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                on_line(line.rstrip("\n"))
            code = proc.wait()
        finally:
            watchdog.cancel()
    if code == -9:
        raise subprocess.TimeoutExpired(argv, timeout)
    return subprocess.CompletedProcess(argv, code, stdout="", stderr="".join(lines))


def subcommand(argv: list[str]) -> str:
    """The compose verb in `argv` (what follows the last --file or --profile option)."""
    last = max((i for i, arg in enumerate(argv) if arg in ("--file", "--profile")), default=-2)
    return argv[last + 2] if last + 2 < len(argv) else "compose"


# Compose's progress lines (" Container x  Starting", " web Pulling") are not the error.
_PROGRESS = re.compile(r"^\s*(time=|level=|#\d+ |(Network|Volume|Container|Image) \S+\s+\w+"
                       r"$|\S+ (Pulling|Pulled|Waiting|Skipped)\b|\s*$)")


def error_text(result: subprocess.CompletedProcess[str]) -> str:
    """The error in compose's output, as one line: the daemon's error if there is one."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines()
             if not _PROGRESS.match(line)]
    errors = [line for line in lines if line.lower().startswith(("error", "service "))
              or "error response from daemon" in line.lower()]
    chosen = errors[-1] if errors else (" ".join(lines[-3:]) if lines else "")
    text = chosen.removeprefix("Error response from daemon: ").removeprefix("Error: ")
    return text or f"exit status {result.returncode}"


_TRANSIENT = ("timeout", "timed out", "connection refused", "connection reset",
              "no route to host", "server misbehaving", "context deadline exceeded",
              "no such host", "temporary failure in name resolution", "tls handshake",
              "network is unreachable", "i/o timeout", "eof", "502 bad gateway",
              "503 service unavailable", "too many requests", "toomanyrequests")
_NOT_FOUND = ("manifest unknown", "not found", "pull access denied", "repository does not exist",
              "name unknown", "unauthorized")


def pull_failure_is_transient(text: str) -> bool:
    """A registry that cannot be reached may answer later; an image that does not exist won't."""
    low = text.lower()
    if any(marker in low for marker in _NOT_FOUND) and "no such host" not in low:
        return False
    return any(marker in low for marker in _TRANSIENT)


def port_in_use(text: str) -> bool:
    low = text.lower()
    return "address already in use" in low or "port is already allocated" in low
