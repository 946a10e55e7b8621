"""Compose profiles in lanai.yaml: which services a deployment holds, and the problems a
listed profile can have. On copies of the example, whose Prometheus is under `monitoring`."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import profiles
from reconciler.desired.load import InvalidState, Problem, load_state

EXAMPLE_SERVICES = ["ollama", "open-webui", "proxy"]
PROFILE_OFF = "# profiles: [monitoring]\n"


def problems_of(root: Path) -> list[Problem]:
    with pytest.raises(InvalidState) as info:
        load_state(root)
    return info.value.problems


def test_pure_rules_follow_compose() -> None:
    services = {"web": {"image": "a:1"}, "empty": {"profiles": []},
                "mon": {"profiles": ["monitoring"]}, "both": {"profiles": ["debug", "media"]}}
    assert list(profiles.active(services, [])) == ["web", "empty"]
    assert list(profiles.active(services, ["media"])) == ["web", "empty", "both"]
    assert profiles.inactive(services, ["media"]) == {"mon": ["monitoring"]}
    assert profiles.unused(services, ["media", "monitorin", "monitoring"]) == ["monitorin"]


def test_the_example_leaves_its_monitoring_off(state_dir: Path) -> None:
    state = load_state(state_dir)
    assert state.config.profiles == []
    assert sorted(state.services) == EXAMPLE_SERVICES
    assert "prometheus" in state.all_services
    assert state.inactive == {"prometheus": ["monitoring"]}


def test_listing_the_profile_deploys_prometheus(state_dir: Path, edit) -> None:
    edit("lanai.yaml", PROFILE_OFF, "profiles: [monitoring]\n")
    state = load_state(state_dir)
    assert state.config.profiles == ["monitoring"]
    assert sorted(state.services) == sorted([*EXAMPLE_SERVICES, "prometheus"])
    assert state.inactive == {}
    spec = state.services["prometheus"]
    assert spec["image"].startswith("prom/prometheus:v")
    assert spec["network_mode"] == "host"
    assert "--web.listen-address=127.0.0.1:9090" in spec["command"]


def test_a_profile_no_service_names_is_one_problem_on_its_line(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", PROFILE_OFF, "profiles: [monitoring, monitorng]\n")
    problems = problems_of(state_dir)
    assert problems == [Problem(
        "lanai.yaml", ("profiles", 1), line,
        "profile 'monitorng' is not named by any service's `profiles:` in compose.yaml, so it "
        "switches nothing on; fix the name or remove it")]
    assert str(problems[0]).startswith(f"lanai.yaml:{line}: profiles[1]: profile 'monitorng'")


@pytest.mark.parametrize(("value", "message"), [
    ("[monitoring, monitoring]", "a profile is listed twice"),
    ("['-x']", "'-x' is not a profile name"),
    ("['*']", "'*' is not a profile name"),
    ("monitoring", "Input should be a valid list"),
])
def test_a_malformed_profiles_list_names_the_fix(state_dir: Path, edit, value: str,
                                                 message: str) -> None:
    line = edit("lanai.yaml", PROFILE_OFF, f"profiles: {value}\n")
    [problem] = problems_of(state_dir)
    assert problem.file == "lanai.yaml" and problem.line == line
    assert problem.message.startswith(message)


def test_a_service_whose_profiles_are_not_a_list_is_a_problem(state_dir: Path, edit) -> None:
    line = edit("compose.yaml", "    profiles: [monitoring]\n", "    profiles: monitoring\n")
    [problem] = problems_of(state_dir)
    assert (problem.file, problem.path, problem.line) == (
        "compose.yaml", ("services", "prometheus", "profiles"), line)
    assert problem.message == "must be a list of profile names"


def test_host_access_is_judged_on_the_services_deployed(state_dir: Path, edit) -> None:
    """Prometheus's host network needs its allow entry once the profile is on, not before;
    and the entry may name it while it is off."""
    edit("lanai.yaml", "    prometheus: [host_network]\n", "    open-webui: []\n")
    load_state(state_dir)  # off: it never runs
    edit("lanai.yaml", PROFILE_OFF, "profiles: [monitoring]\n")
    [problem] = problems_of(state_dir)
    assert problem.path == ("services", "prometheus", "network_mode")
    assert problem.message.endswith("security.allow: {prometheus: [host_network]}")


def test_rules_on_a_service_apply_once_its_profile_is_on(state_dir: Path, edit) -> None:
    edit("compose.yaml", "image: prom/prometheus:v3.5.0", "image: prom/prometheus:latest")
    load_state(state_dir)
    edit("lanai.yaml", PROFILE_OFF, "profiles: [monitoring]\n")
    [problem] = problems_of(state_dir)
    assert problem.path == ("services", "prometheus", "image")
    assert "is not pinned" in problem.message
