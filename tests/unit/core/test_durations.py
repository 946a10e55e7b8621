"""Durations written by people, and their short human form."""

from __future__ import annotations

import pytest

from reconciler.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90.0),
    ("5m", 300.0),
    ("1h30m", 5400.0),
    ("2d", 172800.0),
    ("250ms", 0.25),
    ("1m30s", 90.0),
    ("1.5h", 5400.0),
    (" 10 m ", 600.0),
    ("5M", 300.0),
    ("45", 45.0),
    ("2.5", 2.5),
    (30, 30.0),
    (0, 0.0),
    (1.5, 1.5),
])
def test_parse(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "5 minutes", "5m30", "-5", "-5s", "1y", "m5",
                                   "1h 30x"])
def test_parse_rejects_text_that_is_not_a_duration(value: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; write it like 30s, 5m, 1h30m or 2d"):
        parse_duration(value)


def test_parse_rejects_booleans_negative_numbers_and_other_types() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_duration(True)
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(["5m"])
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(None)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.85, "850ms"),
    (0, "0ms"),
    (5.5, "5.5s"),
    (42, "42s"),
    (60, "1m"),
    (300, "5m"),
    (330, "5m30s"),
    (3600, "1h"),
    (5400, "1h30m"),
    (3660, "1h01m"),
    (47 * 3600, "47h"),
    (3 * 86400, "3d"),
])
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "5m", "1h30m", "2d", "850ms"])
def test_format_reads_back(text: str) -> None:
    assert format_duration(parse_duration(text)) == ("1m30s" if text == "90s" else text)
