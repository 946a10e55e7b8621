"""Swarm mode's render: the example state with three servers through the real
`docker compose config` (no engine needed), the stack file written beside it."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from reconciler.core.errors import StateError
from reconciler.desired.load import load_state
from reconciler.stack.render import GENERATED, STACK_FILE, Rendered, load_rendered, render
from reconciler.swarm import render as swarm_render
from reconciler.swarm.facts import parse_node
from tests.unit.compose_cli import needs_compose

EXAMPLE_STATE = Path(__file__).resolve().parents[3] / "desired-state"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "swarm-deploy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET = "unit-test-secret-4f1c9a"
SECRETS = {"WEBUI_SECRET_KEY": SECRET, "WEBUI_ADMIN_PASSWORD": "unit-test-admin-7d2e"}
SERVERS = """mode: swarm
servers:
  - {name: box-a, gpu: none, ollama: false}
  - {name: box-b, gpu: 24GiB}
  - {name: box-c, gpu: 24GiB}
swarm: {encrypt: false}
"""


pytestmark = needs_compose


def swarm_state(tmp_path: Path, extra: str = "") -> Path:
    target = tmp_path / "state"
    shutil.copytree(EXAMPLE_STATE, target)
    lanai = target / "lanai.yaml"
    lanai.write_text(lanai.read_text() + "\n" + SERVERS + extra)
    webui = target / "webui.yaml"  # generated in swarm mode: one connection per server
    webui.write_text(webui.read_text().replace("  ollama: [http://ollama:11434]\n", ""))
    return target


def do_render(directory: Path, gpus: set[str]) -> Rendered:
    state = load_state(directory, COMMIT)
    finish = swarm_render.finisher(state, gpus=gpus, cli_version=(26, 1),
                                   files=directory.parent / "home" / swarm_render.FILES_DIR)
    return render(state, SECRETS, directory, COMMIT, "k1", gpu_runtime=True, salt=b"salt",
                  finish=finish)


def nodes() -> list[dict]:
    return json.loads((FIXTURES / "nodes.json").read_text())


def test_gpu_servers_are_the_nodes_that_advertise_gpus() -> None:
    parsed = [parse_node(n) for n in nodes()]
    assert swarm_render.gpu_servers(parsed) == {"box-b"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    directory = swarm_state(tmp_path_factory.mktemp("swarm"))
    return do_render(directory, swarm_render.gpu_servers(parse_node(n) for n in nodes()))


def test_the_stack_file_is_written_readable_by_root_only(rendered: Rendered) -> None:
    path = rendered.directory / STACK_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET in path.read_text()  # compose config inlined it: hence 0600


def test_rendered_records_the_mode_the_file_and_each_stack_service(rendered: Rendered
                                                                   ) -> None:
    assert (rendered.mode, rendered.stack_file) == ("swarm", STACK_FILE)
    assert sorted(rendered.stack_services) == ["ollama-box-b", "ollama-box-c", "open-webui",
                                               "proxy"]
    assert rendered.stack_services["ollama-box-b"]["server"] == "box-b"
    assert rendered.stack_services["open-webui"]["server"] is None
    stack = yaml.safe_load((rendered.directory / STACK_FILE).read_text())
    for name, spec in rendered.stack_services.items():
        assert stack["services"][name]["deploy"]["labels"]["io.lanai.config-hash"] == \
            spec["hash"]
    assert SECRET not in json.dumps(rendered.stack_services)


def test_only_the_server_whose_node_advertises_a_gpu_reserves_one(rendered: Rendered
                                                                  ) -> None:
    stack = yaml.safe_load((rendered.directory / STACK_FILE).read_text())

    def reservations(name: str) -> dict:
        return (stack["services"][name]["deploy"].get("resources") or {}).get(
            "reservations") or {}

    assert reservations("ollama-box-b") == {
        "generic_resources": [{"discrete_resource_spec": {"kind": "gpu", "value": 1}}]}
    assert reservations("ollama-box-c") == {}


def test_desired_json_keeps_the_swarm_fields(rendered: Rendered) -> None:
    loaded = load_rendered(rendered.directory)
    assert loaded is not None
    assert (loaded.mode, loaded.stack_file, loaded.stack_services) == (
        rendered.mode, rendered.stack_file, rendered.stack_services)


def test_an_old_desired_json_loads_as_compose_mode(rendered: Rendered) -> None:
    data = rendered.to_json()
    for key in ("mode", "stack_file", "stack_services"):
        del data[key]
    old = Rendered.from_json(rendered.directory, data)
    assert (old.mode, old.stack_file, old.stack_services) == ("compose", None, {})


def test_a_commit_holding_the_stack_file_name_is_refused() -> None:
    assert STACK_FILE in GENERATED


def test_what_swarm_cannot_honour_fails_the_render_naming_compose_yaml(tmp_path: Path
                                                                        ) -> None:
    directory = swarm_state(tmp_path)
    compose = directory / "compose.yaml"
    compose.write_text(compose.read_text().replace(
        "  egress: {}\n", "  egress:\n    driver: bridge\n    enable_ipv6: true\n"))
    with pytest.raises(StateError) as caught:
        do_render(directory, set())
    message = caught.value.message
    assert message.startswith("compose.yaml:")
    assert "networks.egress" in message and "enable_ipv6" in message
    assert "push again" in message
    assert not (directory / STACK_FILE).exists()


def test_a_state_without_a_proxy_needs_a_relay_image(tmp_path: Path) -> None:
    directory = swarm_state(tmp_path)
    lanai = directory / "lanai.yaml"
    text = lanai.read_text()
    start = text.index("\nhttps:")
    end = text.index("\nnotify:")
    lanai.write_text(text[:start] + text[end:])
    with pytest.raises(StateError, match=r"swarm.relay_image.*e\.g\. caddy:2\.6\.2"):
        do_render(directory, set())


def test_the_render_inputs_name_the_gpus_and_the_cli() -> None:
    assert swarm_render.render_inputs({"box-c", "box-b"}, (26, 1)) == "gpu=box-b,box-c;cli=26.1"


def test_the_proxys_caddyfile_is_mounted_from_a_copy_named_by_its_content(
        tmp_path: Path) -> None:
    """Two commits, two deployment directories: the same bind source and spec for the
    proxy (Swarm would restart it for a new path alone), outside either directory."""
    sources, hashes = [], []
    for name in ("one", "two"):
        directory = swarm_state(tmp_path / name)
        home = tmp_path / "home"
        state = load_state(directory, COMMIT)
        rendered = render(state, SECRETS, directory, COMMIT, "k1", gpu_runtime=True,
                          salt=b"salt", finish=swarm_render.finisher(
                              state, gpus=set(), cli_version=(26, 1),
                              files=home / swarm_render.FILES_DIR))
        stack = yaml.safe_load((directory / STACK_FILE).read_text())
        binds = [v for v in stack["services"]["proxy"].get("volumes") or []
                 if v.get("type") == "bind" and v["source"].endswith("Caddyfile")]
        assert len(binds) == 1, stack["services"]["proxy"]
        sources.append(binds[0]["source"])
        hashes.append(rendered.stack_services["proxy"]["hash"])
        copied = Path(binds[0]["source"])
        assert copied.read_text() == (directory / copied.name).read_text()
    assert sources[0] == sources[1] and hashes[0] == hashes[1]
    assert sources[0].startswith(str(tmp_path / "home" / swarm_render.FILES_DIR))
