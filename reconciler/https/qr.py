"""A small QR code encoder (ISO/IEC 18004, model 2) with no third-party dependency.

`lanai trust` shows a URL in the terminal as a QR code; the project may not add a
dependency for that, so this module implements the parts of the standard it needs:

- byte mode only (the text is encoded as UTF-8; no ECI header, which is what common
  encoders do and what phone scanners expect),
- versions 1 to 40, error correction levels L, M, Q and H, the smallest version that fits,
- Reed-Solomon error correction over GF(256) with the field polynomial 0x11D,
- block interleaving, function patterns, format and version information,
- all eight masks scored with the four penalty rules, the lowest score kept.

`to_text` draws a matrix with Unicode half blocks for a terminal and `to_png` writes a
1-bit grayscale PNG (zlib + struct only).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

Matrix = list[list[bool]]

MIN_VERSION = 1
MAX_VERSION = 40

# Two-bit codes of the levels in the format information (the standard's order is not L<M<Q<H).
_ECC_BITS = {"L": 0b01, "M": 0b00, "Q": 0b11, "H": 0b10}

# Per version, per level (L, M, Q, H): (EC codewords per block, blocks in group 1,
# data codewords per group-1 block, blocks in group 2, data codewords per group-2 block).
# Group 2 blocks hold one data codeword more than group 1 blocks.
_BLOCKS: dict[int, tuple[tuple[int, int, int, int, int], ...]] = {
    1: ((7, 1, 19, 0, 0), (10, 1, 16, 0, 0), (13, 1, 13, 0, 0), (17, 1, 9, 0, 0)),
    2: ((10, 1, 34, 0, 0), (16, 1, 28, 0, 0), (22, 1, 22, 0, 0), (28, 1, 16, 0, 0)),
    3: ((15, 1, 55, 0, 0), (26, 1, 44, 0, 0), (18, 2, 17, 0, 0), (22, 2, 13, 0, 0)),
    4: ((20, 1, 80, 0, 0), (18, 2, 32, 0, 0), (26, 2, 24, 0, 0), (16, 4, 9, 0, 0)),
    5: ((26, 1, 108, 0, 0), (24, 2, 43, 0, 0), (18, 2, 15, 2, 16), (22, 2, 11, 2, 12)),
    6: ((18, 2, 68, 0, 0), (16, 4, 27, 0, 0), (24, 4, 19, 0, 0), (28, 4, 15, 0, 0)),
    7: ((20, 2, 78, 0, 0), (18, 4, 31, 0, 0), (18, 2, 14, 4, 15), (26, 4, 13, 1, 14)),
    8: ((24, 2, 97, 0, 0), (22, 2, 38, 2, 39), (22, 4, 18, 2, 19), (26, 4, 14, 2, 15)),
    9: ((30, 2, 116, 0, 0), (22, 3, 36, 2, 37), (20, 4, 16, 4, 17), (24, 4, 12, 4, 13)),
    10: ((18, 2, 68, 2, 69), (26, 4, 43, 1, 44), (24, 6, 19, 2, 20), (28, 6, 15, 2, 16)),
    11: ((20, 4, 81, 0, 0), (30, 1, 50, 4, 51), (28, 4, 22, 4, 23), (24, 3, 12, 8, 13)),
    12: ((24, 2, 92, 2, 93), (22, 6, 36, 2, 37), (26, 4, 20, 6, 21), (28, 7, 14, 4, 15)),
    13: ((26, 4, 107, 0, 0), (22, 8, 37, 1, 38), (24, 8, 20, 4, 21), (22, 12, 11, 4, 12)),
    14: ((30, 3, 115, 1, 116), (24, 4, 40, 5, 41), (20, 11, 16, 5, 17), (24, 11, 12, 5, 13)),
    15: ((22, 5, 87, 1, 88), (24, 5, 41, 5, 42), (30, 5, 24, 7, 25), (24, 11, 12, 7, 13)),
    16: ((24, 5, 98, 1, 99), (28, 7, 45, 3, 46), (24, 15, 19, 2, 20), (30, 3, 15, 13, 16)),
    17: ((28, 1, 107, 5, 108), (28, 10, 46, 1, 47), (28, 1, 22, 15, 23), (28, 2, 14, 17, 15)),
    18: ((30, 5, 120, 1, 121), (26, 9, 43, 4, 44), (28, 17, 22, 1, 23), (28, 2, 14, 19, 15)),
    19: ((28, 3, 113, 4, 114), (26, 3, 44, 11, 45), (26, 17, 21, 4, 22), (26, 9, 13, 16, 14)),
    20: ((28, 3, 107, 5, 108), (26, 3, 41, 13, 42), (30, 15, 24, 5, 25), (28, 15, 15, 10, 16)),
    21: ((28, 4, 116, 4, 117), (26, 17, 42, 0, 0), (28, 17, 22, 6, 23), (30, 19, 16, 6, 17)),
    22: ((28, 2, 111, 7, 112), (28, 17, 46, 0, 0), (30, 7, 24, 16, 25), (24, 34, 13, 0, 0)),
    23: ((30, 4, 121, 5, 122), (28, 4, 47, 14, 48), (30, 11, 24, 14, 25), (30, 16, 15, 14, 16)),
    24: ((30, 6, 117, 4, 118), (28, 6, 45, 14, 46), (30, 11, 24, 16, 25), (30, 30, 16, 2, 17)),
    25: ((26, 8, 106, 4, 107), (28, 8, 47, 13, 48), (30, 7, 24, 22, 25), (30, 22, 15, 13, 16)),
    26: ((28, 10, 114, 2, 115), (28, 19, 46, 4, 47), (28, 28, 22, 6, 23), (30, 33, 16, 4, 17)),
    27: ((30, 8, 122, 4, 123), (28, 22, 45, 3, 46), (30, 8, 23, 26, 24), (30, 12, 15, 28, 16)),
    28: ((30, 3, 117, 10, 118), (28, 3, 45, 23, 46), (30, 4, 24, 31, 25), (30, 11, 15, 31, 16)),
    29: ((30, 7, 116, 7, 117), (28, 21, 45, 7, 46), (30, 1, 23, 37, 24), (30, 19, 15, 26, 16)),
    30: ((30, 5, 115, 10, 116), (28, 19, 47, 10, 48), (30, 15, 24, 25, 25), (30, 23, 15, 25, 16)),
    31: ((30, 13, 115, 3, 116), (28, 2, 46, 29, 47), (30, 42, 24, 1, 25), (30, 23, 15, 28, 16)),
    32: ((30, 17, 115, 0, 0), (28, 10, 46, 23, 47), (30, 10, 24, 35, 25), (30, 19, 15, 35, 16)),
    33: ((30, 17, 115, 1, 116), (28, 14, 46, 21, 47), (30, 29, 24, 19, 25), (30, 11, 15, 46, 16)),
    34: ((30, 13, 115, 6, 116), (28, 14, 46, 23, 47), (30, 44, 24, 7, 25), (30, 59, 16, 1, 17)),
    35: ((30, 12, 121, 7, 122), (28, 12, 47, 26, 48), (30, 39, 24, 14, 25), (30, 22, 15, 41, 16)),
    36: ((30, 6, 121, 14, 122), (28, 6, 47, 34, 48), (30, 46, 24, 10, 25), (30, 2, 15, 64, 16)),
    37: ((30, 17, 122, 4, 123), (28, 29, 46, 14, 47), (30, 49, 24, 10, 25), (30, 24, 15, 46, 16)),
    38: ((30, 4, 122, 18, 123), (28, 13, 46, 32, 47), (30, 48, 24, 14, 25), (30, 42, 15, 32, 16)),
    39: ((30, 20, 117, 4, 118), (28, 40, 47, 7, 48), (30, 43, 24, 22, 25), (30, 10, 15, 67, 16)),
    40: ((30, 19, 118, 6, 119), (28, 18, 47, 31, 48), (30, 34, 24, 34, 25), (30, 20, 15, 61, 16)),
}
_LEVEL_INDEX = {"L": 0, "M": 1, "Q": 2, "H": 3}

_FORMAT_GENERATOR = 0x537  # x^10 + x^8 + x^5 + x^4 + x^2 + x + 1, BCH(15,5)
_FORMAT_MASK = 0x5412  # keeps the format information from ever being all zeros
_VERSION_GENERATOR = 0x1F25  # x^12 + x^11 + x^10 + x^9 + x^8 + x^5 + x^2 + 1, BCH(18,6)
_PAD_BYTES = (0xEC, 0x11)


# --- GF(256) and Reed-Solomon ------------------------------------------------------------


def _gf_tables() -> tuple[list[int], list[int]]:
    """Exponent and logarithm tables of GF(256) built from the primitive polynomial 0x11D."""
    exp = [0] * 512  # doubled so that exp[log a + log b] needs no modulo
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= 0x11D
    for power in range(255, 512):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _gf_tables()


def _gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def rs_generator(degree: int) -> list[int]:
    """Coefficients (highest power first, leading 1) of prod_{i<degree} (x - alpha^i)."""
    poly = [1]
    for i in range(degree):
        # Multiply by (x + alpha^i); in GF(2^8) subtraction is addition.
        nxt = [*poly, 0]
        for j, coef in enumerate(poly):
            nxt[j + 1] ^= _gf_mul(coef, _EXP[i])
        poly = nxt
    return poly


def rs_ecc(data: Sequence[int], degree: int) -> list[int]:
    """The `degree` error correction codewords of `data`: the remainder of
    data(x) * x^degree divided by the generator polynomial."""
    generator = rs_generator(degree)
    remainder = [0] * degree
    for byte in data:
        factor = byte ^ remainder[0]
        remainder = [*remainder[1:], 0]
        if factor:
            for i in range(degree):
                remainder[i] ^= _gf_mul(generator[i + 1], factor)
    return remainder


# --- BCH-coded format and version information ---------------------------------------------


def _bch_remainder(value: int, generator: int) -> int:
    """Remainder of value(x) * x^deg(generator) modulo generator(x) over GF(2)."""
    degree = generator.bit_length() - 1
    rem = value << degree
    for shift in range(rem.bit_length() - 1, degree - 1, -1):
        if rem >> shift & 1:
            rem ^= generator << (shift - degree)
    return rem


def format_bits(ecc: str, mask: int) -> int:
    """The 15 format information bits for an ECC level and a mask pattern (0-7)."""
    level = _check_ecc(ecc)
    if not 0 <= mask <= 7:
        raise ValueError(f"mask must be 0 to 7, not {mask}")
    data = _ECC_BITS[level] << 3 | mask
    return (data << 10 | _bch_remainder(data, _FORMAT_GENERATOR)) ^ _FORMAT_MASK


def version_bits(version: int) -> int:
    """The 18 version information bits (only drawn for versions 7 and up)."""
    return version << 12 | _bch_remainder(version, _VERSION_GENERATOR)


# --- capacity and data codewords ----------------------------------------------------------


def _check_ecc(ecc: str) -> str:
    level = ecc.upper() if isinstance(ecc, str) else ecc
    if level not in _ECC_BITS:
        raise ValueError(f"error correction level must be one of L, M, Q, H, not {ecc!r}")
    return level


def _blocks(version: int, level: str) -> tuple[int, int, int, int, int]:
    return _BLOCKS[version][_LEVEL_INDEX[level]]


def data_capacity(version: int, ecc: str) -> int:
    """Number of data codewords (bytes) a version holds at a level, headers included."""
    _, n1, d1, n2, d2 = _blocks(version, _check_ecc(ecc))
    return n1 * d1 + n2 * d2


def raw_codewords(version: int) -> int:
    """Codewords a version has room for once function patterns are taken out."""
    size = version * 4 + 17
    modules = size * size - 3 * 64 - 2 * (size - 16) - 1  # finders + separators, timing, dark
    modules -= 2 * 15  # format information, two copies
    if version >= 2:
        count = version // 7 + 2
        modules -= 25 * (count * count - 3) - 10 * (count - 2)  # alignment, minus timing overlap
    if version >= 7:
        modules -= 2 * 18  # version information, two copies
    return modules // 8


def _count_bits(version: int) -> int:
    return 8 if version <= 9 else 16


def byte_capacity(version: int, ecc: str) -> int:
    """Most bytes of byte-mode data a version holds at a level."""
    return (data_capacity(version, ecc) * 8 - 4 - _count_bits(version)) // 8


def choose_version(length: int, ecc: str, minimum: int = MIN_VERSION) -> int:
    """The smallest version (>= minimum) that holds `length` bytes at level `ecc`."""
    level = _check_ecc(ecc)
    for version in range(max(minimum, MIN_VERSION), MAX_VERSION + 1):
        if length <= byte_capacity(version, level):
            return version
    raise ValueError(
        f"data too long for a QR code: {length} bytes, but at most "
        f"{byte_capacity(MAX_VERSION, level)} fit at error correction level {level} "
        "(try a lower level or shorter text)"
    )


def _data_codewords(payload: bytes, version: int, level: str) -> list[int]:
    """Mode indicator, count, payload, terminator and padding, as bytes."""
    capacity = data_capacity(version, level)
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend(value >> i & 1 for i in range(width - 1, -1, -1))

    put(0b0100, 4)  # byte mode
    put(len(payload), _count_bits(version))
    for byte in payload:
        put(byte, 8)
    bits.extend([0] * min(4, capacity * 8 - len(bits)))  # terminator, shortened when full
    bits.extend([0] * (-len(bits) % 8))
    words = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)]
    words.extend(_PAD_BYTES[i % 2] for i in range(capacity - len(words)))
    return words


def _interleave(data: list[int], version: int, level: str) -> list[int]:
    """Split data into blocks, add each block's ECC and interleave, as the standard orders them."""
    ec_len, n1, d1, n2, d2 = _blocks(version, level)
    blocks: list[list[int]] = []
    pos = 0
    for length in [d1] * n1 + [d2] * n2:
        blocks.append(data[pos : pos + length])
        pos += length
    eccs = [rs_ecc(block, ec_len) for block in blocks]
    out = [block[i] for i in range(max(d1, d2)) for block in blocks if i < len(block)]
    out.extend(ecc[i] for i in range(ec_len) for ecc in eccs)
    return out


