"""Compose profiles through the stack: what render() hands compose and records, the plan
when a profile is switched off, and the compose commands apply() runs for it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.stack import compose
from reconciler.stack.apply import Applier, ApplyReport
from reconciler.stack.facts import Facts
from reconciler.stack.plan import Action, Drift, plan
from reconciler.stack.render import Rendered, load_rendered

from .test_plan import container, ollama, rendered, spec
from .test_render import copy_state, do_render, override, set_text

ON = ("# profiles: [monitoring]\n", "profiles: [monitoring]\n")
PROMETHEUS = ("prometheus", "prom-h1", "prom/prometheus:v3.5.0", {"image": "x"})


def test_render_with_the_profile_off_leaves_prometheus_out(tmp_path: Path) -> None:
    directory = copy_state(tmp_path, "off")
    result = do_render(directory)
    assert sorted(result.services) == ["ollama", "open-webui", "proxy"]
    assert result.inactive == {"prometheus": ["monitoring"]}
    assert result.profiles == ()
    assert "prometheus" not in override(directory)["services"]
    assert "--profile" not in result.project_handle.base()


def test_render_with_the_profile_on_deploys_prometheus(tmp_path: Path) -> None:
    directory = copy_state(tmp_path, "on")
    set_text(directory / "lanai.yaml", *ON)
    result = do_render(directory)
    assert sorted(result.services) == ["ollama", "open-webui", "prometheus", "proxy"]
    assert result.inactive == {}
    assert result.project_handle.base()[-2:] == ["--profile", "monitoring"]
    prometheus = result.services["prometheus"]
    assert prometheus.image == "prom/prometheus:v3.5.0"
    assert prometheus.has_healthcheck
    assert override(directory)["services"]["prometheus"]["labels"]
    # The repo's monitoring/ is mounted read-only; a change to a rule changes the hash.
    mounts = prometheus.config["volumes"]
    assert {"type": "bind", "source": "./monitoring", "target": "/etc/prometheus",
            "read_only": True} in [{k: m.get(k) for k in ("type", "source", "target",
                                                          "read_only")} for m in mounts]
    again = copy_state(tmp_path, "on-again")
    set_text(again / "lanai.yaml", *ON)
    set_text(again / "monitoring" / "lanai-rules.yml", "for: 15m", "for: 20m")
    assert do_render(again).services["prometheus"].hash != prometheus.hash
    loaded = load_rendered(directory)
    assert loaded is not None and loaded.profiles == ("monitoring",)
    assert loaded.project_handle == result.project_handle


def test_a_env_file_cannot_switch_a_profile_on(tmp_path: Path) -> None:
    """Compose reads COMPOSE_PROFILES from the repo's .env; lanai.yaml alone decides."""
    directory = copy_state(tmp_path, "dotenv")
    (directory / ".env").write_text("COMPOSE_PROFILES=monitoring\n")
    assert "prometheus" not in do_render(directory).services


def test_the_old_desired_file_has_no_profiles(tmp_path: Path) -> None:
    data = rendered("k1", ollama()).to_json()
    del data["inactive"]
    del data["settings"]
    old = Rendered.from_json(tmp_path, data)
    assert old.inactive == {} and old.profiles == ()


def switched_off(key: str) -> Rendered:
    desired = rendered(key, ollama())
    desired.inactive = {"prometheus": ["monitoring"]}
    return desired


def test_switching_the_profile_off_removes_the_container_with_its_reason() -> None:
    applied = rendered("k1", ollama(), spec(*PROMETHEUS))
    facts = Facts(containers=[container("ollama", "ollama-h1"),
                              container("prometheus", "prom-h1")])
    result = plan(switched_off("k2"), facts, applied=applied, prune=True)
    assert result.actions == [Action("remove", "prometheus",
                                     "profile switched off in lanai.yaml")]
    assert result.drift == []


def test_a_container_of_a_service_whose_profile_is_off_is_drift() -> None:
    """Started by hand (`docker compose --profile monitoring up`): not lanai's deployment."""
    desired = switched_off("k1")
    facts = Facts(containers=[container("ollama", "ollama-h1"),
                              container("prometheus", "prom-h1")])
    result = plan(desired, facts, applied=desired, prune=True)
    assert result.drift == [Drift("prometheus", "orphan",
                                  "1 container(s) of a service whose profile (monitoring) "
                                  "is off")]
    assert result.actions == [Action("remove", "prometheus", "not in the desired state")]
    assert plan(desired, facts, applied=desired, prune=False).actions == []


class Calls:
    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def __call__(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.argv.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="", stderr="")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    monkeypatch.setattr(compose, "run", recorded)
    return recorded


def test_apply_removes_a_switched_off_service_with_compose_rm(calls: Calls) -> None:
    desired = switched_off("k2")
    result = plan(desired, Facts(containers=[container("ollama", "ollama-h1"),
                                             container("prometheus", "prom-h1")]),
                  applied=None, prune=True)
    report = ApplyReport()
    Applier(None, health_timeout=5).apply(desired, result, report)  # type: ignore[arg-type]
    base = desired.project_handle.base()
    assert calls.argv == [[*base, "rm", "--stop", "--force", "prometheus"]]
    assert [(r["kind"], r["service"], r["result"]) for r in report.results] == [
        ("remove", "prometheus", "ok")]


def test_apply_removes_orphans_and_switched_off_services_each_their_way(
        calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Applier, "_check_ports", lambda *_: None)
    desired = switched_off("k2")
    facts = Facts(containers=[container("ollama", "ollama-h1"),
                              container("prometheus", "prom-h1"),
                              container("old", "old-h1")])
    result = plan(desired, facts, applied=None, prune=True)
    Applier(None, health_timeout=5).apply(desired, result, ApplyReport())  # type: ignore[arg-type]
    base = desired.project_handle.base()
    assert calls.argv == [[*base, "rm", "--stop", "--force", "prometheus"],
                          [*base, "up", "--detach", "--pull", "never", "--remove-orphans"]]
