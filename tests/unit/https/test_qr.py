"""reconciler/https/qr.py: what `lanai trust` prints decodes, with the real zbarimg.

The encoding itself is segno's; these tests check what lanai asks of it (byte mode,
UTF-8, the level kept as asked) and the terminal drawing, by reading the printed half
blocks back into modules and handing them to Debian's `zbarimg` (package zbar-tools) as
a bitmap, restricted to QR codes so that a stray linear-barcode match cannot confuse it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import segno

from reconciler.https import qr

SHORT_URL = "https://ai.home.arpa"
IP_URL = "http://192.168.1.20:8443/trust?token=abc123"
UTF8_TEXT = "Café ☕"
LONG_TEXT = (
    "https://ai.home.arpa/trust/enroll?device=laptop-kitchen&fingerprint="
    "SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&ok=1&via=qr"
)
QUIET = 4  # the quiet zone to_text draws, in modules

Modules = list[list[bool]]


@pytest.fixture(scope="module")
def zbarimg() -> str:
    path = shutil.which("zbarimg")
    if path is None:
        pytest.fail("zbarimg not found: install zbar-tools (apt-get install -y zbar-tools)")
    return path


def parse_text(text: str) -> Modules:
    """Back from half blocks to modules (True = dark), quiet zone included.

    Ink marks light modules, so a blank half is a dark one. An odd last row is padded
    with a row that gets no ink; it is dropped by the caller's size check.
    """
    halves = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}
    rows: Modules = []
    for line in text.split("\n"):
        pairs = [halves[ch] for ch in line]
        rows.append([not top for top, _ in pairs])
        rows.append([not bottom for _, bottom in pairs])
    return rows[: len(rows[0])]  # the symbol is square


def decode(zbarimg: str, modules: Modules, tmp_path: Path, scale: int = 4) -> str:
    """What zbarimg reads from `modules` drawn as a plain PBM bitmap (1 = black)."""
    pixels = [
        [m for m in row for _ in range(scale)] for row in modules for _ in range(scale)
    ]
    pbm = tmp_path / "code.pbm"
    body = "\n".join(" ".join("1" if dark else "0" for dark in row) for row in pixels)
    pbm.write_text(f"P1\n{len(pixels[0])} {len(pixels)}\n{body}\n", encoding="ascii")
    done = subprocess.run(
        [zbarimg, "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(pbm)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"zbarimg found no QR code (rc {done.returncode})"
    return done.stdout.decode("utf-8").removesuffix("\n")


def symbol_modules(code: segno.QRCode) -> Modules:
    """The symbol's own modules with the quiet zone, to compare the drawing with."""
    return [[bool(m) for m in row] for row in code.matrix_iter(border=QUIET)]


# --- round trips through zbarimg ----------------------------------------------------------


@pytest.mark.parametrize("ecc", ["L", "M", "Q", "H"])
@pytest.mark.parametrize(
    "text", [SHORT_URL, IP_URL, UTF8_TEXT, LONG_TEXT], ids=["url", "ip-port", "utf8", "long"]
)
def test_zbarimg_reads_what_to_text_prints(
    zbarimg: str, tmp_path: Path, text: str, ecc: str
) -> None:
    printed = qr.to_text(qr.encode(text, ecc=ecc))
    assert decode(zbarimg, parse_text(printed), tmp_path) == text


def test_long_text_needs_version_information() -> None:
    assert len(LONG_TEXT) >= 150
    for ecc in "LMQH":
        assert qr.encode(LONG_TEXT, ecc=ecc).version >= 7


# --- what lanai asks of segno -------------------------------------------------------------


def test_the_level_is_kept_as_asked() -> None:
    # segno would raise a short URL's level to H when it fits; lanai keeps M, as before.
    assert qr.encode(SHORT_URL).error == "M"
    assert qr.encode(SHORT_URL, ecc="L").error == "L"


def test_version_grows_with_length() -> None:
    assert qr.encode("a" * 14, ecc="M").version == 1
    assert qr.encode("a" * 15, ecc="M").version == 2
    versions = [qr.encode("a" * n, ecc="M").version for n in range(0, 400, 20)]
    assert versions == sorted(versions)
    assert versions[-1] > versions[0]
    # UTF-8 counts in bytes: "é" is two, so seven of them no longer fit version 1-M.
    assert qr.encode("é" * 7, ecc="M").version == 1
    assert qr.encode("é" * 8, ecc="M").version == 2


def test_too_long_raises() -> None:
    assert qr.encode("a" * 2953, ecc="L").version == 40
    with pytest.raises(ValueError):
        qr.encode("a" * 2954, ecc="L")
    with pytest.raises(ValueError):
        qr.encode("a" * 1274, ecc="H")


def test_bad_level_raises() -> None:
    with pytest.raises(ValueError, match="L, M, Q, H"):
        qr.encode("x", ecc="X")


# --- rendering ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [SHORT_URL, LONG_TEXT], ids=["url", "long"])
def test_to_text_dimensions_and_content(text: str) -> None:
    code = qr.encode(text)
    width = 4 * code.version + 17 + 2 * QUIET
    drawn = qr.to_text(code)
    lines = drawn.split("\n")
    assert len(lines) == math.ceil(width / 2)
    assert {len(line) for line in lines} == {width}
    assert set(drawn) <= {" ", "▀", "▄", "█", "\n"}
    assert parse_text(drawn) == symbol_modules(code)


def test_to_text_inks_the_light_modules() -> None:
    lines = qr.to_text(qr.encode(SHORT_URL)).split("\n")
    # The quiet zone is light, so it is drawn as full blocks.
    assert lines[0] == "█" * len(lines[0])
    # Line 2 holds finder rows 0 (all dark: blank tops) and 1 (dark ends, light middle).
    assert lines[2][:QUIET + 7] == "█" * QUIET + " ▄▄▄▄▄ "
