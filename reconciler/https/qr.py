"""The QR codes `lanai trust` prints in the terminal: segno encodes, half blocks draw.

`encode` makes the symbol: byte mode with the text as UTF-8 and no ECI header (what
phone scanners expect), the given error correction level kept as asked (segno would
otherwise raise it when it fits), the smallest version that holds the text.

`to_text` draws it with Unicode half blocks, two module rows per line, with the
standard's four-module quiet zone. A terminal can only draw its foreground colour on its
background, so which modules get "ink" decides which themes the code scans on: light
modules and the quiet zone are drawn, dark ones left blank, so that on the common
light-text-on-dark terminal the code shows dark on light, as printed.
"""

from __future__ import annotations

import io

import segno


def encode(data: str, *, ecc: str = "M") -> segno.QRCode:
    """The QR code of `data` at error correction level `ecc` (L, M, Q or H).

    Raises ValueError when the data does not fit in version 40 at that level.
    """
    # segno's DataOverflowError is a ValueError.
    return segno.make_qr(data, error=ecc, mode="byte", encoding="utf-8", boost_error=False)


def to_text(code: segno.QRCode) -> str:
    """The code drawn with half blocks for a terminal, quiet zone included."""
    out = io.StringIO()
    code.terminal(out=out, compact=True)
    return out.getvalue().removesuffix("\n")
