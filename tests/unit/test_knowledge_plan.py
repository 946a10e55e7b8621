"""Knowledge sync by content hash, and preset comparison (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.knowledge_plan import (
    KnowledgeRecord,
    documents,
    plan_documents,
    preset_differs,
    preset_params,
)
from reconciler.webui_schema import KnowledgeBase, Preset, WebUIConfig


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / "docs" / name).write_text(f"# {name}\n")
    return tmp_path


def base(*files: str) -> KnowledgeBase:
    return KnowledgeBase(name="Family", files=list(files))


def synced(repo: Path, kb: KnowledgeBase) -> KnowledgeRecord:
    docs, _ = documents(repo, kb)
    return KnowledgeRecord(id="kb1", files={d.path: {"sha256": d.sha256, "file_id": f"f-{d.path}"}
                                            for d in docs})


def test_documents_are_found_by_glob_and_hashed(repo: Path) -> None:
    docs, empty = documents(repo, base("docs/*.md", "missing/*.txt"))
    assert [d.path for d in docs] == ["docs/a.md", "docs/b.md", "docs/c.md"]
    assert len(docs[0].sha256) == 64 and empty == ["missing/*.txt"]


def test_a_first_sync_uploads_every_document(repo: Path) -> None:
    docs, _ = documents(repo, base("docs/*.md"))
    actions = plan_documents("Family", docs, KnowledgeRecord(), set())
    assert [(a.kind, a.path) for a in actions] == [
        ("upload", "docs/a.md"), ("upload", "docs/b.md"), ("upload", "docs/c.md")]


def test_editing_one_document_resyncs_only_that_one(repo: Path) -> None:
    kb = base("docs/*.md")
    record = synced(repo, kb)
    ids = {v["file_id"] for v in record.files.values()}
    docs, _ = documents(repo, kb)
    assert plan_documents("Family", docs, record, ids) == []
    (repo / "docs" / "b.md").write_text("# b, edited\n")
    docs, _ = documents(repo, kb)
    assert [(a.kind, a.path, a.reason) for a in plan_documents("Family", docs, record, ids)] \
        == [("replace", "docs/b.md", "changed in git")]


def test_removed_in_git_is_removed_and_removed_by_hand_is_put_back(repo: Path) -> None:
    kb = base("docs/*.md")
    record = synced(repo, kb)
    (repo / "docs" / "c.md").unlink()
    docs, _ = documents(repo, kb)
    present = {"f-docs/b.md", "f-docs/c.md"}  # a.md was removed in the admin UI
    actions = plan_documents("Family", docs, record, present)
    assert [(a.kind, a.path, a.reason) for a in actions] == [
        ("upload", "docs/a.md", "removed from Open WebUI by hand"),
        ("remove", "docs/c.md", "removed from git")]


def test_a_preset_differs_by_the_parts_the_family_would_notice() -> None:
    preset = Preset(id="helper", name="Helper", base_model="phi3:mini", system="Be brief.",
                    params={"temperature": 0.3}, knowledge=["Family"])
    form = {"id": "helper", "name": "Helper", "base_model_id": "phi3:mini",
            "params": preset_params(preset), "meta": {"knowledge": [{"id": "kb1"}]}}
    assert preset_params(preset) == {"temperature": 0.3, "system": "Be brief."}
    assert preset_differs(None, form) == ["missing"]
    assert preset_differs(dict(form), form) == []
    changed = {**form, "params": {"system": "Be verbose."}, "meta": {"knowledge": []}}
    assert preset_differs(changed, form) == ["system prompt or parameters", "knowledge"]


@pytest.mark.parametrize(("data", "words"), [
    ({"knowledge": [{"name": "K", "files": ["../etc/passwd"]}]}, "inside the state repo"),
    ({"knowledge": [{"name": "K", "files": []}]}, "at least one file"),
    ({"presets": [{"id": "p", "name": "P", "base_model": "m", "knowledge": ["Nope"]}]},
     "not declared under knowledge"),
    ({"presets": [{"id": "Bad Id", "name": "P", "base_model": "m"}]}, "lowercase"),
])
def test_bad_knowledge_or_presets_say_why(data: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        WebUIConfig.model_validate(data)
