"""What a running reconcile is doing now, for `lanai status` ("Progressing").

One small file, rewritten at each progress message and removed when the reconcile
ends. It counts only while the process that wrote it holds the reconcile lock, so a
reconcile killed mid-way never leaves a status that says "still working".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reconciler.core.files import write_json_atomic
from reconciler.server.lock import Lock, _alive
from reconciler.server.record import now_iso


def file(home: Path) -> Path:
    return home / "working.json"


def note(path: Path, commit: str | None, message: str) -> None:
    write_json_atomic(path, {"pid": os.getpid(), "commit": commit, "doing": message,
                             "at": now_iso()})


def clear(path: Path) -> None:
    path.unlink(missing_ok=True)


def read(path: Path, lock_dir: Path) -> dict[str, Any] | None:
    """The running reconcile's last message, or None when no reconcile is running."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    owner = Lock(lock_dir).owner() or {}
    pid = record.get("pid") if isinstance(record, dict) else None
    if not isinstance(pid, int) or owner.get("pid") != pid or not _alive(pid):
        return None
    return record
