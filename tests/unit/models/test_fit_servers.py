"""Swarm mode's fit: the per-server GPUs in models.lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.models import lock as models_lock

from .test_models import facts_of

GiB = 1024**3
EXAMPLE_LOCK = Path(__file__).resolve().parents[3] / "desired-state" / "models.lock"


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
