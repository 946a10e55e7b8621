"""What the server remembers about its models: `models.json` in lanai's home.

Written atomically after every step (and about once a second during a pull),
so `lanai status` can show a pull's progress from another process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .record import write_json_atomic


@dataclass
class ModelRecord:
    managed: bool = True  # lanai pulled or created it, so pruning may delete it
    upstream_digest: str | None = None  # the tag's digest right after the last pull
    digest: str | None = None  # the digest Ollama lists now (after lanai set num_ctx)
    num_ctx: int | None = None  # the num_ctx baked into `digest`
    context: int | None = None  # the context lanai chose
    source_hash: str | None = None  # custom models: Modelfile + files + context
    pulled_at: str | None = None
    followed_at: str | None = None
    error: str | None = None
    failures: int = 0
    next_retry: str | None = None
    observed: dict[str, Any] | None = None  # from /api/ps after loading
    drift: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ModelsState:
    models: dict[str, ModelRecord] = field(default_factory=dict)
    pull: dict[str, Any] | None = None  # the pull in progress: model, completed, total, rate, eta
    ollama_started: str | None = None  # the Ollama container start that was last warmed
    gpu: dict[str, Any] | None = None
    fits: list[dict[str, Any]] = field(default_factory=list)  # the last fit table
    updated: str | None = None

    def record(self, name: str) -> ModelRecord:
        return self.models.setdefault(name, ModelRecord())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = {name: asdict(rec) for name, rec in sorted(self.models.items())}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelsState:
        return cls(models={n: ModelRecord.from_json(r)
                           for n, r in (data.get("models") or {}).items()},
                   pull=data.get("pull"), ollama_started=data.get("ollama_started"),
                   gpu=data.get("gpu"), fits=data.get("fits") or [],
                   updated=data.get("updated"))


def load(path: Path) -> ModelsState:
    try:
        return ModelsState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return ModelsState()
    except (json.JSONDecodeError, TypeError, AttributeError):
        # A damaged file only loses remembered progress; the next converge rebuilds it.
        return ModelsState()


def save(path: Path, state: ModelsState) -> None:
    write_json_atomic(path, state.to_json())
