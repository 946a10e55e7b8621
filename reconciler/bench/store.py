"""The runs file: each ``lanai bench`` appended as one JSON line, read back tolerantly.

A run keeps the commit and the Ollama settings it was measured under, so a later run
can be compared with the previous comparable one (compare.py). Lines are appended
with one write; a torn last line (a crash mid-write) is skipped, and unknown keys are
ignored so that an older lanai reads a newer file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.bench.bandwidth import GpuInfo
from reconciler.bench.prompts import PROMPT_SET_VERSION
from reconciler.bench.results import ModelResult, PromptResult, Sample, Stat
from reconciler.server.record import iso

log = logging.getLogger(__name__)


@dataclass
class BenchRun:
    """One ``lanai bench``: where and under what it ran, and each model's results."""

    id: str
    at: str  # ISO 8601 UTC
    commit: str | None  # the applied state commit
    settings: dict[str, str]  # the Ollama runtime settings (OLLAMA_* and the like)
    gpu: GpuInfo | None  # None: CPU only
    prompt_set_version: str
    results: list[ModelResult]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchRun:
        gpu = data.get("gpu")
        return cls(
            id=str(data["id"]),
            at=str(data["at"]),
            commit=data.get("commit"),
            settings=dict(data.get("settings") or {}),
            gpu=_build(GpuInfo, gpu) if isinstance(gpu, dict) else None,
            prompt_set_version=str(data["prompt_set_version"]),
            results=[_model_from_json(m) for m in data.get("results") or []],
        )


def _build(cls: Any, data: Mapping[str, Any], **nested: Any) -> Any:
    # Unknown keys are ignored so that older lanai reads newer lines.
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names}, **nested)


def _prompt_from_json(data: Mapping[str, Any]) -> PromptResult:
    stats = {k: _build(Stat, data.get(k) or {}) for k in ("ttft_s", "prompt_tps", "gen_tps")}
    stats["total_s"] = _build(Stat, data.get("total_s") or {})
    rest = {k: v for k, v in data.items() if k not in stats and k != "samples"}
    samples = [_build(Sample, s) for s in data.get("samples") or []]
    return _build(PromptResult, rest, samples=samples, **stats)


def _model_from_json(data: Mapping[str, Any]) -> ModelResult:
    prompts = {k: _prompt_from_json(v) for k, v in (data.get("prompts") or {}).items()}
    rest = {k: v for k, v in data.items() if k != "prompts"}
    return _build(ModelResult, rest, prompts=prompts)


def new_run(
    results: list[ModelResult],
    *,
    commit: str | None,
    settings: Mapping[str, str],
    gpu: GpuInfo | None,
    now: datetime | None = None,
) -> BenchRun:
    """A BenchRun stamped now (UTC); its id sorts by time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return BenchRun(
        id=now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z",
        at=iso(now),
        commit=commit,
        settings=dict(settings),
        gpu=gpu,
        prompt_set_version=PROMPT_SET_VERSION,
        results=results,
    )


def append_run(path: Path, run: BenchRun) -> None:
    """Append one JSON line with a single write, then fsync.

    No secrets in it, so 0644. If a crash left a torn last line, start on a new
    line so that only the torn one is lost.
    """
    data = (json.dumps(run.to_json(), separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_runs(path: Path, *, warn: Callable[[str], None] | None = None) -> list[BenchRun]:
    """Runs in file order; unreadable lines are skipped and reported through ``warn``.

    A bad last line is the expected leftover of a crash during a write; ``warn``
    defaults to this module's logger.
    """
    warn = warn or log.warning
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    runs: list[BenchRun] = []
    for n, line in numbered:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            runs.append(BenchRun.from_json(data))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            where = "the last line (a write cut short?)" if n == numbered[-1][0] else f"line {n}"
            warn(f"{path}: skipped {where}: {type(exc).__name__}: {exc}")
    return runs
