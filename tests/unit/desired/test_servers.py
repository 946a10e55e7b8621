"""Swarm mode's state: servers in lanai.yaml, `place` in models.yaml, and the problems
either can have, each with its file, key and line. On copies of the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import servers
from reconciler.desired.load import InvalidState, load_state
from reconciler.desired.servers import GPU_CLASSES, Server

THREE_SERVERS = """\
mode: swarm
servers:
  - name: box-a
    ssh: admin@box-a.lan
    gpu: none
  - name: box-b
    ssh: admin@box-b.lan
    gpu: rtx-4090
    labels: {size: big}
  - {name: box-c, ssh: admin@box-c.lan, gpu: 8GiB}
"""
WEBUI_OLLAMA = "  ollama: [http://ollama:11434]\n"
PHI3 = "  - name: phi3:3.8b-mini-4k-instruct-q4_K_M      # small and quick; 4k context by design\n"


def problems_of(root: Path) -> list[str]:
    with pytest.raises(InvalidState) as info:
        load_state(root)
    return [str(p) for p in info.value.problems]


@pytest.fixture
def swarm_dir(state_dir: Path, edit) -> Path:
    """The example as three servers: a CPU-only manager and two GPU boxes."""
    text = (state_dir / "lanai.yaml").read_text(encoding="utf-8")
    (state_dir / "lanai.yaml").write_text(THREE_SERVERS + text, encoding="utf-8")
    edit("webui.yaml", WEBUI_OLLAMA, "")  # generated in swarm mode
    return state_dir


def test_one_box_needs_no_servers(state_dir: Path) -> None:
    config = load_state(state_dir).config
    assert config.mode == "compose"
    assert config.servers == []
    assert config.manager is None


def test_three_servers_load_with_their_gpus_and_roles(swarm_dir: Path) -> None:
    config = load_state(swarm_dir).config
    assert [s.name for s in config.servers] == ["box-a", "box-b", "box-c"]
    assert config.manager is not None and config.manager.name == "box-a"  # the first
    a, b, c = config.servers
    assert (a.runs_ollama, b.runs_ollama, c.runs_ollama) == (False, True, True)
    assert (a.vram, b.vram, c.vram) == (None, 24 * 1024**3, 8 * 1024**3)
    assert b.describe_gpu() == "rtx-4090 24 GiB"
    assert config.swarm.encrypt is True  # on unless switched off


def test_place_puts_models_on_servers_and_labels(swarm_dir: Path, edit) -> None:
    edit("models.yaml", PHI3, "  - name: phi3:3.8b-mini-4k-instruct-q4_K_M\n"
         "    place: box-c\n  - name: qwen2.5:32b-instruct-q4_K_M\n"
         "    place: [label:size=big]\n    allow_cpu: true\n")
    state = load_state(swarm_dir)
    assert state.models is not None
    entries = [(m.name, m.place) for m in state.models.local]
    assert servers.placement(entries, state.config.servers) == {
        "box-b": ["llama3.1:8b-instruct-q4_K_M", "qwen2.5:32b-instruct-q4_K_M",
                  "deepseek-r1:7b-qwen-distill-q4_K_M", "nomic-embed-text:v1.5"],
        "box-c": ["llama3.1:8b-instruct-q4_K_M", "phi3:3.8b-mini-4k-instruct-q4_K_M",
                  "deepseek-r1:7b-qwen-distill-q4_K_M", "nomic-embed-text:v1.5"],
    }


def test_a_place_that_matches_no_ollama_server_names_why(swarm_dir: Path, edit) -> None:
    line = edit("models.yaml", PHI3, "  - name: phi3:3.8b-mini-4k-instruct-q4_K_M\n"
                "    place: [box-a, box-x, label:size=small]\n")
    assert problems_of(swarm_dir) == [
        f"models.yaml:{line + 1}: local[1].place[0]: server 'box-a' runs no Ollama (gpu: none "
        "or ollama: false in lanai.yaml); place the model elsewhere or set ollama: true there",
        f"models.yaml:{line + 1}: local[1].place[1]: 'box-x' is not a server in lanai.yaml "
        "(servers: box-a, box-b, box-c); write a server name, or label:KEY=VALUE",
        f"models.yaml:{line + 1}: local[1].place[2]: no server running Ollama has the label "
        "'size=small'; label one under servers[].labels in lanai.yaml, or fix the entry",
    ]


@pytest.mark.parametrize(("place", "message"), [
    ("[]", "an empty place puts the model nowhere; name a server, or remove place for every "
     "server"),
    ("label:size", "'label:size': write a label as label:KEY=VALUE, e.g. label:size=big"),
])
def test_a_malformed_place_is_refused(swarm_dir: Path, edit, place: str, message: str) -> None:
    line = edit("models.yaml", PHI3, f"  - name: phi3:3.8b-mini-4k-instruct-q4_K_M\n"
                f"    place: {place}\n")
    assert problems_of(swarm_dir) == [f"models.yaml:{line + 1}: local[1].place: {message}"
                                      + (f" (got {place!r})" if place != "[]" else "")]


def test_place_on_one_box_asks_for_swarm_mode(state_dir: Path, edit) -> None:
    line = edit("models.yaml", PHI3, "  - name: phi3:3.8b-mini-4k-instruct-q4_K_M\n"
                "    place: box-c\n")
    assert problems_of(state_dir) == [
        f"models.yaml:{line + 1}: local[1].place: place needs mode: swarm in lanai.yaml (one "
        "box holds every model); remove it, or switch to swarm mode"]


def test_generated_ollama_connections_cannot_be_written_in_swarm_mode(
        state_dir: Path) -> None:
    text = (state_dir / "lanai.yaml").read_text(encoding="utf-8")
    (state_dir / "lanai.yaml").write_text(THREE_SERVERS + text, encoding="utf-8")
    assert problems_of(state_dir) == [
        "webui.yaml:19: connections.ollama: in swarm mode lanai writes Open WebUI's Ollama "
        "connections itself (one per server running Ollama); remove this key"]


@pytest.mark.parametrize(("servers_yaml", "expected"), [
    ("mode: swarm\n", ["lanai.yaml:1: servers: mode: swarm needs the servers listed here "
                       "(name, ssh, and which one is the manager)"]),
    ("servers: [{name: a}, {name: b}]\n",
     ["lanai.yaml:1: servers: 2 servers need mode: swarm (one box runs plain Compose); add "
      "mode: swarm, or list one server"]),
    ("mode: swarm\nservers: [{name: a, manager: true}, {name: a, manager: true}]\n",
     ["lanai.yaml:2: servers[1].name: 'a' is listed twice (also servers[0])",
      "lanai.yaml:2: servers[1].manager: only one server can be the manager (servers[0] is "
      "already); lanai runs one swarm manager"]),
    ("mode: swarm\nservers: [{name: a, gpu: none}, {name: b, ollama: false}]\n",
     ["lanai.yaml:2: servers: no server runs Ollama (every one has gpu: none or ollama: "
      "false); set ollama: true on one"]),
    ("mode: swarm\nservers:\n  - name: Box_A\n",
     ["lanai.yaml:3: servers[0].name: a server name is a DNS label: lowercase letters, "
      "digits and '-', at most 40 characters, e.g. box-a (got 'Box_A')"]),
    ("mode: swarm\nservers:\n  - name: a\n    gpu: geforce-256\n",
     ["lanai.yaml:4: servers[0].gpu: 'geforce-256' is neither a size (e.g. 24GiB), auto, "
      "none, nor a GPU lanai knows (e.g. rtx-3070, rtx-4090); write its memory, e.g. 8GiB "
      "(got 'geforce-256')"]),
    ("mode: swarm\nservers:\n  - name: a\n    labels: {io.lanai.server: b}\n",
     ["lanai.yaml:4: servers[0].labels: label 'io.lanai.server': the io.lanai. prefix is "
      "lanai's own"]),
    ("mode: swarm\nservers:\n  - name: a\n    gpus: 1\n",
     ["lanai.yaml:4: servers[0].gpus: unknown key; did you mean 'gpu'?"]),
])
def test_server_problems_name_the_key_and_line(state_dir: Path, servers_yaml: str,
                                               expected: list[str]) -> None:
    (state_dir / "lanai.yaml").write_text(servers_yaml, encoding="utf-8")
    (state_dir / "webui.yaml").unlink()
    assert problems_of(state_dir) == expected


def test_gpu_classes_are_lowercase_and_sizes_parse() -> None:
    assert all(name == name.lower() for name in GPU_CLASSES)
    assert Server(name="x", gpu="RTX-3070").gpu == "rtx-3070"
    assert Server(name="x", gpu="12GiB").vram == 12 * 1024**3
    assert Server(name="x", gpu="none").vram is None
    assert Server(name="x", gpu="none", ollama=True).runs_ollama is True
    assert Server(name="x").runs_ollama is True  # gpu auto: bootstrap found out



def test_the_commented_example_in_lanai_yaml_is_valid_uncommented(state_dir: Path,
                                                                  edit) -> None:
    text = (state_dir / "lanai.yaml").read_text(encoding="utf-8")
    start = text.index("# mode: swarm\n")
    block = text[start:text.index("\n\n", start) + 1]
    edit("lanai.yaml", block, "".join(line.removeprefix("# ") + "\n"
                                      for line in block.splitlines()))
    edit("webui.yaml", WEBUI_OLLAMA, "")
    config = load_state(state_dir).config
    assert config.mode == "swarm"
    assert [(s.name, s.vram, s.labels) for s in config.servers] == [
        ("box-a", 8 * 1024**3, {}), ("box-b", 24 * 1024**3, {"size": "big"})]
