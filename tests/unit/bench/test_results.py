"""reconciler/bench/results.py: the CPU/GPU label as `ollama ps` prints it."""

from __future__ import annotations

import pytest

from reconciler.bench.results import processor_label


@pytest.mark.parametrize(
    ("size", "size_vram", "label"),
    [
        (6_000, 6_000, "100% GPU"),
        (6_000, 0, "100% CPU"),
        (10_000, 5_200, "48%/52% CPU/GPU"),
        (5_000, 6_000, "Unknown"),
        (None, None, "—"),
    ],
)
def test_processor_label_as_ollama_ps(size: int | None, size_vram: int | None, label: str) -> None:
    assert processor_label(size, size_vram) == label
