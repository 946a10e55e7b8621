"""What the server remembers about its models: `models.json` in lanai's home.

Written atomically after every step (and about once a second during a pull),
so `lanai status` can show a pull's progress from another process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.files import write_json_atomic
from reconciler.desired.models_yaml import ModelsConfig


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


def server_file(models_file: Path, server: str) -> Path:
    """Swarm mode: one server's models.json (models.box-b.json beside models.json). Each
    server's record stands alone, so pruning what lanai pulled on one never reads another's."""
    return models_file.with_name(f"{models_file.stem}.{server}{models_file.suffix}")


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


def server_models(config: ModelsConfig, state: ModelsState,
                  pull: dict[str, Any] | None) -> dict[str, Any]:
    """Every model of models.yaml with its state; `pull` is the pull in progress
    (pull.json). sync: Progressing while a wanted model is pulling, Failed when one
    failed, OutOfSync when one is missing, else Synced."""
    fits = {row["model"]: row for row in state.fits}
    rows = []
    wanted = {e.name for e in config.pulled}
    if pull and pull.get("model") not in wanted:
        pull = None  # a pull left over from a commit before: not this commit's business
    for entry in config.local:
        rec = state.models.get(entry.name)
        fit = fits.get(entry.name, {})
        if pull and pull.get("model") == entry.name:
            row_state = "pulling"
        elif rec is None or rec.digest is None:
            row_state = "failed" if rec and rec.error else "missing"
        else:
            row_state = "ready"
        note = (rec.error if rec and rec.error and row_state != "ready" else None) \
            or (rec.drift if rec else None) or ("; ".join(fit.get("notes") or []) or None)
        if note and note.startswith(entry.name + " "):
            note = note[len(entry.name) + 1:]  # the row already names the model
        rows.append({"model": entry.name, "state": row_state,
                     "context": (rec.context or rec.num_ctx) if rec else None,
                     "estimate": fit.get("total"), "verdict": fit.get("verdict"),
                     "observed": rec.observed if rec else None, "note": note,
                     "default": entry.name == config.default})
    states = {r["state"] for r in rows}
    sync = "Progressing" if pull else "Failed" if "failed" in states \
        else "OutOfSync" if "missing" in states else "Synced"
    return {"models": rows, "pull": pull, "sync": sync, "gpu": state.gpu,
            "updated": state.updated}


def planned_model_actions(config: ModelsConfig, state: ModelsState,
                          fit: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the next converge would do to Ollama, from what the server last recorded."""
    contexts = {row["model"]: row.get("context") for row in (fit or {}).get("models", [])}
    out: list[dict[str, Any]] = []
    for entry in config.local:
        rec = state.models.get(entry.name)
        if rec is None or rec.digest is None:
            kind = "create" if entry.modelfile else "pull"
            out.append({"kind": kind, "model": entry.name, "reason": "not on the server"})
        elif contexts.get(entry.name) and rec.num_ctx != contexts[entry.name]:
            out.append({"kind": "tune", "model": entry.name,
                        "reason": f"num_ctx {rec.num_ctx or 'unset'} -> {contexts[entry.name]}"})
    if config.prune:
        declared = {m.name for m in config.local}
        out += [{"kind": "remove", "model": name, "reason": "no longer in models.yaml"}
                for name, rec in sorted(state.models.items())
                if rec.managed and rec.digest and name not in declared]
    return out
