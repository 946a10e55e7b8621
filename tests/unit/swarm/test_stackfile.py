"""The stack file, rule by rule (design notes 1.1: what `docker stack deploy` reads),
on the example state as Compose 2.40.3 normalized it and on small projects."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.swarm.deploy import config_hash
from reconciler.swarm.notes import Note
from reconciler.swarm.stackfile import StackFile, stack_file

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "swarm"
EXAMPLE = ROOT / "desired-state"
OLD_CLI = (20, 10)  # Debian 12's docker.io
NEW_CLI = (28, 2)
SERVERS = [
    {"name": "box-a", "gpu": "none", "manager": True},
    {"name": "box-b", "gpu": "rtx-4090", "labels": {"size": "big"}},
    {"name": "box-c", "gpu": "8GiB"},
]
UPDATE_STOP_FIRST = {"parallelism": 1, "order": "stop-first", "failure_action": "rollback",
                     "monitor": "10s"}
UPDATE_START_FIRST = {**UPDATE_STOP_FIRST, "order": "start-first"}


def example(cli: tuple[int, int] = OLD_CLI, gpu_servers: frozenset[str] = frozenset(
        {"box-b", "box-c"})) -> StackFile:
    compose = json.loads((FIXTURES / "compose-config.json").read_text())
    config = LanaiConfig.model_validate(yaml.safe_load((FIXTURES / "lanai.yaml").read_text()))
    models = ModelsConfig.model_validate(yaml.safe_load((EXAMPLE / "models.yaml").read_text()))
    raw = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
    return stack_file(compose, config, models, ollama_service="ollama",
                      gpu_servers=set(gpu_servers), cli_version=cli, raw_compose=raw)


def config(**settings: Any) -> LanaiConfig:
    return LanaiConfig.model_validate({"mode": "swarm", "servers": SERVERS, **settings})


def small(services: dict[str, Any], *, settings: dict[str, Any] | None = None,
          models: ModelsConfig | None = None, ollama: str | None = None,
          gpu_servers: set[str] | None = None, cli: tuple[int, int] = OLD_CLI,
          raw: dict[str, Any] | None = None, top: dict[str, Any] | None = None,
          material: dict[str, str] | None = None) -> StackFile:
    compose = {"name": "lanai", "services": services, **(top or {})}
    return stack_file(compose, config(**(settings or {})), models, ollama_service=ollama,
                      gpu_servers=gpu_servers or set(), cli_version=cli, raw_compose=raw,
                      hash_material=material)


def without_hash(service: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(service)
    del out["deploy"]["labels"]["io.lanai.config-hash"]
    return out


def lines(stack: StackFile) -> list[str]:
    return [n.line() for n in stack.notes]


# The example state: three servers, Ollama on box-b and box-c, everything else on box-a.

def test_the_example_has_one_ollama_per_ollama_server_and_the_rest_once() -> None:
    stack = example()
    assert list(stack.stack) == ["version", "services", "networks", "volumes"]
    assert stack.version == stack.stack["version"] == "3.9"
    assert list(stack.stack["services"]) == ["ollama-box-b", "ollama-box-c", "open-webui",
                                             "prometheus", "proxy"]
    assert stack.refusals == []


def test_the_examples_ollama_on_a_gpu_server() -> None:
    service = example().stack["services"]["ollama-box-b"]
    assert without_hash(service) == {
        "environment": {
            "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_HOST": "0.0.0.0:11434",
            "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_KV_CACHE_TYPE": "q8_0",
            "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_NUM_PARALLEL": "1"},
        "image": "ollama/ollama:0.24.0",
        # Container labels from lanai's compose override, less compose mode's hash.
        "labels": {"io.lanai.managed": "true"},
        "deploy": {
            "placement": {"constraints": ["node.labels.io.lanai.server == box-b"]},
            "restart_policy": {"condition": "any"},
            "resources": {"reservations": {"generic_resources": [
                {"discrete_resource_spec": {"kind": "gpu", "value": 1}}]}},
            "endpoint_mode": "dnsrr",
            "update_config": UPDATE_STOP_FIRST,
            "labels": {"io.lanai.managed": "true", "io.lanai.server": "box-b"},
        },
        "healthcheck": {"test": ["CMD", "ollama", "list"], "interval": "10s", "timeout": "5s",
                        "retries": 5, "start_period": "20s"},
        "volumes": [{"type": "volume", "source": "ollama", "target": "/root/.ollama"}],
        "networks": {"egress": None, "internal": None},
    }
    digest = service["deploy"]["labels"]["io.lanai.config-hash"]
    assert digest == config_hash(without_hash(service))
    assert len(digest) == 16


def test_the_examples_ollama_where_no_gpu_is_advertised_runs_on_the_cpu() -> None:
    stack = example(gpu_servers=frozenset({"box-b"}))
    deploy = stack.stack["services"]["ollama-box-c"]["deploy"]
    assert "resources" not in deploy
    assert deploy["placement"] == {"constraints": ["node.labels.io.lanai.server == box-c"]}
    assert ("ollama.deploy.resources.reservations.devices: Swarm has no device requests: "
            "ollama-box-b reserves 1 gpu generic resource (count: all becomes one GPU) and "
            "ollama-box-c runs on the CPU (no GPU advertised to Swarm there).") in lines(stack)


def test_the_examples_open_webui_reaches_every_ollama() -> None:
    service = example().stack["services"]["open-webui"]
    assert without_hash(service) == {
        "environment": {
            "DEFAULT_USER_ROLE": "pending", "ENABLE_OPENAI_API": "false",
            "WEBUI_ADMIN_EMAIL": "admin@lanai.home.arpa", "WEBUI_ADMIN_NAME": "Admin",
            "WEBUI_ADMIN_PASSWORD": "test-admin-password", "WEBUI_AUTH": "true",
            "WEBUI_SECRET_KEY": "test-secret-key",
            "OLLAMA_BASE_URLS": "http://ollama-box-b:11434;http://ollama-box-c:11434"},
        "image": "ghcr.io/open-webui/open-webui:v0.12.4",
        "labels": {"io.lanai.managed": "true"},
        "deploy": {
            "restart_policy": {"condition": "any"},
            "placement": {"constraints": ["node.role == manager"]},
            "endpoint_mode": "dnsrr",
            "update_config": UPDATE_STOP_FIRST,  # its SQLite volume
            "labels": {"io.lanai.managed": "true"},
        },
        "healthcheck": {"test": ["CMD-SHELL", "curl -fsS http://localhost:8080/health || "
                                 "exit 1"], "interval": "10s", "timeout": "5s", "retries": 6,
                        "start_period": "3m0s"},
        "volumes": [{"type": "volume", "source": "open-webui",
                     "target": "/app/backend/data"}],
        "networks": {"internal": None, "lan": None},
    }


def test_the_examples_proxy_and_prometheus() -> None:
    services = example().stack["services"]
    proxy = without_hash(services["proxy"])
    assert proxy["ports"] == [
        {"mode": "host", "target": 443, "protocol": "tcp", "published": 443},
        {"mode": "host", "target": 80, "protocol": "tcp", "published": 80}]
    assert proxy["volumes"][2] == {"type": "bind",
                                   "source": "/var/lib/lanai/render/0123456789ab/"
                                   "lanai.Caddyfile",
                                   "target": "/etc/caddy/Caddyfile", "read_only": True}
    assert proxy["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    prometheus = without_hash(services["prometheus"])
    assert prometheus["networks"] == ["hostnet"]
    assert "network_mode" not in prometheus
    assert prometheus["command"][-1] == "--web.listen-address=127.0.0.1:9090"


def test_the_examples_networks_and_volumes() -> None:
    stack = example().stack
    assert stack["networks"] == {
        "egress": {"name": "lanai_egress", "driver": "overlay",
                   "driver_opts": {"encrypted": ""}},
        # Shared by Open WebUI and the Ollamas: the relay's container joins it.
        "internal": {"name": "lanai_internal", "internal": True, "driver": "overlay",
                     "driver_opts": {"encrypted": ""}, "attachable": True},
        "lan": {"name": "lanai_lan", "driver": "overlay", "driver_opts": {"encrypted": ""}},
        "hostnet": {"external": True, "name": "host"},
    }
    # compose's names: a move from compose mode keeps Open WebUI's data and the models.
    assert stack["volumes"]["open-webui"] == {"name": "lanai_open-webui"}


def test_the_examples_notes_with_the_20_10_cli() -> None:
    start_interval = ("healthcheck.start_interval: needs the 3.12 stack format (docker CLI "
                      "26 or newer on the manager); left out, so health is first probed one "
                      "interval after start.")
    assert lines(example()) == [
        "ollama.restart: unless-stopped becomes Swarm's deploy.restart_policy (condition any).",
        f"ollama.{start_interval}",
        "ollama.services: Swarm runs one Ollama per server that has one: ollama-box-b and "
        "ollama-box-c, each pinned to its server and keeping its own models.",
        "ollama.deploy.resources.reservations.devices: Swarm has no device requests: "
        "ollama-box-b and ollama-box-c reserve 1 gpu generic resource (count: all becomes "
        "one GPU).",
        "open-webui.restart: unless-stopped becomes Swarm's deploy.restart_policy (condition "
        "any).",
        f"open-webui.{start_interval}",
        'open-webui.ports: "127.0.0.1:3000:8080": Swarm cannot publish on 127.0.0.1 only (it '
        "would listen on every address); left out in swarm mode: use the https proxy, or "
        "ssh -L to the relay.",
        "open-webui.environment.OLLAMA_BASE_URL: points at compose's single Ollama; lanai "
        "sets OLLAMA_BASE_URLS to ollama-box-b and ollama-box-c instead, one connection per "
        "server.",
        "open-webui.depends_on: Swarm starts services together; lanai leaves it out of the "
        "stack and waits until ollama-box-b and ollama-box-c are healthy.",
        "prometheus.restart: unless-stopped becomes Swarm's deploy.restart_policy (condition "
        "any).",
        f"prometheus.{start_interval}",
        "prometheus.network_mode: host becomes Swarm's host network (external network host), "
        "on the manager like the service.",
        "proxy.restart: unless-stopped becomes Swarm's deploy.restart_policy (condition any).",
        f"proxy.{start_interval}",
        "proxy.ports: 443:443, 80:80: published in host mode on box-a (Swarm's routing mesh "
        "needs IPVS, which lanai does not rely on).",
    ]


def test_a_new_cli_keeps_start_interval_in_the_3_12_format() -> None:
    stack = example(cli=NEW_CLI)
    assert stack.version == stack.stack["version"] == "3.12"
    check = stack.stack["services"]["ollama-box-c"]["healthcheck"]
    assert check["start_interval"] == "1s"
    assert not [n for n in stack.notes if n.key == "healthcheck.start_interval"]


def test_the_dump_is_the_stack_without_yaml_anchors() -> None:
    stack = example()
    text = stack.dump()
    assert text.startswith("version: '3.9'\nservices:\n  ollama-box-b:\n")
    assert "&id" not in text and "*id" not in text  # the Ollamas share values
    assert yaml.safe_load(text) == stack.stack


def test_the_same_input_gives_the_same_hashes_and_a_change_only_its_services() -> None:
    def hashes(stack: StackFile) -> dict[str, str]:
        return {name: s["deploy"]["labels"]["io.lanai.config-hash"]
                for name, s in stack.stack["services"].items()}

    before = hashes(example())
    assert hashes(example()) == before
    assert len(set(before.values())) == len(before)
    compose = json.loads((FIXTURES / "compose-config.json").read_text())
    compose["services"]["proxy"]["image"] = "caddy:2.6.3"
    config_ = LanaiConfig.model_validate(yaml.safe_load((FIXTURES / "lanai.yaml").read_text()))
    after = hashes(stack_file(compose, config_, None, ollama_service="ollama",
                              gpu_servers={"box-b", "box-c"}, cli_version=OLD_CLI))
    changed = {name for name in before if before[name] != after[name]}
    # Without models.yaml the Ollamas keep compose's environment: the same here.
    assert changed == {"proxy"}


# Row by row: design notes 1.1.

def test_top_level_name_and_profiles_are_left_out() -> None:
    stack = small({"web": {"image": "busybox:1", "profiles": ["monitoring"]}})
    assert "name" not in stack.stack
    assert "profiles" not in stack.stack["services"]["web"]
    assert stack.notes == []


@pytest.mark.parametrize("depends_on", [
    ["db"], {"db": {"condition": "service_healthy", "required": True}}])
def test_depends_on_is_left_out_and_lanai_waits_for_health(depends_on: Any) -> None:
    stack = small({"web": {"image": "busybox:1", "depends_on": depends_on},
                   "db": {"image": "busybox:1"}})
    assert "depends_on" not in stack.stack["services"]["web"]
    assert stack.notes == [Note("web", "depends_on", "Swarm starts services together; lanai "
                                "leaves it out of the stack and waits until db is healthy.")]


@pytest.mark.parametrize("restart,policy", [
    ("always", {"condition": "any"}),
    ("unless-stopped", {"condition": "any"}),
    ("no", {"condition": "none"}),
    ("on-failure", {"condition": "on-failure"}),
    ("on-failure:3", {"condition": "on-failure", "max_attempts": 3}),
])
def test_restart_becomes_the_restart_policy(restart: str, policy: dict[str, Any]) -> None:
    stack = small({"web": {"image": "busybox:1", "restart": restart}})
    service = stack.stack["services"]["web"]
    assert "restart" not in service
    assert service["deploy"]["restart_policy"] == policy
    assert stack.notes == [Note("web", "restart", f"{restart} becomes Swarm's deploy."
                                f"restart_policy (condition {policy['condition']}).")]


def test_a_restart_policy_of_the_users_own_wins() -> None:
    stack = small({"web": {"image": "busybox:1", "restart": "always",
                           "deploy": {"restart_policy": {"condition": "on-failure",
                                                         "delay": "5s"}}}})
    assert stack.stack["services"]["web"]["deploy"]["restart_policy"] == {
        "condition": "on-failure", "delay": "5s"}
    assert stack.notes == [Note("web", "restart", "left out: Swarm follows the service's own "
                                "deploy.restart_policy.")]


def test_container_name_is_left_out() -> None:
    stack = small({"web": {"image": "busybox:1", "container_name": "my-web"}})
    assert "container_name" not in stack.stack["services"]["web"]
    assert stack.notes == [Note("web", "container_name", "Swarm names task containers itself "
                                "(web.1.<task id>); left out in swarm mode.")]


@pytest.mark.parametrize("key,value", [
    ("devices", [{"source": "/dev/dri", "target": "/dev/dri", "permissions": "rwm"}]),
    ("privileged", True),
    ("security_opt", ["seccomp=unconfined"]),
    ("pid", "host"),
    ("ipc", "host"),
    ("userns_mode", "host"),
    ("cgroup", "host"),
    ("cgroup_parent", "/lanai"),
])
def test_host_access_is_refused(key: str, value: Any) -> None:
    stack = small({"web": {"image": "busybox:1", key: value}})
    assert key not in stack.stack["services"]["web"]
    assert stack.refusals == [Note("web", key, f"Swarm services cannot have {key} (docker "
                                   "stack deploy ignores it), so lanai cannot grant this host "
                                   "access; remove it in swarm mode, or run this stack in "
                                   "compose mode", refused=True)]


def test_host_access_switched_off_is_no_refusal() -> None:
    stack = small({"web": {"image": "busybox:1", "privileged": False, "security_opt": []}})
    assert stack.notes == []


GPU = {"resources": {"reservations": {"devices": [
    {"capabilities": ["gpu"], "driver": "nvidia", "count": -1}]}}}


def ollama_project(deploy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ollama": {"image": "ollama/ollama:0.24.0", "deploy": deploy or copy.deepcopy(GPU),
                       "networks": {"internal": None}}}


def test_the_gpu_reservation_becomes_a_generic_resource_on_gpu_servers_only() -> None:
    stack = small(ollama_project(), ollama="ollama", gpu_servers={"box-c"})
    services = stack.stack["services"]
    assert services["ollama-box-c"]["deploy"]["resources"] == {"reservations": {
        "generic_resources": [{"discrete_resource_spec": {"kind": "gpu", "value": 1}}]}}
    assert "resources" not in services["ollama-box-b"]["deploy"]
    assert services["ollama-box-c"]["deploy"]["update_config"] == UPDATE_STOP_FIRST
    assert services["ollama-box-b"]["deploy"]["update_config"] == UPDATE_START_FIRST


def test_a_gpu_count_is_kept() -> None:
    deploy = {"resources": {"reservations": {"cpus": "1", "devices": [
        {"capabilities": ["gpu"], "driver": "nvidia", "count": 2}]}}}
    stack = small(ollama_project(deploy), ollama="ollama", gpu_servers={"box-b", "box-c"})
    assert stack.stack["services"]["ollama-box-b"]["deploy"]["resources"] == {
        "reservations": {"cpus": "1", "generic_resources": [
            {"discrete_resource_spec": {"kind": "gpu", "value": 2}}]}}
    assert ("ollama.deploy.resources.reservations.devices: Swarm has no device requests: "
            "ollama-box-b and ollama-box-c reserve 2 gpu generic resources.") in lines(stack)


def test_gpu_off_reserves_none() -> None:
    stack = small(ollama_project(), settings={"gpu": "off"}, ollama="ollama",
                  gpu_servers={"box-b", "box-c"})
    assert all("resources" not in s["deploy"] for s in stack.stack["services"].values())


def test_gpu_required_on_a_server_without_one_is_refused() -> None:
    stack = small(ollama_project(), settings={"gpu": "required"}, ollama="ollama",
                  gpu_servers={"box-b"})
    assert stack.refusals == [Note(
        "ollama", "deploy.resources.reservations.devices", "lanai.yaml says gpu: required, "
        "but server box-c advertises no GPU to Swarm; run bootstrap on it with its NVIDIA "
        "driver installed, or set gpu: auto", refused=True)]


def test_a_gpu_reservation_on_the_manager_follows_the_manager() -> None:
    stack = small({"ml": {"image": "busybox:1", "deploy": copy.deepcopy(GPU)}},
                  settings={"servers": [{"name": "box-a", "gpu": "rtx-3090"}]},
                  gpu_servers={"box-a"})
    assert stack.stack["services"]["ml"]["deploy"]["resources"] == {"reservations": {
        "generic_resources": [{"discrete_resource_spec": {"kind": "gpu", "value": 1}}]}}
    assert lines(stack) == ["ml.deploy.resources.reservations.devices: Swarm has no device "
                            "requests: ml reserves 1 gpu generic resource (count: all becomes "
                            "one GPU)."]


CHECK = {"test": ["CMD", "true"], "interval": "10s", "timeout": "5s", "retries": 3,
         "start_period": "10s", "start_interval": "1s"}


def test_start_interval_needs_the_3_12_format_and_a_cli_26() -> None:
    old = small({"web": {"image": "busybox:1", "healthcheck": dict(CHECK)}})
    assert old.version == "3.9"
    assert old.stack["services"]["web"]["healthcheck"] == {
        k: v for k, v in CHECK.items() if k != "start_interval"}
    assert [n.key for n in old.notes] == ["healthcheck.start_interval"]
    new = small({"web": {"image": "busybox:1", "healthcheck": dict(CHECK)}}, cli=(26, 1))
    assert new.version == "3.12"
    assert new.stack["services"]["web"]["healthcheck"] == CHECK
    assert new.notes == []


def test_a_new_cli_without_start_interval_writes_3_9() -> None:
    check = {k: v for k, v in CHECK.items() if k != "start_interval"}
    assert small({"web": {"image": "busybox:1", "healthcheck": check}}, cli=NEW_CLI).version \
        == "3.9"


def test_secret_values_are_kept_but_not_hashed() -> None:
    """compose config inlines env files into environment: the stack spec carries them (as
    `docker inspect` does in compose mode); the hash label must not."""
    def web(secret: str, material: str = "") -> dict[str, Any]:
        stack = small({"web": {"image": "busybox:1", "environment": {"KEY": secret}}},
                      settings={"secrets": {"web": ["KEY"]}},
                      material={"web": material} if material else None)
        return stack.stack["services"]["web"]

    one, two = web("s3cret"), web("other")
    assert one["environment"] == {"KEY": "s3cret"}
    assert one["deploy"]["labels"] == two["deploy"]["labels"]
    assert web("s3cret", "digest-1")["deploy"]["labels"] != one["deploy"]["labels"]


def test_file_configs_and_secrets_are_kept_inline_ones_refused() -> None:
    stack = small({"web": {"image": "busybox:1", "configs": [{"source": "c", "target": "/c"}],
                           "secrets": [{"source": "s", "target": "/run/secrets/s"}]}},
                  top={"configs": {"c": {"name": "lanai_c", "file": "/r/c.txt"},
                                   "i": {"name": "lanai_i", "content": "hi"}},
                       "secrets": {"s": {"name": "lanai_s", "file": "/r/s.txt"},
                                   "e": {"name": "lanai_e", "environment": "HOME"}}})
    assert stack.stack["configs"] == {"c": {"name": "lanai_c", "file": "/r/c.txt"}}
    assert stack.stack["secrets"] == {"s": {"name": "lanai_s", "file": "/r/s.txt"}}
    assert stack.stack["services"]["web"]["configs"] == [{"source": "c", "target": "/c"}]
    assert stack.refusals == [
        Note(None, "configs.i", "Swarm takes configs from a file only, not from content:; "
             "write it to a file in the state repo and name it with file:", refused=True),
        Note(None, "secrets.e", "Swarm takes secrets from a file only, not from "
             "environment:; write it to a file on the manager and name it with file:",
             refused=True)]


def test_bind_mounts_lose_what_the_v3_schema_lacks_and_stay_on_the_manager() -> None:
    stack = small({"web": {"image": "busybox:1", "volumes": [
        {"type": "bind", "source": "/r/conf", "target": "/conf", "read_only": True,
         "bind": {"create_host_path": True}},
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1000"}},
        {"type": "volume", "source": "v", "target": "/v", "volume": {"nocopy": True}}]}})
    service = stack.stack["services"]["web"]
    assert service["volumes"] == [
        {"type": "bind", "source": "/r/conf", "target": "/conf", "read_only": True},
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": 1000}},
        {"type": "volume", "source": "v", "target": "/v", "volume": {"nocopy": True}}]
    assert service["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert stack.notes == []


def test_a_mount_option_the_v3_schema_lacks_is_refused() -> None:
    stack = small({"web": {"image": "busybox:1", "volumes": [
        {"type": "volume", "source": "v", "target": "/v", "volume": {"subpath": "x"}}]}})
    assert "volumes" not in stack.stack["services"]["web"]
    assert stack.refusals == [Note("web", "volumes", "/v: the stack format has no subpath on "
                                   "a mount; remove it in swarm mode", refused=True)]


def test_network_mode_host_is_swarms_host_network() -> None:
    stack = small({"prom": {"image": "busybox:1", "network_mode": "host"}})
    assert stack.stack["services"]["prom"]["networks"] == ["hostnet"]
    assert stack.stack["networks"] == {"hostnet": {"external": True, "name": "host"}}
    assert stack.stack["services"]["prom"]["deploy"]["placement"] == {
        "constraints": ["node.role == manager"]}


def test_another_network_mode_is_refused() -> None:
    stack = small({"web": {"image": "busybox:1", "network_mode": "service:db"}})
    assert stack.refusals == [Note("web", "network_mode", "service:db has no Swarm "
                                   "equivalent; join the service to a network instead",
                                   refused=True)]


def port(published: str | None, target: int, host_ip: str | None = None,
         protocol: str = "tcp") -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "ingress", "target": target, "protocol": protocol}
    if published is not None:
        out["published"] = published
    if host_ip is not None:
        out["host_ip"] = host_ip
    return out


def test_loopback_ports_are_left_out_and_lan_ports_published_in_host_mode() -> None:
    stack = small({"web": {"image": "busybox:1", "ports": [
        port("3000", 8080, "127.0.0.1"), port("82", 80, "::1"), port("443", 443, "0.0.0.0"),
        port("53", 53, protocol="udp"), port(None, 9999)]}})
    service = stack.stack["services"]["web"]
    assert service["ports"] == [
        {"mode": "host", "target": 443, "protocol": "tcp", "published": 443},
        {"mode": "host", "target": 53, "protocol": "udp", "published": 53},
        {"mode": "host", "target": 9999, "protocol": "tcp"}]
    assert service["deploy"]["update_config"] == UPDATE_STOP_FIRST  # the port is held
    assert lines(stack) == [
        'web.ports: "127.0.0.1:3000:8080": Swarm cannot publish on 127.0.0.1 only (it would '
        "listen on every address); left out in swarm mode: use the https proxy, or ssh -L to "
        "the relay.",
        'web.ports: "[::1]:82:80": Swarm cannot publish on ::1 only (it would listen on every '
        "address); left out in swarm mode: use the https proxy, or ssh -L to the relay.",
        "web.ports: 443:443, 53:53/udp, 9999: published in host mode on box-a (Swarm's "
        "routing mesh needs IPVS, which lanai does not rely on).",
    ]


def test_a_port_on_one_lan_address_is_refused() -> None:
    stack = small({"web": {"image": "busybox:1", "ports": [port("81", 80, "192.168.1.10")]}})
    assert "ports" not in stack.stack["services"]["web"]
    assert stack.refusals == [Note("web", "ports", '"192.168.1.10:81:80": Swarm cannot '
                                   "publish on one address only (192.168.1.10), it would "
                                   "listen on every address of the server; remove the "
                                   "address or the port in swarm mode", refused=True)]


def test_an_explicit_ingress_port_is_refused() -> None:
    """compose's normalized output says `mode: ingress` on every port; the user's file
    tells whether they asked for it."""
    raw = {"services": {"web": {"ports": [{"target": 80, "published": 80,
                                           "mode": "ingress"}]}}}
    stack = small({"web": {"image": "busybox:1", "ports": [port("80", 80)]}}, raw=raw)
    assert stack.refusals == [Note("web", "ports", '"80:80" asks for mode: ingress, Swarm\'s '
                                   "routing mesh, which needs IPVS (missing on many kernels) "
                                   "and cannot serve dnsrr services; remove the mode and "
                                   "lanai publishes it in host mode", refused=True)]
    short = {"services": {"web": {"ports": ["80:80"]}}}
    assert small({"web": {"image": "busybox:1", "ports": [port("80", 80)]}},
                 raw=short).refusals == []


def test_mem_limit_and_cpus_become_resource_limits() -> None:
    stack = small({"web": {"image": "busybox:1", "mem_limit": "536870912", "cpus": 1.5}})
    service = stack.stack["services"]["web"]
    assert "mem_limit" not in service and "cpus" not in service
    assert service["deploy"]["resources"] == {"limits": {"memory": "536870912",
                                                         "cpus": "1.5"}}
    assert lines(stack) == [
        "web.mem_limit: becomes deploy.resources.limits.memory, where Swarm reads it.",
        "web.cpus: becomes deploy.resources.limits.cpus, where Swarm reads it."]


def test_networks_are_overlays_encrypted_per_lanai_yaml() -> None:
    top = {"networks": {"a": {"name": "lanai_a", "ipam": {}},
                        "b": {"name": "lanai_b", "driver": "bridge"},
                        "x": {"name": "shared", "external": True}}}
    services = {"web": {"image": "busybox:1", "networks": {"a": None, "b": {"aliases": ["w"]},
                                                          "x": None}}}
    encrypted = small(services, top=top)
    assert encrypted.stack["networks"] == {
        "a": {"name": "lanai_a", "driver": "overlay", "driver_opts": {"encrypted": ""}},
        "b": {"name": "lanai_b", "driver": "overlay", "driver_opts": {"encrypted": ""}},
        "x": {"name": "shared", "external": True}}
    assert encrypted.stack["services"]["web"]["networks"] == {"a": None, "b": {"aliases": ["w"]},
                                                              "x": None}
    assert lines(encrypted) == ["networks.b: driver bridge reaches one server only; lanai "
                                "makes it an overlay network."]
    plain = small(services, top=top, settings={"swarm": {"encrypt": False}})
    assert plain.stack["networks"]["a"] == {"name": "lanai_a", "driver": "overlay"}


def test_update_config_defaults_and_the_users_keys_win() -> None:
    stack = small({"stateless": {"image": "busybox:1"},
                   "mine": {"image": "busybox:1", "deploy": {"update_config": {
                       "order": "start-first", "delay": "5s"}},
                            "volumes": [{"type": "volume", "source": "v", "target": "/v"}]}})
    services = stack.stack["services"]
    assert services["stateless"]["deploy"]["update_config"] == UPDATE_START_FIRST
    assert services["mine"]["deploy"]["update_config"] == {**UPDATE_START_FIRST,
                                                           "delay": "5s"}


def test_every_service_is_dnsrr() -> None:
    stack = small({"web": {"image": "busybox:1", "deploy": {"endpoint_mode": "vip"}}})
    assert stack.stack["services"]["web"]["deploy"]["endpoint_mode"] == "dnsrr"
    assert lines(stack) == ["web.deploy.endpoint_mode: vip needs IPVS in the kernel; lanai "
                            "uses dnsrr (DNS round robin)."]


def test_lanais_labels_are_on_the_service_and_compose_modes_hash_is_not_kept() -> None:
    stack = small({"web": {"image": "busybox:1", "labels": {
        "io.lanai.managed": "true", "io.lanai.config-hash": "0000", "mine": "x"},
        "deploy": {"labels": {"team": "home"}}}})
    service = stack.stack["services"]["web"]
    assert service["labels"] == {"io.lanai.managed": "true", "mine": "x"}
    labels = service["deploy"]["labels"]
    assert list(labels) == ["team", "io.lanai.managed", "io.lanai.config-hash"]
    assert labels["io.lanai.config-hash"] == config_hash(
        {**service, "deploy": {**service["deploy"], "labels": {
            "team": "home", "io.lanai.managed": "true"}}})


def test_open_webui_gets_one_url_per_ollama_server_in_lanai_yaml_order() -> None:
    servers = [{"name": "box-c", "gpu": "8GiB"}, {"name": "box-a", "gpu": "none"},
               {"name": "box-b", "gpu": "none", "ollama": True}]
    stack = small({**ollama_project(), "webui": {
        "image": "ghcr.io/open-webui/open-webui:v0.12.4",
        "environment": {"OLLAMA_BASE_URL": "http://ollama:11434", "WEBUI_AUTH": "true"},
        "networks": {"internal": None}}},
        settings={"servers": servers}, ollama="ollama",
        top={"networks": {"internal": {"name": "lanai_internal", "internal": True}}})
    services = stack.stack["services"]
    assert list(services) == ["ollama-box-c", "ollama-box-b", "webui"]
    assert services["webui"]["environment"] == {
        "WEBUI_AUTH": "true",
        "OLLAMA_BASE_URLS": "http://ollama-box-c:11434;http://ollama-box-b:11434"}
    assert stack.stack["networks"]["internal"]["attachable"] is True


def test_a_service_not_pointed_at_ollama_keeps_its_environment() -> None:
    env = {"OLLAMA_BASE_URL": "http://elsewhere:11434"}
    stack = small({**ollama_project(), "other": {"image": "busybox:1", "environment": env}},
                  ollama="ollama")
    assert stack.stack["services"]["other"]["environment"] == env


def test_ollamas_settings_come_from_models_yaml() -> None:
    models = ModelsConfig.model_validate({"budget": {"max_loaded": 3},
                                          "ollama": {"keep_alive": "5m"}})
    project = ollama_project()
    project["ollama"]["environment"] = {"OLLAMA_HOST": "0.0.0.0:11434",
                                        "OLLAMA_KEEP_ALIVE": "30m"}
    stack = small(project, models=models, ollama="ollama")
    assert stack.stack["services"]["ollama-box-b"]["environment"] == {
        "OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "5m",
        "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0",
        "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "3"}


@pytest.mark.parametrize("key,value", [("gpus", "all"), ("runtime", "nvidia"),
                                       ("links", ["db"]), ("build", {"context": "."})])
def test_a_key_the_stack_format_lacks_is_refused(key: str, value: Any) -> None:
    stack = small({"web": {"image": "busybox:1", key: value}})
    assert key not in stack.stack["services"]["web"]
    assert stack.refusals == [Note("web", key, f"docker stack deploy has no {key} (the v3 "
                                   "stack format lacks it); remove it in swarm mode",
                                   refused=True)]


def test_extra_hosts_in_the_stack_loaders_syntax() -> None:
    stack = small({"web": {"image": "busybox:1", "extra_hosts": ["box=192.168.1.2"]}})
    assert stack.stack["services"]["web"]["extra_hosts"] == ["box:192.168.1.2"]


def test_expose_and_pull_policy_are_left_out() -> None:
    stack = small({"web": {"image": "busybox:1", "expose": ["9000"],
                           "pull_policy": "always"}})
    assert {"expose", "pull_policy"}.isdisjoint(stack.stack["services"]["web"])
    assert [n.key for n in stack.notes] == ["expose", "pull_policy"]


def test_a_note_reads_as_one_line() -> None:
    assert Note("web", "ports", "left out.").line() == "web.ports: left out."
    assert Note(None, "networks.a", "made an overlay.").line() == "networks.a: made an overlay."


def test_a_bind_mount_on_ollama_must_exist_on_every_ollama_server() -> None:
    project = ollama_project()
    project["ollama"]["volumes"] = [{"type": "bind", "source": "/srv/models",
                                     "target": "/models"}]
    stack = small(project, ollama="ollama", gpu_servers={"box-b", "box-c"})
    assert "ollama.volumes: /srv/models is a path on the host: it must exist on each server " \
        "that runs ollama-box-b and ollama-box-c (Swarm copies no files)." in lines(stack)


def test_the_input_is_left_as_it_was() -> None:
    compose = json.loads((FIXTURES / "compose-config.json").read_text())
    before = copy.deepcopy(compose)
    config_ = LanaiConfig.model_validate(yaml.safe_load((FIXTURES / "lanai.yaml").read_text()))
    stack_file(compose, config_, None, ollama_service="ollama", gpu_servers={"box-b"},
               cli_version=OLD_CLI)
    assert compose == before
