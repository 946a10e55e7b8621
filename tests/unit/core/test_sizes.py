"""Byte sizes written by people, and their short human form."""

from __future__ import annotations

import pytest

from reconciler.core.sizes import human_bytes, parse_size

GIB = 1024**3
MIB = 1024**2


@pytest.mark.parametrize(("text", "expected"), [
    ("8GiB", 8 * GIB),
    ("8 GiB", 8 * GIB),
    (" 8 gib ", 8 * GIB),
    ("512MiB", 512 * MIB),
    ("64KiB", 65536),
    ("1TiB", 1024**4),
    # decimal units are decimal: a "7.5GB" card is 7.5e9 bytes, not 7.5 GiB
    ("7.5GB", 7_500_000_000),
    ("8GB", 8_000_000_000),
    ("500MB", 500_000_000),
    ("1kb", 1000),
    ("2TB", 2 * 10**12),
    # bare K/M/G/T are binary, like docker's --memory 8g
    ("8G", 8 * GIB),
    ("8g", 8 * GIB),
    ("512M", 512 * MIB),
    ("4k", 4096),
    ("0.5G", GIB // 2),
    (".5GiB", GIB // 2),
    ("1.5GiB", 3 * GIB // 2),
    ("7.5 GiB", 15 * GIB // 2),
    # fractions round down to a whole byte: 0.1 KiB is 102.4 bytes
    ("0.1KiB", 102),
    ("1024", 1024),
    ("1024B", 1024),
    ("0", 0),
    (8_589_934_592, 8 * GIB),
    (0, 0),
])
def test_parse(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_large_binary_sizes_are_exact() -> None:
    # no float rounding: 123.456789 TiB to the byte
    assert parse_size("123.456789TiB") == 123 * 1024**4 + 456789 * 1024**4 // 10**6


@pytest.mark.parametrize("text", ["", "GiB", "eight GiB", "8 gigs", "8GiBs", "8 G B", "8iB",
                                  "1.2.3G", "0x10", "8e9"])
def test_parse_rejects_text_that_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a size; write it like 8GiB, 512MiB, 7\.5GB"):
        parse_size(text)


def test_parse_rejects_fractional_bytes_negative_sizes_and_other_types() -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size("1.5")
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size("10.5B")
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size("-8GiB")
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size(-1)
    with pytest.raises(ValueError, match="not a boolean"):
        parse_size(True)
    with pytest.raises(ValueError, match="not float"):
        parse_size(8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not NoneType"):
        parse_size(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1 KiB"),
    (1536, "1.5 KiB"),
    (512 * MIB, "512 MiB"),
    (4_920_753_328, "4.6 GiB"),  # llama3.1:8b q4_K_M as /api/tags lists it
    (8 * GIB, "8 GiB"),
    (15 * GIB // 2, "7.5 GiB"),
    (int(9.96 * GIB), "10 GiB"),
    (12 * GIB + 300 * MIB, "12 GiB"),
    (80 * GIB, "80 GiB"),
    # 1023.7 MiB rounds to 1024 without a decimal: say 1 GiB instead
    (GIB - 300 * 1024, "1 GiB"),
    (3 * 1024**4, "3 TiB"),
    (-512 * MIB, "-512 MiB"),
])
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_human_bytes_round_trips_through_parse_size_within_rounding() -> None:
    for n in (0, 1000, 3 * MIB, 7 * GIB + 123_456_789, 40 * GIB):
        back = parse_size(human_bytes(n).replace(" ", ""))
        assert abs(back - n) <= max(0.05 * n, 0)
