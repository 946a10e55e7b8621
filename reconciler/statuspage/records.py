"""Reads of lanai's records that the page asks for every few seconds, kept until their file
changes: the history (up to 5 MiB of JSON lines) and the bench runs are parsed again only
when their size or modification time differs. Nothing here takes the reconcile lock: every
record is written atomically or appended line by line, so a read never sees half of one."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from reconciler.bench.store import BenchRun, load_runs
from reconciler.server.record import read_history

T = TypeVar("T")
HISTORY_READ = 200  # records read: the last entries shown, and the applied commit's subject
GIT_TIMEOUT_S = 5
SHA = re.compile(r"[0-9a-f]{7,64}")  # what state.json holds; never an option to git


def stat_key(path: Path) -> tuple[int, int] | None:
    """What tells a changed file: (mtime_ns, size); None when there is no file."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


class ByFile(Generic[T]):
    """The value `load(path)` gave, kept while the file (and its rotated `.1`) stays the same."""

    def __init__(self, load: Callable[[Path], T]) -> None:
        self._load = load
        self._kept: dict[Path, tuple[Any, T]] = {}
        self._lock = threading.Lock()  # two page loads at once read the file once

    def get(self, path: Path) -> T:
        key = (stat_key(path), stat_key(path.with_name(path.name + ".1")))
        with self._lock:
            kept = self._kept.get(path)
            if kept is None or kept[0] != key:
                kept = (key, self._load(path))
                self._kept[path] = kept
            return kept[1]


def _history(path: Path) -> list[dict[str, Any]]:
    return read_history(path, HISTORY_READ)


def _bench(path: Path) -> list[BenchRun]:
    return load_runs(path, warn=lambda _m: None)  # a torn line is the CLI's to report


HISTORY = ByFile(_history)
BENCH = ByFile(_bench)


def history(path: Path) -> list[dict[str, Any]]:
    """The newest records first (shared: do not change them)."""
    return HISTORY.get(path)


def bench_runs(path: Path) -> list[BenchRun]:
    """Every stored bench run, oldest first (shared: do not change them)."""
    return BENCH.get(path)


def commit_subject(records: list[dict[str, Any]], clone_dir: Path, commit: str) -> str | None:
    """The subject of `commit`: from the history, which records it with each reconcile of
    it; else from the local mirror (read-only, once per commit)."""
    for record in records:
        if record.get("commit") == commit and record.get("subject"):
            return str(record["subject"])
    return _git_subject(str(clone_dir), commit)


_SUBJECTS: dict[str, str] = {}  # commit -> subject: a commit's subject never changes


def _git_subject(git_dir: str, commit: str) -> str | None:
    if commit in _SUBJECTS:
        return _SUBJECTS[commit]
    if not SHA.fullmatch(commit) or not (Path(git_dir) / "HEAD").exists():
        return None
    try:
        result = subprocess.run(
            ["git", f"--git-dir={git_dir}", "log", "-1", "--format=%s", commit, "--"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # asked again next time: the mirror may be busy
    subject = result.stdout.strip() if result.returncode == 0 else ""
    if subject:
        _SUBJECTS[commit] = subject
    return subject or None
