"""Swarm mode's fit: one table per Ollama server, each against that server's GPU; and the
per-server GPUs in models.lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import load as desired
from reconciler.models import lock as models_lock
from reconciler.models.fit import FitReport
from reconciler.models.fit_servers import fit_servers, flat_problems, server_models

from .swarm_state import MODELS, make_swarm
from .test_models import facts_of

GiB, MiB = 1024**3, 1024**2
EXAMPLE_LOCK = Path(__file__).resolve().parents[3] / "desired-state" / "models.lock"


def fit(state_dir: Path, **kwargs: object) -> dict[str, FitReport]:
    state = desired.load_state(state_dir)
    assert state.models is not None
    return fit_servers(state_dir, state.models, state.config, **kwargs)  # type: ignore[arg-type]


def models_of(report: FitReport) -> dict[str, str]:
    return {r.name: r.verdict for r in report.rows}


# -- models.lock: the servers' GPUs ----------------------------------------------------


def test_a_lock_without_servers_is_read_and_written_byte_for_byte_as_before() -> None:
    text = EXAMPLE_LOCK.read_text(encoding="utf-8")
    lock = models_lock.loads(text)
    assert lock.servers == {}
    body = text[text.index("version: 1"):]  # the example's own comment precedes the header
    assert models_lock.dumps(lock) == models_lock.HEADER + body


def test_the_servers_gpus_round_trip_beside_the_shared_model_facts() -> None:
    embed = "nomic-embed-text:v1.5"
    lock = models_lock.ModelsLock(
        models={embed: facts_of(embed)},
        servers={"box-c": models_lock.GpuFact("NVIDIA GeForce RTX 3070", 8 * GiB),
                 "box-a": models_lock.GpuFact(),
                 "box-b": models_lock.GpuFact("NVIDIA GeForce RTX 4090", 24 * GiB)})
    text = models_lock.dumps(lock)
    assert ("version: 1\ngpu: null\nservers:\n  box-a:\n    gpu: null\n  box-b:\n    gpu:\n"
            "      name: NVIDIA GeForce RTX 4090\n      memory: 25769803776\n") in text
    assert text.index("servers:") < text.index("models:")
    assert models_lock.loads(text) == lock


def test_merging_locks_keeps_both_sides_servers() -> None:
    old = models_lock.ModelsLock(servers={"box-b": models_lock.GpuFact("old", 8 * GiB),
                                          "box-c": models_lock.GpuFact("c", 8 * GiB)})
    new = models_lock.ModelsLock(servers={"box-b": models_lock.GpuFact("new", 24 * GiB)})
    assert old.merged(new).servers == {"box-b": models_lock.GpuFact("new", 24 * GiB),
                                       "box-c": models_lock.GpuFact("c", 8 * GiB)}


@pytest.mark.parametrize(("servers", "message"), [
    ("servers: [box-b]\n", "servers is a mapping"),
    ("servers:\n  box-b: 24GiB\n", "server box-b: write it as"),
    ("servers:\n  box-b:\n    gpu: rtx-4090\n", "server box-b: a gpu is a mapping"),
])
def test_a_malformed_servers_entry_is_named(servers: str, message: str) -> None:
    with pytest.raises(models_lock.LockError, match=message):
        models_lock.loads(f"version: 1\ngpu: null\n{servers}models: {{}}\n")


# -- one fit per server ------------------------------------------------------------------


def test_each_ollama_server_fits_the_models_placed_on_it(state_dir: Path) -> None:
    reports = fit(make_swarm(state_dir))
    assert list(reports) == ["box-b", "box-c"]  # box-a: gpu none, so no Ollama, no table
    big, small = reports["box-b"], reports["box-c"]
    assert models_of(big) == {"nomic-embed-text:v1.5": "fits",
                              "qwen2.5:32b-instruct-q4_K_M": "fits"}
    assert models_of(small) == {"nomic-embed-text:v1.5": "fits",
                                "llama3.1:8b-instruct-q4_K_M": "fits"}
    assert (big.server, big.role, big.gpu_name, big.gpu_memory) == (
        "box-b", "worker", "rtx-4090", 24 * GiB)
    assert big.budget_from == "lanai.yaml gpu rtx-4090 24 GiB"
    assert small.budget_from == "lanai.yaml gpu 8 GiB" and small.gpu_name is None
    assert small.budget == 8 * GiB - 512 * MiB
    assert [big.problems, big.warnings, small.problems, small.warnings] == [[], [], [], []]
    # The same model file, a different context: each server's own memory decides it.
    assert small.to_json()["server"] == "box-c" and small.to_json()["role"] == "worker"


def test_the_default_model_counts_only_on_the_servers_that_hold_it(state_dir: Path) -> None:
    state = desired.load_state(make_swarm(state_dir))
    assert state.models is not None
    placed = {"box-b": ["qwen2.5:32b-instruct-q4_K_M", "nomic-embed-text:v1.5"],
              "box-c": ["llama3.1:8b-instruct-q4_K_M", "nomic-embed-text:v1.5"]}
    small = server_models(state.models, placed["box-c"])
    assert small.default == "llama3.1:8b-instruct-q4_K_M"  # warmed there
    assert [m.name for m in small.local] == placed["box-c"]
    big = server_models(state.models, placed["box-b"])
    assert big.default is None and [m.name for m in big.local] == placed["box-b"]
    assert big.budget.vram == "auto" and big.budget.max_loaded == 2


def test_a_model_too_big_for_one_server_fails_only_that_servers_table(state_dir: Path) -> None:
    models = MODELS + "  - name: llama3.1:8b-instruct-q8_0\n    place: [box-b, box-c]\n" \
                      "    context: 16384\n"
    reports = fit(make_swarm(state_dir, models))
    assert reports["box-b"].problems == []
    assert models_of(reports["box-b"])["llama3.1:8b-instruct-q8_0"] == "fits"
    [problem] = reports["box-c"].problems
    assert problem.startswith("llama3.1:8b-instruct-q8_0 needs ") and "allow_cpu" in problem
    assert flat_problems(reports) == [f"box-c: {problem}"]


def test_vram_on_the_command_line_overrides_one_server(state_dir: Path) -> None:
    reports = fit(make_swarm(state_dir), vram={"box-b": 12 * GiB})
    big = reports["box-b"]
    assert big.budget_from == "--vram box-b=12 GiB" and big.gpu_memory == 12 * GiB
    assert [p.split(" ")[0] for p in big.problems] == ["qwen2.5:32b-instruct-q4_K_M"]
    assert reports["box-c"].budget_from == "lanai.yaml gpu 8 GiB"  # untouched


def test_a_server_with_gpu_auto_reads_its_gpu_from_the_lock(state_dir: Path) -> None:
    servers = """
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none}
  - {name: box-b, labels: {size: big}}
  - {name: box-c, gpu: 8GiB}
