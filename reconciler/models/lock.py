"""`models.lock`: what a model needs that cannot be computed offline.

The reconciler writes it on the server after it has pulled the models (their
size, digest and architecture as Ollama reports them, and the server's GPU);
the user commits it to the state repo so `lanai plan` in a pull request's CI
can check the VRAM budget without access to the server.

In swarm mode it also holds each server's GPU (`servers:`); the model facts stay
shared, since a tag is the same file on every server. Version 1 readers ignore
`servers`, and a lock without servers is written exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.files import write_atomic
from reconciler.desired import bounded
from reconciler.models.memory import ModelFacts

LOCK_FILE = "models.lock"
HEADER = """\
# Written by lanai on the server (`lanai models lock`); commit it to the state repo.
# `lanai plan` and `lanai validate` read model sizes, architectures and the GPU from here,
# so a pull request's CI can check the VRAM budget without reaching the server.
"""


class LockError(ValueError):
    pass


@dataclass(frozen=True)
class GpuFact:
    """One server's GPU as its nvidia-smi reported it."""

    name: str | None = None
    memory: int | None = None  # bytes; None: the server has no NVIDIA GPU

    def to_json(self) -> dict[str, Any] | None:
        return {"name": self.name, "memory": self.memory} if self.memory is not None else None

    @classmethod
    def from_json(cls, data: Any) -> GpuFact:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise LockError("a gpu is a mapping with name and memory; regenerate the lock with "
                            "`lanai models lock` on the server")
        memory = data.get("memory")
        return cls(name=data.get("name"), memory=int(memory) if memory else None)


@dataclass
class ModelsLock:
    gpu_name: str | None = None
    gpu_memory: int | None = None  # bytes; None: the server has no NVIDIA GPU
    models: dict[str, ModelFacts] = field(default_factory=dict)
    # Swarm mode: server name -> its GPU (a server absent here: not known yet).
    servers: dict[str, GpuFact] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        gpu = GpuFact(self.gpu_name, self.gpu_memory).to_json()
        out: dict[str, Any] = {"version": 1, "gpu": gpu}
        if self.servers:  # absent in compose mode, so its lock stays byte for byte the same
            out["servers"] = {name: {"gpu": fact.to_json()}
                              for name, fact in sorted(self.servers.items())}
        out["models"] = {name: _without_name(facts.to_json())
                         for name, facts in sorted(self.models.items())}
        return out

    @classmethod
    def from_json(cls, data: Any) -> ModelsLock:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise LockError("not a version 1 models.lock; regenerate it with "
                            "`lanai models lock` on the server")
        gpu = data.get("gpu") or {}
        models: dict[str, ModelFacts] = {}
        for name, facts in (data.get("models") or {}).items():
            try:
                models[name] = ModelFacts.from_json({**facts, "name": name})
            except (ValueError, TypeError) as exc:
                raise LockError(f"model {name}: {exc}") from None
        memory = gpu.get("memory")
        return cls(gpu_name=gpu.get("name"), gpu_memory=int(memory) if memory else None,
                   models=models, servers=_servers(data.get("servers")))

    def merged(self, other: ModelsLock) -> ModelsLock:
        """This lock's facts updated with `other`'s (other wins)."""
        return ModelsLock(gpu_name=other.gpu_name or self.gpu_name,
                          gpu_memory=other.gpu_memory or self.gpu_memory,
                          models={**self.models, **other.models},
                          servers={**self.servers, **other.servers})


def _servers(data: Any) -> dict[str, GpuFact]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LockError("servers is a mapping of server name to its gpu; regenerate the lock "
                        "with `lanai models lock` on the manager")
    out: dict[str, GpuFact] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise LockError(f"server {name}: write it as {{gpu: {{name, memory}}}}; regenerate "
                            "the lock with `lanai models lock` on the manager")
        try:
            out[str(name)] = GpuFact.from_json(entry.get("gpu"))
        except (LockError, ValueError, TypeError) as exc:
            raise LockError(f"server {name}: {exc}") from None
    return out


def _without_name(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "name" and v is not None}


def dumps(lock: ModelsLock) -> str:
    return HEADER + yaml.safe_dump(lock.to_json(), sort_keys=False, width=100)


def loads(text: str) -> ModelsLock:
    try:
        # libyaml's loader where present: the reconciler reads the lock on every poll.
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise LockError(f"not valid YAML ({exc})") from None
    return ModelsLock.from_json(data)


def read(path: Path) -> ModelsLock | None:
    """The lock at `path`; None when there is none."""
    try:
        text = bounded.read_text(path)  # the state repo's lock is read from a commit
    except FileNotFoundError:
        return None
    except bounded.LimitExceeded as exc:
        raise LockError(exc.message) from None
    return loads(text)


def write(path: Path, lock: ModelsLock) -> None:
    write_atomic(path, dumps(lock), mode=0o644)  # a file of the state repo, for git
