"""The state file (atomic, corrupt copies kept) and the history (JSON lines, rotated)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.server import record
from reconciler.server.record import (
    Failure,
    State,
    append_history,
    load_state,
    now_iso,
    read_history,
    save_state,
)


def test_missing_state_file_is_a_fresh_state(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") == State()


def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.json"
    state = State(applied_commit="a" * 40, applied_key="aaaaaaaaaaaa-12345678",
                  applied_at="2024-05-01T10:00:00.00Z", head_commit="b" * 40, branch="main",
                  failure=Failure(commit="b" * 40, key=None, error="image missing",
                                  exit_code=3, deterministic=True, attempts=2,
                                  at="2024-05-01T10:01:00.00Z", next_retry=None),
                  source_error=None, last_check="2024-05-01T10:02:00.00Z", last_check_ms=12.5,
                  heals={"ollama": [1.5, 2.5]},
                  drift=[{"service": "ollama", "kind": "stopped", "detail": "container exited"}])
    save_state(path, state)
    assert load_state(path) == state
    assert json.loads(path.read_text())["failure"]["error"] == "image missing"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left


def test_unknown_fields_from_a_newer_version_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"applied_commit": "c" * 40, "from_the_future": 1}))
    assert load_state(path) == State(applied_commit="c" * 40)


@pytest.mark.parametrize("text", ["{not json", '{"failure": {"no_such_field": 1}}', ""])
def test_corrupt_state_file_is_moved_aside(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    assert load_state(path) == State()
    assert not path.exists()
    assert (tmp_path / "state.corrupt").read_text() == text


@pytest.mark.parametrize("text", ["[]", "null"])
def test_state_file_that_is_not_an_object_is_moved_aside(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    assert load_state(path) == State()


def test_now_iso_format() -> None:
    stamp = now_iso()
    assert len(stamp) == len("2024-05-01T10:00:00.123Z")  # UTC, milliseconds
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_history_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "home" / "history.jsonl"
    for n in range(5):
        append_history(path, {"n": n})
    assert [r["n"] for r in read_history(path)] == [4, 3, 2, 1, 0]
    assert [r["n"] for r in read_history(path, limit=2)] == [4, 3]
    assert path.read_text().splitlines()[0] == '{"n":0}'


def test_missing_history_is_empty(tmp_path: Path) -> None:
    assert read_history(tmp_path / "history.jsonl") == []


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append_history(path, {"n": 1})
    append_history(path, {"n": 2})
    with path.open("a") as handle:
        handle.write('{"n": 3, "stat')  # a crash mid-write
    assert read_history(path) == [{"n": 2}, {"n": 1}]


def test_history_rotates_and_reads_across_files(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "HISTORY_MAX_BYTES", 40)
    path = tmp_path / "history.jsonl"
    for n in range(6):
        append_history(path, {"n": n, "pad": "xxxxxxxx"})
    rotated = path.with_name("history.jsonl.1")
    assert rotated.is_file()
    current = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    older = [json.loads(line)["n"] for line in rotated.read_text().splitlines()]
    assert current and older
    assert older + current == sorted(older + current)
    assert path.stat().st_size <= 40 + len('{"n":0,"pad":"xxxxxxxx"}\n')
    newest = [r["n"] for r in read_history(path)]
    assert newest == sorted(newest, reverse=True)
    assert newest[0] == 5
    # Only one rotated file is kept: the oldest records are gone.
    assert len(newest) < 6
    assert [r["n"] for r in read_history(path, limit=len(current) + 1)] == (
        [*reversed(current), older[-1]])
