"""A last guard before the snapshot leaves the daemon: any value of the server's secrets
file found in a string is blanked. lanai keeps secrets out of its records already; what
the page also shows is what containers say about themselves (a failing health check's
output), which lanai does not write and cannot vouch for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.server.secrets import read_secrets
from reconciler.statuspage.records import ByFile

HIDDEN = "[hidden]"
MIN_LENGTH = 4  # shorter values ("1", "yes") would blank ordinary words, and guard nothing


def _values(path: Path) -> tuple[str, ...]:
    try:
        found = read_secrets(path)
    except Exception:  # unsafe or unreadable: the stack refuses it too; nothing to match
        return ()
    # Longest first, so a value that contains another is blanked whole.
    return tuple(sorted({v for v in found.values() if len(v) >= MIN_LENGTH}, key=len,
                        reverse=True))


SECRETS = ByFile(_values)


def scrub(data: Any, values: tuple[str, ...]) -> Any:
    """`data` with every occurrence of each value blanked, in keys and strings at any depth."""
    if not values:
        return data
    if isinstance(data, str):
        for value in values:
            if value in data:
                data = data.replace(value, HIDDEN)
        return data
    if isinstance(data, dict):
        return {scrub(k, values): scrub(v, values) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub(item, values) for item in data]
    return data


def secret_values(path: Path) -> tuple[str, ...]:
    return SECRETS.get(path)
