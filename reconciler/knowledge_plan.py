"""Knowledge bases and presets: what to upload, remove, create or update. Pure.

Documents are matched by their path in the state repo and compared by content hash
(SHA-256), against what lanai recorded when it last uploaded them, so an unchanged file
is never uploaded again and an edit re-syncs only that file. The record also names the
Open WebUI ids, so a knowledge base or file deleted by hand is noticed and put back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .webui_schema import KnowledgeBase, Preset


@dataclass(frozen=True)
class Doc:
    path: str  # relative to the state repo
    sha256: str


@dataclass(frozen=True)
class DocAction:
    kind: str  # upload, replace, remove
    knowledge: str
    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "knowledge": self.knowledge, "path": self.path,
                "reason": self.reason}


@dataclass
class KnowledgeRecord:
    """What lanai put in Open WebUI for one knowledge base."""

    id: str | None = None
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> sha256, file_id

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "files": self.files}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnowledgeRecord:
        return cls(id=data.get("id"), files=dict(data.get("files") or {}))


def documents(root: Path, base: KnowledgeBase) -> tuple[list[Doc], list[str]]:
    """The files a knowledge base names, hashed; and patterns that matched nothing."""
    found: dict[str, Doc] = {}
    empty = []
    for pattern in base.files:
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            empty.append(pattern)
        for path in matches:
            relative = path.relative_to(root).as_posix()
            found[relative] = Doc(relative, hashlib.sha256(path.read_bytes()).hexdigest())
    return sorted(found.values(), key=lambda d: d.path), empty


def plan_documents(name: str, docs: list[Doc], record: KnowledgeRecord,
                   present_file_ids: set[str]) -> list[DocAction]:
    """`present_file_ids`: the file ids Open WebUI's knowledge base holds now."""
    actions = []
    wanted = {d.path: d for d in docs}
    for doc in docs:
        have = record.files.get(doc.path)
        if have is None:
            actions.append(DocAction("upload", name, doc.path, "new in git"))
        elif have["sha256"] != doc.sha256:
            actions.append(DocAction("replace", name, doc.path, "changed in git"))
        elif have["file_id"] not in present_file_ids:
            actions.append(DocAction("upload", name, doc.path,
                                     "removed from Open WebUI by hand"))
    for path in sorted(set(record.files) - set(wanted)):
        actions.append(DocAction("remove", name, path, "removed from git"))
    return actions


def preset_differs(current: dict[str, Any] | None, form: dict[str, Any]) -> list[str]:
    """Which parts of a preset differ from what Open WebUI has (empty: none)."""
    if current is None:
        return ["missing"]
    out = []
    if current.get("name") != form.get("name"):
        out.append("name")
    if current.get("base_model_id") != form.get("base_model_id"):
        out.append("base model")
    if (current.get("params") or {}) != (form.get("params") or {}):
        out.append("system prompt or parameters")
    want_kb = sorted(k.get("id") for k in (form.get("meta") or {}).get("knowledge") or [])
    have_kb = sorted(k.get("id") for k in (current.get("meta") or {}).get("knowledge") or [])
    if want_kb != have_kb:
        out.append("knowledge")
    return out


def preset_params(preset: Preset) -> dict[str, Any]:
    params: dict[str, Any] = dict(preset.params)
    if preset.system:
        params["system"] = preset.system
    return params
