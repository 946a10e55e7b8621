"""Knowledge bases and presets: what to upload, remove, create or update. Pure.

The documents are the commit's own files: the tree git exported, read before lanai
writes its files (secrets, override, Caddyfile) beside them, with symbolic links never
followed, so a pattern like ``**/*`` can match neither lanai's files nor a file outside
the repo. A wildcard does not match a leading dot (as in a shell): hidden files are
documents only when a pattern names the dot.

They are compared by content hash (SHA-256) with what Open WebUI's knowledge base holds
now (each file's ``meta.file_hash``), not with a record of lanai's, so a restored or
hand-edited Open WebUI converges to git: an unchanged file is never uploaded again, an
edit re-syncs only that file, and a file deleted by hand is put back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.desired.documents import Doc
from reconciler.desired.webui_yaml import Preset

PATH_KEY = "lanai_path"  # in an uploaded file's meta.data: its path in the state repo


@dataclass(frozen=True)
class Held:
    """A file in Open WebUI's knowledge base."""

    id: str
    filename: str
    sha256: str | None  # meta.file_hash: the SHA-256 of the bytes uploaded

    @classmethod
    def from_api(cls, record: dict[str, Any], recorded: dict[str, str]) -> Held:
        """`record`: Open WebUI's file object. Its name is the repo path lanai sent in
        meta.data (Open WebUI keeps only the base name as filename); for a file uploaded
        without it, the path `recorded` (file id -> path, lanai's record) gives it."""
        meta = record.get("meta") or {}
        sent = (meta.get("data") or {}) if isinstance(meta.get("data"), dict) else {}
        file_id = str(record.get("id"))
        name = sent.get(PATH_KEY) or recorded.get(file_id) or record.get("filename") \
            or meta.get("name") or ""
        return cls(file_id, str(name), meta.get("file_hash"))


@dataclass(frozen=True)
class DocAction:
    kind: str  # upload, replace, remove
    knowledge: str
    path: str
    reason: str
    stale: tuple[str, ...] = ()  # Open WebUI file ids this action takes out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "knowledge": self.knowledge, "path": self.path,
                "reason": self.reason}


@dataclass
class KnowledgeRecord:
    """What lanai put in Open WebUI for one knowledge base: its id, and the paths it
    uploaded (so a file removed from git is removed, and one added by hand is not)."""

    id: str | None = None
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> sha256, file_id

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "files": self.files}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnowledgeRecord:
        return cls(id=data.get("id"), files=dict(data.get("files") or {}))














def plan_documents(name: str, docs: list[Doc], held: list[Held],
                   ours: set[str]) -> list[DocAction]:
    """What to do so the knowledge base holds `docs`, judged by what it holds now.

    `ours`: the paths lanai uploaded before; a file under another name that git does not
    list was added by hand and is left alone.
    """
    actions = []
    wanted = {d.path for d in docs}
    hashes = {d.sha256 for d in docs}
    planned: set[str] = set()  # contents uploaded by this plan: two equal files go once
    for doc in docs:
        same_name = [h for h in held if h.filename == doc.path]
        current = [h for h in same_name if h.sha256 == doc.sha256]
        stale = tuple(h.id for h in same_name if h.sha256 != doc.sha256) \
            + tuple(h.id for h in current[1:])  # the same file twice: keep one
        there = current or any(h.sha256 == doc.sha256 for h in held)
        if not there and doc.sha256 in planned:
            there = True
        planned.add(doc.sha256)
        if there:
            # Up to date, or the same text under another name (Open WebUI refuses
            # duplicate content in a knowledge base).
            if stale:
                actions.append(DocAction("remove", name, doc.path, "an older copy", stale))
        elif same_name:
            actions.append(DocAction("replace", name, doc.path, "changed in git", stale))
        elif doc.path in ours:
            actions.append(DocAction("upload", name, doc.path, "missing from Open WebUI"))
        else:
            actions.append(DocAction("upload", name, doc.path, "new in git"))
    gone: dict[str, list[str]] = {}
    for h in held:
        if h.filename not in wanted and h.filename in ours and h.sha256 not in hashes:
            gone.setdefault(h.filename, []).append(h.id)
    for path in sorted(gone):
        actions.append(DocAction("remove", name, path, "removed from git", tuple(gone[path])))
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
