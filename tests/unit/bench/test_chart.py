"""reconciler/bench/chart.py: bench runs as an SVG bar chart."""

from __future__ import annotations

import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.bench import chart as benchchart
from reconciler.bench.store import BenchRun

from .runs import T0, T1, make_run, model_result

SVG = "{http://www.w3.org/2000/svg}"


def chart_runs() -> list[BenchRun]:
    tricky = 'evil<&>"model'
    return [
        make_run([model_result("llama3.2", [60.0]), model_result(tricky, [30.0])], at=T0),
        make_run([model_result("llama3.2", [66.5])], at=T1, commit="c0ffee1d"),
    ]


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def test_svg_parses_and_has_a_bar_per_value() -> None:
    svg = benchchart.render_svg(chart_runs())
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 3  # llama3.2 in both runs, the other model only in the first
    heights = sorted(float(b.get("height", "0")) for b in bars)
    assert heights[0] < heights[1] < heights[2]  # 30 < 60 < 66.5
    assert texts(root, "value") == ["60.0", "66.5", "30.0"]
    assert texts(root, "missing") == ["n/a"]
    assert texts(root, "model") == ["llama3.2", 'evil<&>"model']  # escaped, read back intact
    assert texts(root, "legend") == ["0123456 · 2026-11-25", "c0ffee1 · 2026-11-26"]
    assert texts(root, "commit") == ["0123456", "c0ffee1", "0123456", "c0ffee1"]
    ticks = [float(t) for t in texts(root, "tick")]
    assert ticks[0] == 0 and ticks[-1] >= 66.5
    assert "&lt;&amp;&gt;" in svg


def test_svg_escapes_a_commit_label() -> None:
    runs = chart_runs()
    runs[1].commit = "<b>&"
    root = ET.fromstring(benchchart.render_svg(runs))
    assert texts(root, "legend")[1] == "<b>& · 2026-11-26"


def test_svg_of_other_metrics_and_of_nothing() -> None:
    runs = chart_runs()
    root = ET.fromstring(benchchart.render_svg(runs, metric="ttft_s", prompt="long-prompt"))
    assert texts(root, "value")[0] == "200 ms"
    empty = ET.fromstring(benchchart.render_svg([]))
    assert not [r for r in empty.iter(f"{SVG}rect") if r.get("class") == "bar"]
    with pytest.raises(ValueError, match="cannot chart"):
        benchchart.render_svg(runs, metric="vram_bytes")


def test_nice_ticks() -> None:
    assert benchchart.nice_ticks(66.5) == [0, 20, 40, 60, 80]
    assert benchchart.nice_ticks(1.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert benchchart.nice_ticks(0) == [0.0, 1.0]


def test_write_svg(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.svg"
    svg = benchchart.render_svg(chart_runs())
    benchchart.write_svg(path, svg)
    assert path.read_text(encoding="utf-8") == svg
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
