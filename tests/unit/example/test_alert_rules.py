"""The example's Prometheus alert rules (desired-state/monitoring/lanai-rules.yml), checked
with the real promtool: `promtool check rules`, and `promtool test rules` on
lanai-rules.test.yml, which makes each rule fire and stay quiet. Copies with one rule
broken must fail those tests, so they can fail. Every metric a rule reads is one the
daemon's /metrics serves.

The example state repo's own files are tested here, in tests/unit/example/, rather than in
tests/unit/desired/: lanai does not read the rules file (tests/unit/desired tests the loader
on copies of the example), and the unit tests mirror the packages, so the example's files
get their own folder.

promtool comes with Debian's `prometheus` package, which tests/run installs; without it
these tests fail (never skip), saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "desired-state" / "monitoring" / "lanai-rules.yml"
RULE_TESTS = Path(__file__).with_name("lanai-rules.test.yml")
README = ROOT / "README.md"

ALERTS = ["LanaiStackOutOfSync", "LanaiServiceDegraded", "LanaiModelOnCpu",
          "LanaiBackupTooOld", "LanaiDiskNearlyFull", "LanaiGpuLost", "LanaiMetricsDown"]
# Rules on Prometheus' own series rather than lanai's: its scrape of the daemon.
SCRAPE_ALERTS = {"LanaiMetricsDown": 'up{job="lanai"}'}

# The metrics of the contract (issue 15) the rules may read, used only while the README has
# no "Metrics" section with a table of the metric names; once it has one, the names are
# read from that table instead (see contract_metrics).
CONTRACT_FALLBACK = {
    "lanai_stack_synced", "lanai_service_synced", "lanai_service_health",
    "lanai_service_heals_total", "lanai_service_last_applied_timestamp_seconds",
    "lanai_reconciles_total", "lanai_reconcile_duration_seconds", "lanai_drift_items",
    "lanai_model_pulled", "lanai_model_loaded", "lanai_model_vram_estimate_bytes",
    "lanai_model_vram_bytes", "lanai_model_size_bytes", "lanai_model_gpu_ratio",
    "lanai_bench_tokens_per_second", "lanai_bench_bandwidth_ratio",
    "lanai_backup_last_timestamp_seconds", "lanai_backup_last_size_bytes",
    "lanai_disk_free_bytes", "lanai_disk_size_bytes", "lanai_gpu_memory_used_bytes",
    "lanai_gpu_memory_total_bytes", "lanai_gpu_utilization_ratio",
    "lanai_gpu_temperature_celsius",
}
METRIC = re.compile(r"\blanai_[a-z0-9_]+")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: it comes with Debian's `prometheus` package "
                    "(`apt-get install --no-install-recommends prometheus`; tests/run installs "
                    "it)")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_are_the_contracts_six_and_the_scrape_with_for_severity_and_annotations(
        ) -> None:
    assert [rule["alert"] for rule in rules()] == ALERTS
    for rule in rules():
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_each_rule_is_tested_firing_and_quiet() -> None:
    """Every alert has an evaluation in lanai-rules.test.yml where it fires and one where it
    does not (the mutation tests below show those are the `for:` boundary)."""
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case.get("exp_alerts") for case in mine), f"{alert} never fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert} is never quiet"


def broken_copy(tmp_path: Path, alert: str, change) -> Path:
    """A copy of the rules with `alert` changed, and of the unit tests pointing at it."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                change(rule)
    broken = tmp_path / "lanai-rules.yml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(broken)]
    copy = tmp_path / "lanai-rules.test.yml"
    copy.write_text(yaml.safe_dump(tests, sort_keys=False))
    return copy


def shorter_for(rule: dict) -> None:
    rule["for"] = f"{int(rule['for'].removesuffix('m')) - 1}m"


def never_true(rule: dict) -> None:
    rule["expr"] = f"({rule['expr']}) unless on() vector(1)"


@pytest.mark.parametrize("alert", ALERTS)
@pytest.mark.parametrize("change", [shorter_for, never_true], ids=["fires-early", "never-fires"])
def test_a_broken_rule_fails_its_unit_test(tmp_path: Path, alert: str, change) -> None:
    """One minute less of `for:` fires at the evaluation just before the boundary; a
    condition that is never true misses the firing one."""
    result = promtool("test", "rules", broken_copy(tmp_path, alert, change))
    assert result.returncode != 0, result.stdout
    assert f"alertname: {alert}," in result.stdout + result.stderr
    other = {a for a in ALERTS if a != alert}
    assert not any(f"alertname: {a}," in result.stdout + result.stderr for a in other)


def contract_metrics() -> set[str]:
    """The metric names of the README's "Metrics" section table, else CONTRACT_FALLBACK."""
    text = README.read_text()
    section = re.search(r"^#+ Metrics\b.*?$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    if section:
        names = {name for line in section.group(1).splitlines() if line.startswith("|")
                 for name in METRIC.findall(line.split("|")[1])}
        if names:
            return names
    return CONTRACT_FALLBACK


def test_every_metric_a_rule_reads_is_in_the_contract() -> None:
    known = contract_metrics()
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        if rule["alert"] in SCRAPE_ALERTS:
            assert not used and SCRAPE_ALERTS[rule["alert"]] in rule["expr"], rule["alert"]
            continue
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']} reads {sorted(used - known)}, not in the contract"
