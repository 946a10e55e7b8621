"""Running one docker command of swarm mode (stack deploy, stack rm, compose down): a
missing CLI or a hang becomes a DockerError with the fix; the caller reads the result."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.core.errors import DockerError


def run(argv: list[str], *, cwd: Path | str | None, timeout: float
        ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed; install Docker Engine "
                          "(bootstrap.sh does).") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"`{' '.join(argv[:3])}` did not finish within {timeout:.0f}s; "
                          "check `docker info` on this server.", deterministic=False) from None
