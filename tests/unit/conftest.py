"""Shared fixtures for the unit tests: a writable copy of the example state repo."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_STATE = REPO_ROOT / "desired-state"
FIXTURES = REPO_ROOT / "tests" / "fixtures"

Edit = Callable[[str, str, str], int]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A copy of desired-state/ that a test may change."""
    target = tmp_path / "state"
    shutil.copytree(EXAMPLE_STATE, target)
    return target


@pytest.fixture
def edit(state_dir: Path) -> Edit:
    """Replace `old` (which must occur exactly once) by `new` in a file of the state copy.

    Returns the 1-based line on which `new` starts, so tests need not hard-code
    line numbers of the example files.
    """

    def _edit(name: str, old: str, new: str) -> int:
        path = state_dir / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {name}"
        head = text[: text.index(old)]
        path.write_text(text.replace(old, new), encoding="utf-8")
        return head.count("\n") + 1

    return _edit
