"""What the setup steps share: bootstrap.sh's paths, its output marks and exit codes,
and commands whose output goes to the bootstrap log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# bootstrap.sh's exit codes for the steps that run here (its --help lists them all).
E_SETUP = 9
E_DAEMON = 10


class SetupError(Exception):
    """A failed step: one sentence, bootstrap.sh's exit code, and whether the end of the
    bootstrap log explains it."""

    def __init__(self, message: str, code: int = E_SETUP, *, show_log: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.show_log = show_log


@dataclass(frozen=True)
class SetupPaths:
    """bootstrap.sh's paths; each is moved by the environment variable of its name.

    The defaults are bootstrap.sh's (a unit test keeps the two in step): bootstrap does
    not export them, so the first reconcile sees the server config, not these."""

    config: Path
    secrets_file: Path
    home: Path
    state_repo: Path
    opt: Path
    unit_file: Path
    daemon_log: Path
    pid_file: Path
    bootstrap_log: Path
    deploy_key: Path

    @property
    def lanai(self) -> Path:
        return self.opt / "venv" / "bin" / "lanai"

    @property
    def grants_file(self) -> Path:
        """What bootstrap granted, so that --uninstall --purge can take exactly that back."""
        return self.config.parent / "granted"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SetupPaths:
        env = os.environ if environ is None else environ

        def path(name: str, default: str) -> Path:
            return Path(env.get(name) or default)

        config = path("LANAI_CONFIG", "/etc/lanai/server.yaml")
        return cls(
            config=config,
            secrets_file=path("LANAI_SECRETS_FILE", "/etc/lanai/secrets.env"),
            home=path("LANAI_HOME", "/var/lib/lanai"),
            state_repo=path("LANAI_STATE_REPO_DIR", "/srv/lanai/state.git"),
            opt=path("LANAI_OPT", "/opt/lanai"),
            unit_file=path("LANAI_UNIT_FILE", "/etc/systemd/system/lanai.service"),
            daemon_log=path("LANAI_DAEMON_LOG", "/var/log/lanai.log"),
            pid_file=path("LANAI_PID_FILE", "/run/lanai.pid"),
            bootstrap_log=path("LANAI_BOOTSTRAP_LOG", "/var/log/lanai-bootstrap.log"),
            deploy_key=path("LANAI_DEPLOY_KEY", str(config.parent / "deploy_key")),
        )


# bootstrap.sh's marks: ✓ done or already so, · would (dry run), ! warning, ✗ failure.
def ok(message: str) -> None:
    print(f"✓ {message}", flush=True)


def would(message: str) -> None:
    print(f"· {message}", flush=True)


def say(message: str = "") -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"! {message}", file=sys.stderr, flush=True)


def err_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report_failure(error: SetupError, log: Path) -> None:
    """Print a failed step as bootstrap.sh does: the log's last lines, then ✗ one sentence."""
    if error.show_log and log.is_file() and log.stat().st_size:
        print(f"  (last lines of {log})", file=sys.stderr)
        for line in log.read_text(errors="replace").splitlines()[-12:]:
            print(f"  | {line}", file=sys.stderr)
    print(f"✗ {error.message}", file=sys.stderr, flush=True)


def join(items: Sequence[str]) -> str:
    return ", ".join(items)


def logged(log: Path, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
           timeout: float | None = None) -> bool:
    """Run a command with its output appended to the bootstrap log; True when it worked."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write("\n$ " + " ".join(argv) + "\n")
        out.flush()
        try:
            result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, timeout=timeout,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.write(f"{exc}\n")
            return False
    return result.returncode == 0


def output(argv: Sequence[str]) -> str | None:
    """A command's standard output, or None when it is missing or fails."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                                stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def has_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()
