"""`lanai validate`, `lanai plan --dir` and `lanai models fit` in swarm mode: one fit table per
server, `--vram SERVER=SIZE`; and compose mode's output as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import stack
from reconciler.cli.main import main
from reconciler.desired import load as desired
from reconciler.models.fit_servers import fit_servers, servers_json

from ..models.swarm_state import MODELS, make_swarm

TOO_BIG_FOR_C = MODELS + ("  - name: llama3.1:8b-instruct-q8_0\n    place: [box-b, box-c]\n"
                          "    context: 16384\n")


def lanai(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


@pytest.fixture
def swarm(state_dir: Path) -> Path:
    return make_swarm(state_dir)


def test_models_fit_prints_one_table_per_ollama_server(swarm: Path) -> None:
    result = lanai("models", "fit", str(swarm))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "box-b: worker, GPU rtx-4090 24 GiB"
    assert lines[1] == ("VRAM budget 24 GiB (lanai.yaml gpu rtx-4090 24 GiB less what is kept "
                        "free); sizes from models.lock")
    assert "box-c: worker, GPU 8 GiB" in lines
    assert ("VRAM budget 7.5 GiB (lanai.yaml gpu 8 GiB less what is kept free); sizes from "
            "models.lock") in lines
    assert lines[-1] == "box-a: runs no Ollama (gpu: none or ollama: false), so no models"
    b_table = result.output.split("box-c: worker")[0]
    assert "qwen2.5:32b" in b_table and "llama3.1:8b" not in b_table
    assert "✗" not in result.output


def test_models_fit_json_has_a_report_per_server(swarm: Path) -> None:
    result = lanai("models", "fit", str(swarm), "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert list(data) == ["servers", "without_ollama", "problems"]
    assert list(data["servers"]) == ["box-b", "box-c"]
    assert data["without_ollama"] == ["box-a"] and data["problems"] == []
    box_c = data["servers"]["box-c"]
    assert (box_c["server"], box_c["role"], box_c["gpu_status"]) == ("box-c", "worker", "known")
    assert box_c["gpu"] == {"name": None, "memory": 8 * 1024**3}
    assert [m["model"] for m in box_c["models"]] == ["llama3.1:8b-instruct-q4_K_M",
                                                     "nomic-embed-text:v1.5"]


def test_a_model_too_big_for_one_server_fails_the_check_under_that_server(
        state_dir: Path) -> None:
    make_swarm(state_dir, TOO_BIG_FOR_C)
    result = lanai("models", "fit", str(state_dir))
    assert result.exit_code == 2
    box_b, box_c = result.output.split("box-c: worker")
    assert "✗" not in box_b
    assert "✗ llama3.1:8b-instruct-q8_0 needs " in box_c
    data = json.loads(lanai("models", "fit", str(state_dir), "--json").output)
    assert data["servers"]["box-b"]["problems"] == []
    [problem] = data["problems"]
    assert problem.startswith("box-c: llama3.1:8b-instruct-q8_0 needs ")


def test_validate_prints_the_tables_and_names_the_server_of_each_problem(
        state_dir: Path) -> None:
    valid = lanai("validate", str(make_swarm(state_dir)))
    assert valid.exit_code == 0, valid.output
    assert valid.output.splitlines()[0] == "box-b: worker, GPU rtx-4090 24 GiB"
    assert f"{state_dir}: valid" in valid.output
    (state_dir / "models.yaml").write_text(TOO_BIG_FOR_C, encoding="utf-8")
    invalid = lanai("validate", str(state_dir))
    assert invalid.exit_code == 2
    assert "box-c: worker, GPU 8 GiB" in invalid.output
    assert "error: box-c: llama3.1:8b-instruct-q8_0 needs " in invalid.output
    data = json.loads(lanai("validate", str(state_dir), "--json").output)
    assert data["valid"] is False and list(data["models"]["servers"]) == ["box-b", "box-c"]
    assert [p.split(":")[0] for p in data["problems"]] == ["box-c"]


def test_vram_names_the_server_it_overrides(swarm: Path) -> None:
    result = lanai("models", "fit", str(swarm), "--vram", "box-b=12GiB", "--vram",
                   "box-c=16GiB", "--json")
    assert result.exit_code == 2  # the 32B model does not fit 12 GiB
    data = json.loads(result.output)
    assert data["servers"]["box-b"]["budget_from"] == "--vram box-b=12 GiB"
    assert data["servers"]["box-c"]["budget_from"] == "--vram box-c=16 GiB"
    assert [p.split(" ")[:2] for p in data["problems"]] == [
        ["box-b:", "qwen2.5:32b-instruct-q4_K_M"]]


@pytest.mark.parametrize(("vram", "message"), [
    ("8GiB", "--vram 8GiB: in swarm mode name the server, e.g. --vram box-b=8GiB (once per "
     "server)"),
    ("box-x=8GiB", "--vram box-x=8GiB: 'box-x' is not a server in lanai.yaml; name one of "
     "box-b, box-c"),
    ("box-a=8GiB", "--vram box-a=8GiB: 'box-a' runs no Ollama, so it has no fit table; name "
     "one of box-b, box-c"),
    ("box-b=lots", "--vram box-b=lots: 'lots' is not a size; write it like 8GiB"),
])
def test_a_vram_that_names_no_ollama_server_is_a_usage_error(swarm: Path, vram: str,
                                                             message: str) -> None:
    result = lanai("models", "fit", str(swarm), "--vram", vram)
    assert result.exit_code == 2
    assert f"Error: {message}" in result.output


def test_on_one_box_vram_stays_a_plain_size(state_dir: Path) -> None:
    result = lanai("models", "fit", str(state_dir), "--vram", "box-b=8GiB")
    assert result.exit_code == 2
    assert ("Error: --vram SERVER=SIZE is for swarm mode; on one box write a plain size, e.g. "
            "--vram 8GiB") in result.output
    small = lanai("models", "fit", str(state_dir), "--vram", "6GiB")
    assert small.exit_code == 2
    assert small.output.splitlines()[0] == ("VRAM budget 5.5 GiB (--vram 6 GiB less what is "
                                            "kept free); sizes from models.lock")


def test_compose_mode_output_keeps_its_shape(state_dir: Path) -> None:
    text = lanai("models", "fit", str(state_dir))
    assert text.exit_code == 0
    assert text.output.splitlines()[0] == ("VRAM budget 7.5 GiB (NVIDIA GeForce RTX 3070 8 GiB "
                                           "less what is kept free); sizes from models.lock")
    assert "worker" not in text.output and "box-" not in text.output
    report = json.loads(lanai("models", "fit", str(state_dir), "--json").output)
    assert list(report) == ["gpu", "budget", "budget_from", "facts_from", "models", "problems",
                            "warnings"]
    checked = json.loads(lanai("validate", str(state_dir), "--json").output)
    assert checked["models"] == report


def test_plan_off_the_manager_prints_the_tables_and_names_the_manager(
        state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `plan --dir` on a machine that is not the swarm manager (this one's engine
    is in no swarm): no deploy is planned, the fit per server is shown, then the sentence
    naming the manager, where the plan can be made."""
    config = tmp_path / "server.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n", encoding="utf-8")
    monkeypatch.setenv("LANAI_CONFIG", str(config))
    state = desired.load_state(make_swarm(state_dir, TOO_BIG_FOR_C))
    assert state.models is not None
    fit = servers_json(fit_servers(state_dir, state.models, state.config), state.config)
    result = lanai("plan", "--dir", str(state_dir))
    assert result.exit_code == 2
    assert "box-b: worker, GPU rtx-4090 24 GiB" in result.output
    assert "error: box-c: llama3.1:8b-instruct-q8_0 needs " in result.output
    said = " ".join(result.output.split())
    assert "this server is not a swarm manager (its swarm state is inactive), and lanai's " \
           "daemon deploys a swarm from the manager, box-a" in said, said
    data = json.loads(lanai("plan", "--dir", str(state_dir), "--json").output)
    assert (data["models"], data["actions"]) == (fit, [])
    assert "is not a swarm manager" in data["refused"]


def test_plan_dir_fits_a_swarm_state_per_server(state_dir: Path) -> None:
    """What `plan --dir` puts under "models" (the fit `validate` prints too)."""
    state = desired.load_state(make_swarm(state_dir))
    fit = stack.fit_json(state_dir, state)
    assert fit is not None and list(fit["servers"]) == ["box-b", "box-c"]
