"""Byte sizes written by people ("8GiB", "512 MiB", "7.5GB", "8G") and their short human form.

Units, case-insensitive:

- KiB, MiB, GiB, TiB are binary (1024-based), as their names say.
- KB, MB, GB, TB are decimal (1000-based), as disk and GPU vendors use them.
- A bare K, M, G or T is binary, as in `docker run --memory 8g`: people who write
  "8G" for a graphics card mean 8 GiB.
- B, or no unit at all, is bytes.

Fractions are allowed with a unit ("7.5GB", "0.5G") and round down to a whole byte.
"""

from __future__ import annotations

import re

_KI = 1024
_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": _KI, "kib": _KI, "kb": 1000,
    "m": _KI**2, "mib": _KI**2, "mb": 1000**2,
    "g": _KI**3, "gib": _KI**3, "gb": 1000**3,
    "t": _KI**4, "tib": _KI**4, "tb": 1000**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_HINT = "write it like 8GiB, 512MiB, 7.5GB or a whole number of bytes"
_HUMAN_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def parse_size(text: str | int) -> int:
    """Bytes in `text`; raises ValueError saying how to write a size on anything else."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size, not a boolean; {_HINT}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a size, not {type(text).__name__}; {_HINT}")
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in _UNITS:
        if text.strip().startswith("-"):
            raise ValueError(f"{text!r}: a size cannot be negative")
        raise ValueError(f"{text!r} is not a size; {_HINT}")
    number, unit = match.groups()
    multiplier = _UNITS[unit]
    if multiplier == 1:
        if "." in number:  # no such thing as half a byte
            raise ValueError(f"{text!r} is not a whole number of bytes; {_HINT}")
        return int(number)
    # Integer arithmetic where possible, so "8GiB" is exact however large the unit.
    whole, _, frac = number.partition(".")
    value = int(whole or "0") * multiplier
    if frac:
        value += int(frac) * multiplier // 10 ** len(frac)
    return value


def human_bytes(n: int) -> str:
    """Short binary form: "0 B", "512 MiB", "4.6 GiB", "12 GiB" (one decimal under 10)."""
    if n < 0:
        return "-" + human_bytes(-n)
    if n < _KI:
        return f"{n} B"
    value = float(n)
    for unit in _HUMAN_UNITS[1:]:
        value /= _KI
        text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
        # 1023.7 MiB would print as "1024 MiB": move on to the next unit instead.
        if float(text) < _KI or unit == _HUMAN_UNITS[-1]:
            return f"{text.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
