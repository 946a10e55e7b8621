"""One reconcile at a time, across processes: a lock made by an atomic mkdir.

The lock directory holds its owner's pid and boot id; a lock whose owner is
gone (crashed, killed, or from before a reboot) is stale and is taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from .errors import LockHeld

OWNER_FILE = "owner.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    def __init__(self, path: Path, purpose: str = "reconcile") -> None:
        self.path = path
        self.purpose = purpose
        self.recovered_from: dict[str, object] | None = None

    def owner(self) -> dict[str, object] | None:
        try:
            return json.loads((self.path / OWNER_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None

    def _stale(self, owner: dict[str, object] | None) -> bool:
        if owner is None:
            # Created but not yet written, or written by a crashed process: give a
            # live creator a moment before calling it stale.
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return False
            return age > 5
        if owner.get("boot_id") != _boot_id() or owner.get("host") != socket.gethostname():
            return True
        pid = owner.get("pid")
        return not isinstance(pid, int) or not _alive(pid)

    def acquire(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                self.path.mkdir()
            except FileExistsError:
                owner = self.owner()
                if not self._stale(owner):
                    who = f"pid {owner.get('pid')}" if owner else "another process"
                    since = f" since {owner.get('since')}" if owner else ""
                    raise LockHeld(
                        f"another reconcile is running ({who}{since}); wait for it to finish "
                        f"(`lanai status`), or remove {self.path} if that process is gone."
                    ) from None
                self.recovered_from = owner or {}
                shutil.rmtree(self.path, ignore_errors=True)
                continue
            owner_data = {"pid": os.getpid(), "host": socket.gethostname(),
                          "boot_id": _boot_id(), "purpose": self.purpose,
                          "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (self.path / OWNER_FILE).write_text(json.dumps(owner_data))
            return self
        raise LockHeld(f"could not take the lock {self.path}; remove it if no lanai process "
                       "is running.")

    def release(self) -> None:
        owner = self.owner()
        if owner is None or owner.get("pid") == os.getpid():
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