"""
    make_swarm(state_dir, servers=servers)
    lock = models_lock.read(state_dir / "models.lock")
    assert lock is not None
    unknown = fit(state_dir)["box-b"]
    assert unknown.budget is None and unknown.problems == []
    assert unknown.warnings == [
        "box-b's GPU is not known (gpu: auto in lanai.yaml, and models.lock has no "
        "servers.box-b), so its budget is not checked; write its gpu in lanai.yaml (e.g. gpu: "
        "rtx-3070), or pass --vram box-b=8GiB"]
    lock.servers["box-b"] = models_lock.GpuFact("NVIDIA GeForce RTX 3090", 24 * GiB)
    models_lock.write(state_dir / "models.lock", lock)
    known = fit(state_dir)["box-b"]
    assert known.budget_from == "models.lock NVIDIA GeForce RTX 3090 24 GiB"
    assert known.gpu_name == "NVIDIA GeForce RTX 3090" and known.warnings == []
    # A lock that says the server has no NVIDIA GPU: its models run on the CPU.
    lock.servers["box-b"] = models_lock.GpuFact()
    cpu = fit(state_dir, lock=lock)["box-b"]
    assert cpu.budget is None and set(models_of(cpu).values()) == {"cpu"}
    assert cpu.warnings == ["box-b has no NVIDIA GPU (per models.lock): its models run on the "
                            "CPU, no VRAM budget applies"]


def test_budget_vram_caps_every_server_with_a_gpu(state_dir: Path) -> None:
    models = MODELS.replace("budget:\n", "budget:\n  vram: 12GiB\n")
    servers = """
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none, ollama: true}
  - {name: box-b, gpu: rtx-4090, labels: {size: big}}
  - {name: box-c, gpu: 8GiB}
"""
    reports = fit(make_swarm(state_dir, models, servers))
    assert reports["box-b"].budget_from == ("budget.vram 12 GiB, below lanai.yaml gpu rtx-4090 "
                                            "24 GiB")
    assert reports["box-b"].budget == 12 * GiB - 512 * MiB
    assert reports["box-c"].budget_from == "lanai.yaml gpu 8 GiB"  # already below the cap
    cpu = reports["box-a"]  # gpu: none with ollama: true: the CPU, whatever the cap
    assert cpu.role == "manager" and cpu.budget is None
    assert models_of(cpu) == {"nomic-embed-text:v1.5": "cpu"}
    assert cpu.warnings == ["box-a has no NVIDIA GPU (gpu: none in lanai.yaml): its models run "
                            "on the CPU, no VRAM budget applies"]


def test_a_server_with_no_models_placed_gets_an_empty_table(state_dir: Path) -> None:
    models = MODELS.replace("  - nomic-embed-text:v1.5\n",
                            "  - name: nomic-embed-text:v1.5\n    place: box-c\n")
    servers = """
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none}
  - {name: box-b, gpu: rtx-4090, labels: {size: big}}
  - {name: box-c, gpu: 8GiB}
  - {name: box-d}
"""
    reports = fit(make_swarm(state_dir, models, servers))
    empty = reports["box-d"]
    assert empty.rows == [] and empty.problems == [] and empty.warnings == []


def test_without_a_lock_every_server_says_what_it_could_not_check(state_dir: Path) -> None:
    (make_swarm(state_dir) / "models.lock").unlink()
    reports = fit(state_dir)
    assert all(r.facts_from == "nowhere" and r.problems == [] for r in reports.values())
    assert reports["box-c"].warnings == [
        "not checked: llama3.1:8b-instruct-q4_K_M, nomic-embed-text:v1.5 (not in models.lock); "
        "after the servers have pulled them, run `lanai models lock > models.lock` on the "
        "manager and commit it"]


def test_an_unreadable_lock_is_one_problem_said_once(state_dir: Path) -> None:
    (make_swarm(state_dir) / "models.lock").write_text("version: 2\n", encoding="utf-8")
    reports = fit(state_dir)
    assert all(len(r.problems) == 1 for r in reports.values())
    [problem] = flat_problems(reports)
    assert problem.startswith("models.lock: not a version 1 models.lock")
