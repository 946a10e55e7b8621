"""One reconcile at a time, across processes: a lock made by an atomic mkdir.

The lock directory holds its owner's pid and boot id; a lock whose owner is
gone (crashed, killed, or from before a reboot) is stale and is taken over.
Taking over is itself atomic: several processes may find the same stale lock,
so it is judged again and removed only under a short flock of its own (the
kernel drops an flock with its process, so that guard is never stale).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from reconciler.core.errors import LockHeld

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
                self._take_over()
                continue
            owner_data = {"pid": os.getpid(), "host": socket.gethostname(),
                          "boot_id": _boot_id(), "purpose": self.purpose,
                          "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (self.path / OWNER_FILE).write_text(json.dumps(owner_data))
            return self
        raise LockHeld(f"could not take the lock {self.path}; remove it if no lanai process "
                       "is running.")

    def _take_over(self) -> None:
        """Remove the lock if it is (still) stale. Without the guard, two processes that
        both found it stale could each remove it, the second removing the lock the first
        had just made, and both would go on holding it."""
        guard = os.open(self.path.with_name(f"{self.path.name}.takeover"),
                        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            owner = self.owner()
            if not self.path.exists() or not self._stale(owner):
                return  # another process took it over first
            # Renamed aside first, so the lock's name is free at once and a half-done
            # removal never leaves a lock that looks held.
            aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
            shutil.rmtree(aside, ignore_errors=True)  # left by a killed takeover
            os.rename(self.path, aside)
            shutil.rmtree(aside, ignore_errors=True)
            self.recovered_from = owner or {}
        finally:
            os.close(guard)  # drops the flock

    def release(self) -> None:
        owner = self.owner()
        if owner is None or owner.get("pid") == os.getpid():
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
