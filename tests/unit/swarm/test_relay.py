"""The relay (reconciler.swarm.relay): its Caddyfile, its image, its network, and the URLs
read back from a real relay container's `docker inspect` (captured on a 3-node swarm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.core.errors import StateError
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.swarm import relay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "swarm-deploy"


def config(**extra: object) -> LanaiConfig:
    return LanaiConfig.model_validate({"mode": "swarm", "servers": [
        {"name": "box-a", "gpu": "none", "ollama": False}, {"name": "box-b"},
        {"name": "box-c"}], **extra})


def test_the_caddyfile_has_a_site_per_upstream_and_streams_ollama() -> None:
    found = relay.upstreams(["box-b", "box-c"], "open-webui:8080")
    assert relay.caddyfile(found) == (
        "{\n\tadmin off\n\tauto_https off\n}\n"
        ":10000 {\n\treverse_proxy open-webui:8080\n}\n"
        ":10001 {\n\treverse_proxy ollama-box-b:11434 {\n\t\tflush_interval -1\n\t}\n}\n"
        ":10002 {\n\treverse_proxy ollama-box-c:11434 {\n\t\tflush_interval -1\n\t}\n}\n")


def test_without_open_webui_only_the_ollamas_are_relayed() -> None:
    assert [u.key for u in relay.upstreams(["box-b"], None)] == ["box-b"]


def test_the_relay_runs_the_https_proxys_image() -> None:
    with_proxy = config(https={"names": ["ai.home.arpa"]})
    compose = {"services": {"proxy": {"image": "caddy:2.6.2"}}}
    assert relay.image_for(with_proxy, compose) == "caddy:2.6.2"


def test_else_swarm_relay_image_else_one_sentence() -> None:
    assert relay.image_for(config(swarm={"relay_image": "caddy:2.8.4"}), {}) == "caddy:2.8.4"
    with pytest.raises(StateError, match=r"^lanai.yaml: swarm.relay_image: .*push again\.$"):
        relay.image_for(config(), {"services": {}})


def test_the_network_is_the_attachable_overlay_as_swarm_names_it() -> None:
    stack = {"networks": {"internal": {"driver": "overlay", "internal": True,
                                       "attachable": True},
                          "lan": {"driver": "overlay"}}}
    assert relay.attachable_network(stack, "lanai") == "lanai_internal"
    assert relay.attachable_network({"networks": {"lan": {}}}, "lanai") is None


def test_no_shared_network_is_one_sentence() -> None:
    with pytest.raises(StateError, match="share a network"):
        relay.plan_for("lanai", "caddy:2.6.2", {"networks": {}}, ["box-b"], None)


def test_the_urls_come_from_a_real_relay_containers_inspect() -> None:
    attrs = json.loads((FIXTURES / "relay-inspect.json").read_text())[0]
    urls = relay.urls(attrs)
    ports = relay.host_ports(attrs)
    assert sorted(urls) == ["box-b", "box-c", "open-webui"]
    assert urls["box-b"] == f"http://127.0.0.1:{ports[10001]}"
    assert urls["open-webui"] == f"http://127.0.0.1:{ports[10000]}"
    assert all(port > 1024 for port in ports.values())


def test_a_port_not_published_yet_is_left_out() -> None:
    attrs = {"Config": {"Labels": {relay.LABEL_UPSTREAMS: '{"10001": "box-b"}'}},
             "NetworkSettings": {"Ports": {"10001/tcp": None}}}
    assert relay.urls(attrs) == {}


def test_the_hash_changes_with_the_caddyfile_the_image_and_the_network() -> None:
    base = relay.relay_hash("caddy:2.6.2", "a", "net1", [10001])
    assert base != relay.relay_hash("caddy:2.6.3", "a", "net1", [10001])
    assert base != relay.relay_hash("caddy:2.6.2", "b", "net1", [10001])
    assert base != relay.relay_hash("caddy:2.6.2", "a", "net2", [10001])
