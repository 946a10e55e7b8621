"""Files written whole or not at all: a reader, or a crash, never sees half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str, *, mode: int = 0o600, dir_mode: int = 0o755) -> None:
    """Write `text` to `path` through a temporary file in the same directory.

    The temporary file has `mode` from its first byte (a secret is never readable by
    others, even briefly), is on disk before the rename, and the rename is on disk
    after it: a crash leaves the old file or the new one, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o600) -> None:
    """`data` as indented JSON, written with write_atomic."""
    write_atomic(path, json.dumps(data, indent=1), mode=mode)