# --- the module matrix --------------------------------------------------------------------


def alignment_positions(version: int) -> list[int]:
    """Row/column centres of the alignment patterns: 6, then evenly spaced up to size - 7."""
    if version == 1:
        return []
    count = version // 7 + 2
    last = version * 4 + 10
    if version == 32:
        step = 26  # the one version whose spacing is not the rounded-up even division
    else:
        step = -(-(last - 6) // (count - 1))
        step += step % 2
    return [6] + [last - step * i for i in range(count - 2, -1, -1)]


class _Grid:
    """Modules plus a record of which ones are function patterns (masks skip those)."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.size = version * 4 + 17
        self.dark = [[False] * self.size for _ in range(self.size)]
        self.reserved = [[False] * self.size for _ in range(self.size)]

    def set(self, row: int, col: int, dark: bool) -> None:
        self.dark[row][col] = dark
        self.reserved[row][col] = True


def _draw_finder(grid: _Grid, top: int, left: int) -> None:
    # 7x7 finder plus its one-module light separator, clipped at the edge of the symbol.
    for dr in range(-1, 8):
        for dc in range(-1, 8):
            row, col = top + dr, left + dc
            if not (0 <= row < grid.size and 0 <= col < grid.size):
                continue
            ring = max(abs(dr - 3), abs(dc - 3))
            grid.set(row, col, ring != 2 and ring != 4)


def _draw_function_patterns(grid: _Grid) -> None:
    size = grid.size
    for top, left in ((0, 0), (0, size - 7), (size - 7, 0)):
        _draw_finder(grid, top, left)
    for i in range(8, size - 8):
        grid.set(6, i, i % 2 == 0)
        grid.set(i, 6, i % 2 == 0)
    centres = alignment_positions(grid.version)
    first, last = centres[:1], centres[-1:]
    for row in centres:
        for col in centres:
            if (row, col) in ((*first, *first), (*first, *last), (*last, *first)):
                continue  # those three would overlap the finders
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    grid.set(row + dr, col + dc, max(abs(dr), abs(dc)) != 1)
    # Reserve format and version areas now so data placement skips them; real bits come later.
    _draw_format(grid, 0)
    _draw_version(grid)


def _draw_format(grid: _Grid, bits: int) -> None:
    size = grid.size

    def bit(i: int) -> bool:
        return bits >> i & 1 == 1

    # Copy 1 wraps around the top-left finder, skipping the timing row and column.
    for i in range(6):
        grid.set(i, 8, bit(i))
    grid.set(7, 8, bit(6))
    grid.set(8, 8, bit(7))
    grid.set(8, 7, bit(8))
    for i in range(9, 15):
        grid.set(8, 14 - i, bit(i))
    # Copy 2 is split between the top-right and bottom-left finders.
    for i in range(8):
        grid.set(8, size - 1 - i, bit(i))
    for i in range(8, 15):
        grid.set(size - 15 + i, 8, bit(i))
    grid.set(size - 8, 8, True)  # the "dark module", always dark


def _draw_version(grid: _Grid) -> None:
    if grid.version < 7:
        return
    bits = version_bits(grid.version)
    for i in range(18):
        dark = bits >> i & 1 == 1
        a, b = grid.size - 11 + i % 3, i // 3
        grid.set(b, a, dark)  # 6x3 block left of the top-right finder
        grid.set(a, b, dark)  # its transpose, 3x6 above the bottom-left finder


def _place_data(grid: _Grid, codewords: list[int]) -> None:
    """Fill non-function modules in the two-column zigzag, bottom-right first, MSB first."""
    size = grid.size
    bits = [byte >> i & 1 == 1 for byte in codewords for i in range(7, -1, -1)]
    index = 0
    right = size - 1
    upward = True
    while right > 0:
        if right == 6:
            right -= 1  # the vertical timing pattern takes a whole column
        rows = range(size - 1, -1, -1) if upward else range(size)
        for row in rows:
            for col in (right, right - 1):
                if grid.reserved[row][col]:
                    continue
                # Remainder bits past the last codeword stay light (before masking).
                grid.dark[row][col] = index < len(bits) and bits[index]
                index += 1
        upward = not upward
        right -= 2


_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: (r * c) % 2 + (r * c) % 3 == 0,
    lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0,
)


def _apply_mask(grid: _Grid, mask: int) -> Matrix:
    """A masked copy of the modules; function patterns are never masked."""
    flip = _MASKS[mask]
    return [
        [
            dark if grid.reserved[r][c] else dark != flip(r, c)
            for c, dark in enumerate(row)
        ]
        for r, row in enumerate(grid.dark)
    ]


# --- mask penalty -------------------------------------------------------------------------

_FINDER_LIKE = ((1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0), (0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1))


def _line_penalty(line: Sequence[bool]) -> int:
    """Rules 1 and 3 on one row or column."""
    score = 0
    run = 1
    for i in range(1, len(line) + 1):
        if i < len(line) and line[i] == line[i - 1]:
            run += 1
            continue
        if run >= 5:
            score += 3 + run - 5  # rule 1: runs of five or more of one colour
        run = 1
    # Rule 3: 1:1:3:1:1 finder look-alikes with four light modules on one side; the
    # quiet zone counts as light, hence the padding.
    padded = (0,) * 4 + tuple(int(m) for m in line) + (0,) * 4
    for i in range(len(padded) - 10):
        if padded[i : i + 11] in _FINDER_LIKE:
            score += 40
    return score


def penalty(matrix: Matrix) -> int:
    """The standard's mask score: lower is easier for a scanner."""
    size = len(matrix)
    columns = [[matrix[r][c] for r in range(size)] for c in range(size)]
    score = sum(_line_penalty(row) for row in matrix)
    score += sum(_line_penalty(col) for col in columns)
    for r in range(size - 1):  # rule 2: 2x2 blocks of one colour
        top, bottom = matrix[r], matrix[r + 1]
        for c in range(size - 1):
            if top[c] == top[c + 1] == bottom[c] == bottom[c + 1]:
                score += 3
    dark = sum(sum(row) for row in matrix)  # rule 4: balance of dark and light
    total = size * size
    score += 10 * (abs(20 * dark - 10 * total) // total)
    return score


# --- public entry points ------------------------------------------------------------------


def encode(
    data: str, *, ecc: str = "M", mask: int | None = None, min_version: int = MIN_VERSION
) -> Matrix:
    """The QR code module matrix of `data` (True = dark), without the quiet zone.

    Byte mode (UTF-8), the smallest version from `min_version` to 40 that fits, the mask
    with the lowest penalty unless `mask` (0-7) forces one. Raises ValueError when the
    data does not fit in version 40 at the level or an argument is out of range.
    """
    level = _check_ecc(ecc)
    if mask is not None and not 0 <= mask <= 7:
        raise ValueError(f"mask must be 0 to 7, not {mask}")
    if not MIN_VERSION <= min_version <= MAX_VERSION:
        raise ValueError(f"min_version must be {MIN_VERSION} to {MAX_VERSION}, not {min_version}")
    payload = data.encode("utf-8")
    version = choose_version(len(payload), level, min_version)
    grid = _Grid(version)
    _draw_function_patterns(grid)
    _place_data(grid, _interleave(_data_codewords(payload, version, level), version, level))
    best: Matrix | None = None
    best_score = -1
    for candidate in range(8) if mask is None else (mask,):
        _draw_format(grid, format_bits(level, candidate))
        masked = _apply_mask(grid, candidate)
        score = penalty(masked) if mask is None else 0
        if best is None or score < best_score:
            best, best_score = masked, score
    assert best is not None
    return best


def version_of(matrix: Matrix) -> int:
    """The version of a module matrix, from its size."""
    return (len(matrix) - 17) // 4


def to_text(matrix: Matrix, *, quiet: int = 4, invert: bool = True) -> str:
    """The matrix drawn with Unicode half blocks, two module rows per line, quiet zone included.

    A terminal can only draw in its foreground colour on its background colour, so which
    modules get "ink" decides which themes the code scans on. With `invert=True` (the
    default) light modules and the quiet zone are drawn as blocks and dark modules are
    left blank: on the common light-text-on-dark terminal the code then shows dark on
    light, as printed. Pass `invert=False` for dark-text-on-light terminals, which draws
    the dark modules. (Most phone scanners also read the code the wrong way round.)
    """
    size = len(matrix)
    width = size + 2 * quiet

    def ink(row: int, col: int) -> bool:
        r, c = row - quiet, col - quiet
        dark = 0 <= r < size and 0 <= c < size and matrix[r][c]
        return dark != invert

    glyphs = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    lines = []
    for top in range(0, width, 2):
        # An odd last row pairs with a row beyond the quiet zone: blank, whatever the colours.
        lines.append(
            "".join(
                glyphs[ink(top, col), top + 1 < width and ink(top + 1, col)]
                for col in range(width)
            )
        )
    return "\n".join(lines)


def to_png(matrix: Matrix, path: str | Path, *, scale: int = 8, quiet: int = 4) -> None:
    """Write the matrix as a 1-bit grayscale PNG, `scale` pixels per module, dark on light."""
    if scale < 1 or quiet < 0:
        raise ValueError("scale must be at least 1 and quiet at least 0")
    Path(path).write_bytes(png_bytes(matrix, scale=scale, quiet=quiet))


def png_bytes(matrix: Matrix, *, scale: int = 8, quiet: int = 4) -> bytes:
    """The PNG file `to_png` writes, as bytes."""
    size = len(matrix)
    width = (size + 2 * quiet) * scale
    blank = [False] * quiet
    raw = bytearray()
    for row in [[False] * size] * quiet + matrix + [[False] * size] * quiet:
        pixels = [m for m in blank + list(row) + blank for _ in range(scale)]
        # In 1-bit grayscale a set bit is white, so light modules are the ones.
        bits = "".join("0" if dark else "1" for dark in pixels)
        bits += "1" * (-len(bits) % 8)
        line = bytes([0]) + int(bits, 2).to_bytes(len(bits) // 8, "big")  # filter: none
        raw += line * scale
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)  # 1-bit gray, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(
        b"IDAT", zlib.compress(bytes(raw), 9)
    ) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
