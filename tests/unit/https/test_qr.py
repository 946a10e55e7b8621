"""reconciler/https/qr.py: a QR encoder checked against a real decoder and known answers.

Round trips go through `to_png` and Debian's `zbarimg` (package zbar-tools), restricted
to QR codes so that a stray linear-barcode match in the modules cannot confuse it. The
known answers come from the standard: format information words, the Reed-Solomon
example of the "HELLO WORLD" 1-M symbol, version information and capacities.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from reconciler.https import qr

SHORT_URL = "https://ai.home.arpa"
IP_URL = "http://192.168.1.20:8443/trust?token=abc123"
UTF8_TEXT = "Café ☕"
LONG_TEXT = (
    "https://ai.home.arpa/trust/enroll?device=laptop-kitchen&fingerprint="
    "SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&ok=1&via=qr"
)


@pytest.fixture(scope="module")
def zbarimg() -> str:
    path = shutil.which("zbarimg")
    if path is None:
        pytest.fail("zbarimg not found: install zbar-tools (apt-get install -y zbar-tools)")
    return path


def decode(zbarimg: str, matrix: qr.Matrix, tmp_path: Path, scale: int = 4) -> str:
    png = tmp_path / "code.png"
    qr.to_png(matrix, png, scale=scale)
    done = subprocess.run(
        [zbarimg, "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(png)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"zbarimg found no QR code (rc {done.returncode})"
    return done.stdout.decode("utf-8").removesuffix("\n")


# --- round trips through zbarimg ----------------------------------------------------------


@pytest.mark.parametrize("ecc", ["L", "M", "Q", "H"])
@pytest.mark.parametrize(
    "text", [SHORT_URL, IP_URL, UTF8_TEXT, LONG_TEXT], ids=["url", "ip-port", "utf8", "long"]
)
def test_zbarimg_reads_what_encode_writes(
    zbarimg: str, tmp_path: Path, text: str, ecc: str
) -> None:
    matrix = qr.encode(text, ecc=ecc)
    assert decode(zbarimg, matrix, tmp_path) == text


def test_long_text_needs_version_information() -> None:
    assert len(LONG_TEXT) >= 150
    for ecc in "LMQH":
        assert qr.version_of(qr.encode(LONG_TEXT, ecc=ecc)) >= 7


@pytest.mark.parametrize("mask", range(8))
def test_every_mask_decodes(zbarimg: str, tmp_path: Path, mask: int) -> None:
    # Version 8 so alignment patterns and version information are masked around too.
    matrix = qr.encode(IP_URL, ecc="Q", mask=mask, min_version=8)
    assert qr.version_of(matrix) == 8
    assert decode(zbarimg, matrix, tmp_path) == IP_URL


def test_every_version_decodes_when_full(zbarimg: str, tmp_path: Path) -> None:
    # One level per version, rotating, with the data filling the symbol to the last byte:
    # this exercises each version's alignment grid and block table, and a cut terminator.
    rng = random.Random(18004)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789:/.-?=&"
    for version in range(qr.MIN_VERSION, qr.MAX_VERSION + 1):
        ecc = "LMQH"[version % 4]
        text = "".join(rng.choice(alphabet) for _ in range(qr.byte_capacity(version, ecc)))
        matrix = qr.encode(text, ecc=ecc, mask=version % 8)
        assert qr.version_of(matrix) == version
        assert decode(zbarimg, matrix, tmp_path, scale=3) == text, f"version {version}-{ecc}"


# --- known answers ------------------------------------------------------------------------


def test_reed_solomon_hello_world_1m() -> None:
    data = [32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17, 236, 17, 236, 17]
    assert qr.rs_ecc(data, 10) == [196, 35, 39, 119, 235, 215, 231, 226, 93, 23]


def test_reed_solomon_generator_degree_7() -> None:
    # Exponents of alpha in the 7-codeword generator: 0, 87, 229, 146, 149, 238, 102, 21.
    exps = [0, 87, 229, 146, 149, 238, 102, 21]
    assert qr.rs_generator(7) == [qr._EXP[e] for e in exps]


@pytest.mark.parametrize(
    ("ecc", "mask", "bits"),
    [
        ("L", 0, "111011111000100"),
        ("L", 7, "110100101110110"),
        ("M", 0, "101010000010010"),
        ("M", 5, "100000011001110"),
        ("Q", 0, "011010101011111"),
        ("Q", 3, "011101000000110"),
        ("H", 0, "001011010001001"),
        ("H", 7, "000100000111011"),
    ],
)
def test_format_information(ecc: str, mask: int, bits: str) -> None:
    assert format(qr.format_bits(ecc, mask), "015b") == bits


@pytest.mark.parametrize(
    ("version", "bits"), [(7, 0x07C94), (10, 0x0A4D3), (21, 0x15683), (40, 0x28C69)]
)
def test_version_information(version: int, bits: int) -> None:
    assert qr.version_bits(version) == bits


def test_format_information_is_drawn_in_both_copies() -> None:
    matrix = qr.encode(SHORT_URL, ecc="Q", mask=3)
    size = len(matrix)
    word = qr.format_bits("Q", 3)
    around_finder = [matrix[8][c] for c in (0, 1, 2, 3, 4, 5, 7)] + [
        matrix[r][8] for r in (8, 7, 5, 4, 3, 2, 1, 0)
    ]
    # The second copy: bits 0-7 leftwards from the right edge of row 8, then 8-14
    # downwards in column 8 below the dark module.
    split = [matrix[8][size - 1 - i] if i < 8 else matrix[size - 15 + i][8] for i in range(15)]
    expected = [word >> i & 1 == 1 for i in range(14, -1, -1)]
    assert around_finder == expected
    assert split == expected[::-1]
    assert matrix[size - 8][8] is True  # the always-dark module


def test_alignment_positions() -> None:
    assert qr.alignment_positions(1) == []
    assert qr.alignment_positions(2) == [6, 18]
    assert qr.alignment_positions(7) == [6, 22, 38]
    assert qr.alignment_positions(32) == [6, 34, 60, 86, 112, 138]
    assert qr.alignment_positions(40) == [6, 30, 58, 86, 114, 142, 170]


def test_block_table_fills_every_version() -> None:
    # Data plus ECC codewords of every block must use exactly the room the version has.
    known_raw = {1: 26, 2: 44, 7: 196, 10: 346, 20: 1085, 40: 3706}
    for version, raw in known_raw.items():
        assert qr.raw_codewords(version) == raw
    for version in range(qr.MIN_VERSION, qr.MAX_VERSION + 1):
        for level in "LMQH":
            ec, n1, d1, n2, d2 = qr._blocks(version, level)
            assert n1 * (d1 + ec) + n2 * (d2 + ec) == qr.raw_codewords(version), (version, level)
            assert n2 == 0 or d2 == d1 + 1, (version, level)
        # Stronger levels hold less, and every version holds more than the one before.
        levels = [qr.data_capacity(version, level) for level in "LMQH"]
        assert levels == sorted(levels, reverse=True), version
        if version > 1:
            assert qr.data_capacity(version, "H") > qr.data_capacity(version - 1, "H")


@pytest.mark.parametrize(
    ("version", "ecc", "capacity"),
    [(1, "L", 17), (1, "M", 14), (1, "Q", 11), (1, "H", 7), (7, "M", 122),
     (10, "H", 119), (40, "L", 2953), (40, "H", 1273)],
)
def test_byte_capacity(version: int, ecc: str, capacity: int) -> None:
    assert qr.byte_capacity(version, ecc) == capacity


def test_version_grows_with_length() -> None:
    assert qr.version_of(qr.encode("a" * 14, ecc="M")) == 1
    assert qr.version_of(qr.encode("a" * 15, ecc="M")) == 2
    versions = [qr.version_of(qr.encode("a" * n, ecc="M")) for n in range(0, 400, 20)]
    assert versions == sorted(versions)
    assert versions[-1] > versions[0]
    # UTF-8 counts in bytes: "é" is two, so seven of them no longer fit version 1-M.
    assert qr.version_of(qr.encode("é" * 7, ecc="M")) == 1
    assert qr.version_of(qr.encode("é" * 8, ecc="M")) == 2


def test_too_long_raises() -> None:
    assert qr.version_of(qr.encode("a" * 2953, ecc="L", mask=0)) == 40
    with pytest.raises(ValueError, match=r"too long.*2954 bytes.*2953.*level L"):
        qr.encode("a" * 2954, ecc="L")
    with pytest.raises(ValueError, match="too long"):
        qr.encode("a" * 1274, ecc="H")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="L, M, Q, H"):
        qr.encode("x", ecc="X")
    with pytest.raises(ValueError, match="mask"):
        qr.encode("x", mask=8)
    with pytest.raises(ValueError, match="min_version"):
        qr.encode("x", min_version=41)


def test_best_mask_has_the_lowest_penalty() -> None:
    chosen = qr.encode(LONG_TEXT, ecc="M")
    scores = [qr.penalty(qr.encode(LONG_TEXT, ecc="M", mask=m)) for m in range(8)]
    assert qr.penalty(chosen) == min(scores)
    assert chosen == qr.encode(LONG_TEXT, ecc="M", mask=scores.index(min(scores)))


def test_penalty_rules_on_small_matrices() -> None:
    # All dark 5x5: rule 1 = 3 per row and column (30), rule 2 = 16 blocks x 3 (48),
    # rule 3 = 0, rule 4 = 100 % dark -> 10 steps of 5 % x 10 (100).
    assert qr.penalty([[True] * 5 for _ in range(5)]) == 178
    checker = [[(r + c) % 2 == 0 for c in range(4)] for r in range(4)]
    assert qr.penalty(checker) == 0
    # A finder look-alike in one row: light on both sides counts once per side.
    row = [True, False, True, True, True, False, True, False, False, False, False]
    assert qr._line_penalty(row) == 80


def test_function_patterns() -> None:
    matrix = qr.encode(LONG_TEXT, ecc="L")  # version 7
    size = len(matrix)
    assert size == 4 * qr.version_of(matrix) + 17
    finder = [[max(abs(r - 3), abs(c - 3)) != 2 for c in range(7)] for r in range(7)]
    for top, left in ((0, 0), (0, size - 7), (size - 7, 0)):
        assert [row[left : left + 7] for row in matrix[top : top + 7]] == finder
    assert [matrix[6][c] for c in range(8, size - 8)] == [c % 2 == 0 for c in range(8, size - 8)]
    assert [matrix[r][6] for r in range(8, size - 8)] == [r % 2 == 0 for r in range(8, size - 8)]
    word = qr.version_bits(7)
    top_right = [matrix[i // 3][size - 11 + i % 3] for i in range(18)]
    bottom_left = [matrix[size - 11 + i % 3][i // 3] for i in range(18)]
    assert top_right == bottom_left == [word >> i & 1 == 1 for i in range(18)]


# --- rendering ----------------------------------------------------------------------------


def parse_text(text: str, quiet: int, invert: bool) -> qr.Matrix:
    """Back from half blocks to modules, to check `to_text` draws what it was given."""
    halves = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}
    rows: list[list[bool]] = []
    for line in text.split("\n"):
        pairs = [halves[ch] for ch in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    width = len(rows[0])
    inner = rows[quiet : width - quiet]
    return [[ink != invert for ink in row[quiet : width - quiet]] for row in inner]


@pytest.mark.parametrize("quiet", [0, 1, 2, 4])
@pytest.mark.parametrize("text", [SHORT_URL, LONG_TEXT], ids=["url", "long"])
def test_to_text_dimensions_and_content(text: str, quiet: int) -> None:
    matrix = qr.encode(text)
    width = len(matrix) + 2 * quiet
    for invert in (True, False):
        drawn = qr.to_text(matrix, quiet=quiet, invert=invert)
        lines = drawn.split("\n")
        assert len(lines) == math.ceil(width / 2)
        assert {len(line) for line in lines} == {width}
        assert set(drawn) <= {" ", "▀", "▄", "█", "\n"}
        assert parse_text(drawn, quiet, invert) == matrix


def test_to_text_invert_chooses_which_modules_get_ink() -> None:
    matrix = qr.encode(SHORT_URL)
    # Default (invert=True): the quiet zone is light, so it is drawn as full blocks.
    assert qr.to_text(matrix).split("\n")[0] == "█" * (len(matrix) + 8)
    assert qr.to_text(matrix, invert=False).split("\n")[0] == " " * (len(matrix) + 8)
    # Without a quiet zone the first line is finder rows 0 (all dark) and 1 (dark ends).
    line = qr.to_text(matrix, quiet=0, invert=False).split("\n")[0]
    assert line[:7] == "█▀▀▀▀▀█"


def test_png_is_well_formed(tmp_path: Path) -> None:
    matrix = qr.encode(SHORT_URL)
    path = tmp_path / "code.png"
    qr.to_png(matrix, path, scale=3, quiet=2)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    side = (len(matrix) + 4) * 3
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack(">IIBB", data[16:26]) == (side, side, 1, 0)
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_len])
    stride = 1 + math.ceil(side / 8)
    assert len(raw) == side * stride
    # Pixel row 6 is module row 0 (after 2 quiet modules x 3 pixels): six light pixels
    # (set bits) and then the finder's dark edge (clear bits); byte 0 is the filter type.
    first = raw[6 * stride : 7 * stride]
    assert first[0] == 0 and first[1] == 0b11111100
    assert data.endswith(b"IEND\xaeB`\x82")
