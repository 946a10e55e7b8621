"""reconciler/bench/bandwidth.py: GPU names to memory bandwidth, bytes read per token."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.bench.bandwidth import (
    GpuInfo,
    bandwidth_for,
    bandwidth_pct,
    bytes_per_token,
    gpu_table_key,
)

from .runs import model_result


def nvidia_smi_name() -> str:
    """The GPU name in the real H100 nvidia-smi output (tests/fixtures/nvidia-smi)."""
    path = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi" / "h100-driver580" \
        / "query-gpu.csv"
    return path.read_text().splitlines()[0].split(", ")[2]


@pytest.mark.parametrize(
    ("name", "bandwidth"),
    [
        ("NVIDIA GeForce RTX 3070", 448),
        ("NVIDIA GeForce RTX 3070 Ti", 608),
        ("GeForce RTX 3070Ti", 608),
        ("nvidia geforce rtx 3060 ti", 448),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", 672),
        ("NVIDIA GeForce RTX 4090", 1008),
        ("NVIDIA GeForce RTX 5090", 1792),
        ("Tesla T4", 320),
        ("NVIDIA A10", 600),
        ("NVIDIA A100-PCIE-40GB", 1555),
        ("NVIDIA A100 80GB PCIe", 1935),
        ("NVIDIA A100-SXM4-80GB", 2039),
        ("NVIDIA H100 PCIe", 2000),
        ("NVIDIA H100 NVL", 3900),
        ("NVIDIA H200", 4800),
        ("NVIDIA RTX A4000", 448),
    ],
)
def test_bandwidth_for_known_cards(name: str, bandwidth: float) -> None:
    assert bandwidth_for(name) == bandwidth


def test_the_longest_matching_entry_wins() -> None:
    assert gpu_table_key("NVIDIA GeForce RTX 4090 D") == "NVIDIA GeForce RTX 4090 D"
    assert gpu_table_key("NVIDIA GeForce RTX 4090") == "NVIDIA GeForce RTX 4090"
    assert gpu_table_key("NVIDIA GeForce RTX 3070 Ti") == "NVIDIA GeForce RTX 3070 Ti"
    assert gpu_table_key("GeForce RTX 2080") is None


def test_bandwidth_for_the_h100_in_the_real_nvidia_smi_output() -> None:
    name = nvidia_smi_name()
    assert name == "NVIDIA H100 80GB HBM3"  # the SXM5 part
    assert bandwidth_for(name) == 3350
    assert GpuInfo.for_card(name, 81559) == GpuInfo(name, 81559, 3350)


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA GeForce RTX 4090 Laptop GPU",  # not the desktop card
        "NVIDIA GeForce RTX 2080",
        "NVIDIA A100-SXM4-64GB",  # an A100 the table does not know: not the 40 GB row
        "NVIDIA A1",
        "",
    ],
)
def test_bandwidth_for_unknown_cards_is_none(name: str) -> None:
    assert bandwidth_for(name) is None


def test_bandwidth_pct_arithmetic() -> None:
    # 448 GB/s over 4.48 GB per token: at most 100 tok/s; 70 tok/s is 70 %.
    assert bandwidth_pct(70.0, 4.48e9, 448) == pytest.approx(70.0)
    assert bandwidth_pct(50.0, 5e9, 500) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        bandwidth_pct(50.0, 0, 500)


def test_bytes_per_token_adds_the_kv_cache_at_the_mean_position() -> None:
    result = model_result("m", [50.0], weights_bytes=4_000_000_000, kv_bytes_per_token=100_000.0)
    prompt = result.prompts["long-prompt"]  # 1700 prompt tokens, 128 generated
    got = bytes_per_token(result, prompt)
    assert got == (4_000_000_000 + 100_000 * (1700 + 64), False)
    # Only /api/ps size known: an upper bound, flagged.
    fallback = model_result("m", [50.0])
    assert bytes_per_token(fallback, prompt) == (5_600_000_000, True)
    assert bytes_per_token(model_result("m", [50.0], size=None), prompt) is None
