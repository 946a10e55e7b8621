"""What lanai remembers: the state file (now) and the history (JSON lines, rotated).

Both are written atomically or appended line by line, so a crash never leaves
a half-written record that breaks `lanai status`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import ExitCode
from reconciler.core.files import write_json_atomic

HISTORY_MAX_BYTES = 5 * 1024 * 1024  # then history.jsonl becomes history.jsonl.1


def iso(moment: datetime) -> str:
    """UTC, millisecond precision: 2026-11-25T14:54:43.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Failure:
    commit: str
    key: str | None  # the render key, when the commit got that far
    error: str
    exit_code: int
    deterministic: bool
    attempts: int = 1
    inputs: str | None = None  # digest of the server-side inputs (secrets) at the time
    at: str = field(default_factory=now_iso)
    next_retry: str | None = None
    phase: str | None = None  # set when lanai itself failed unexpectedly (what it was doing)


@dataclass
class State:
    applied_commit: str | None = None  # last commit that converged
    applied_key: str | None = None  # its rendered deployment
    applied_at: str | None = None
    head_commit: str | None = None  # newest commit seen on the followed branch
    branch: str | None = None
    failure: Failure | None = None  # the last attempt that failed, until something succeeds
    source_error: str | None = None  # fetching the repo failed (stack untouched)
    last_check: str | None = None
    last_check_ms: float | None = None
    heals: dict[str, list[float]] = field(default_factory=dict)  # service -> heal times
    drift: list[dict[str, Any]] = field(default_factory=list)
    # Parts of the applied commit that did not converge (models, Open WebUI settings):
    # part -> its error, until that part converges.
    problems: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        failure = known.get("failure")
        if isinstance(failure, dict):
            known["failure"] = Failure(**failure)
        return cls(**known)


def load_state(path: Path) -> State:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError("state must be an object")
        return State.from_json(data)
    except FileNotFoundError:
        return State()
    except (json.JSONDecodeError, TypeError, ValueError):
        # A corrupt state file must not stop the reconciler: start over, keep a copy.
        path.replace(path.with_suffix(".corrupt"))
        return State()


def save_state(path: Path, state: State) -> None:
    write_json_atomic(path, state.to_json())


def append_history(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size > HISTORY_MAX_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_history(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Records, newest first; unreadable lines (a torn write) are skipped."""
    records: list[dict[str, Any]] = []
    for file in (path, path.with_name(path.name + ".1")):
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        for line in reversed(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
            if limit is not None and len(records) >= limit:
                return records
    return records


@dataclass
class Outcome:
    """What one reconcile did; rendered by the CLI and written to the history."""

    status: str  # no-op, applied, healed, drift, failed, waiting, suspended, source-error
    commit: str | None = None
    applied_commit: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = ExitCode.OK
    rolled_back_to: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)  # what models.yaml's converge did
    webui: dict[str, Any] = field(default_factory=dict)  # what webui.yaml's converge did
    backup: str | None = None  # the backup taken before this commit's upgrade, if any

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class Timer:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._start = time.monotonic()

    def lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.marks[name] = round(self.marks.get(name, 0) + now - since, 4)
        return now

    def total(self) -> float:
        return round(time.monotonic() - self._start, 4)
