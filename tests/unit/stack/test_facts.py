"""facts.parse_container on `docker inspect` output recorded from a real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.stack.facts import ContainerFact, Facts, parse_container
from reconciler.stack.plan import plan
from reconciler.stack.render import Rendered, ServiceSpec

INSPECT = Path(__file__).resolve().parents[2] / "fixtures" / "docker-inspect"
WEBUI_ID = "sha256:a553fe26c190b1c33a0b869e8c227b14b5f1d32958970db0e9440fdb6a187479"
OLLAMA_ID = "sha256:8c796ac68e31b3950b06971220c7e85da93bff42d7de8aa8b4301d337e6a1417"


def inspect(name: str) -> dict[str, Any]:
    data = json.loads((INSPECT / name).read_text())
    assert isinstance(data, list) and len(data) == 1
    return data[0]


def parsed(name: str) -> ContainerFact:
    fact = parse_container(inspect(name))
    assert fact is not None
    return fact


def test_fixtures_hold_no_secret_values() -> None:
    for path in INSPECT.glob("*.json"):
        for container in json.loads(path.read_text()):
            for entry in container["Config"].get("Env") or []:
                name, _, value = entry.partition("=")
                if "SECRET" in name or "PASSWORD" in name or "TOKEN" in name:
                    assert value == "<redacted>", f"{path.name}: {name} is not redacted"


def test_healthy_open_webui() -> None:
    fact = parsed("open-webui-healthy.json")
    assert fact.id == inspect("open-webui-healthy.json")["Id"]
    assert fact.name == "lanai-open-webui-1"
    assert fact.service == "open-webui"
    assert fact.status == "running"
    assert fact.running is True
    assert fact.health == "healthy"
    assert fact.image_id == WEBUI_ID
    assert fact.image_ref == "ghcr.io/open-webui/open-webui:v0.12.4"
    assert fact.config_hash == "5f0cafd50ac7a3de"
    assert fact.exit_code == 0
    assert fact.restart_count == 0
    assert fact.started_at is not None and fact.started_at.startswith("20")
    assert fact.ports == (("0.0.0.0", 3000),)
    assert fact.health_log == '{"status":true}'


def test_healthy_ollama_publishes_nothing() -> None:
    fact = parsed("ollama-healthy.json")
    assert (fact.name, fact.service, fact.status, fact.health) == (
        "lanai-ollama-1", "ollama", "running", "healthy")
    assert fact.image_id == OLLAMA_ID
    assert fact.image_ref == "ollama/ollama:0.24.0"
    assert fact.config_hash == "1723829236acf449"
    assert fact.ports == ()


def test_unhealthy_container() -> None:
    fact = parsed("ollama-unhealthy.json")
    assert fact.status == "running"
    assert fact.health == "unhealthy"
    assert fact.health_log == "Error: could not connect to ollama app, is it running?"
    assert fact.ports == (("127.0.0.1", 18434),)
    assert fact.config_hash == "0123456789abcdef"


def test_exited_container_without_healthcheck_or_lanai_label() -> None:
    fact = parsed("open-webui-exited.json")
    assert fact.status == "exited"
    assert fact.running is False
    assert fact.exit_code == 3
    assert fact.health is None
    assert fact.health_log is None
    assert fact.config_hash is None
    # Published ports are known from HostConfig even while the container is stopped.
    assert fact.ports == (("0.0.0.0", 13000),)


def test_one_off_container_is_ignored() -> None:
    assert inspect("oneoff-run.json")["Config"]["Labels"]["com.docker.compose.oneoff"] == "True"
    assert parse_container(inspect("oneoff-run.json")) is None


def test_health_log_is_the_last_probe_trimmed() -> None:
    attrs = inspect("ollama-unhealthy.json")
    attrs["State"]["Health"]["Log"].append({"Output": "x" * 500 + "\n"})
    assert parse_container(attrs).health_log == "x" * 300


def test_minimal_attrs() -> None:
    fact = parse_container({"Id": "abc"})
    assert fact == ContainerFact(id="abc", name="", service="?", status="unknown", health=None,
                                 image_id="", image_ref="", config_hash=None, exit_code=None,
                                 started_at=None, restart_count=0, health_log=None, ports=())


def test_port_bindings_with_ranges_and_both_families() -> None:
    attrs = inspect("open-webui-healthy.json")
    attrs["HostConfig"]["PortBindings"] = {
        "8080/tcp": [{"HostIp": "", "HostPort": "3000"}, {"HostIp": "::", "HostPort": "3000"}],
        "9000/udp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}],
        "7000/tcp": [{"HostIp": "", "HostPort": ""}],  # a random host port: not known here
        "7001/tcp": None,
    }
    assert parse_container(attrs).ports == (("0.0.0.0", 3000), ("127.0.0.1", 9000),
                                            ("::", 3000))


def test_by_service_groups_containers() -> None:
    facts = Facts(containers=[parsed("ollama-healthy.json"), parsed("open-webui-healthy.json"),
                              parsed("ollama-unhealthy.json")])
    grouped = facts.by_service()
    assert sorted(grouped) == ["ollama", "open-webui"]
    assert [c.name for c in grouped["ollama"]] == ["lanai-ollama-1", "lanaifx-unhealthy-1"]


@pytest.mark.parametrize(("name", "kinds"), [
    ("ollama-healthy.json", []),
    ("ollama-unhealthy.json", ["restart"]),
])
def test_recorded_facts_feed_the_planner(name: str, kinds: list[str]) -> None:
    live = parsed(name)
    spec = ServiceSpec(name="ollama", hash=live.config_hash or "", image="ollama/ollama:0.24.0",
                       config={}, has_healthcheck=True)
    desired = Rendered(directory=Path("/d"), commit="c" * 40, key="k", project="lanai",
                       compose_file="compose.yaml", services={"ollama": spec})
    facts = Facts(containers=[live], images={"ollama/ollama:0.24.0": live.image_id})
    assert [a.kind for a in plan(desired, facts, applied=desired, prune=True).actions] == kinds
