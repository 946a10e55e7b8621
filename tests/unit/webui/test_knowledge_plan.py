"""Knowledge sync by content hash, and preset comparison (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.desired.documents import documents, matches, read_document
from reconciler.desired.webui_yaml import KnowledgeBase, Preset, WebUIConfig
from reconciler.webui.knowledge import Held, plan_documents, preset_differs, preset_params


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / "docs" / name).write_text(f"# {name}\n")
    return tmp_path


def base(*files: str) -> KnowledgeBase:
    return KnowledgeBase(name="Family", files=list(files))


def held(repo: Path, kb: KnowledgeBase) -> list[Held]:
    """What Open WebUI's knowledge base holds after a sync of `kb`."""
    docs, _ = documents(repo, kb)
    return [Held(f"f-{d.path}", d.path, d.sha256) for d in docs]


def test_documents_are_found_by_glob_and_hashed(repo: Path) -> None:
    docs, empty = documents(repo, base("docs/*.md", "missing/*.txt"))
    assert [d.path for d in docs] == ["docs/a.md", "docs/b.md", "docs/c.md"]
    assert len(docs[0].sha256) == 64 and empty == ["missing/*.txt"]


def test_everything_means_the_repos_own_files_never_hidden_ones_or_links(
        repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "shadow"
    outside.write_text("root:secret\n")
    (repo / ".lanai-secrets").mkdir()
    (repo / ".lanai-secrets" / "open-webui.env").write_text("WEBUI_SECRET_KEY=x\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[core]\n")
    (repo / ".hidden.md").write_text("hidden\n")
    (repo / "docs" / "shadow.md").symlink_to(outside)
    (repo / "linked").symlink_to(outside.parent, target_is_directory=True)
    docs, _ = documents(repo, base("**/*"))
    assert [d.path for d in docs] == ["docs/a.md", "docs/b.md", "docs/c.md"]
    # A hidden file is a document only when a pattern names its dot.
    assert [d.path for d in documents(repo, base(".hidden.md"))[0]] == [".hidden.md"]
    assert documents(repo, base("docs/shadow.md"))[1] == ["docs/shadow.md"]


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("docs/*.md", "docs/a.md", True),
    ("docs/*.md", "docs/sub/a.md", False),
    ("docs/**/*.md", "docs/a.md", True),
    ("docs/**/*.md", "docs/sub/deep/a.md", True),
    ("**", "a/b", True),
    ("*", ".env", False),
    ("**/*", ".lanai-secrets/open-webui.env", False),
    ("**/*.env", "x/.lanai-secrets/open-webui.env", False),
    (".lanai-secrets/*", ".lanai-secrets/open-webui.env", True),
    ("notes.txt", "notes.txt", True),
    ("n?tes.txt", "notes.txt", True),
])
def test_glob_matching(pattern: str, path: str, hit: bool) -> None:
    assert matches(pattern, path) is hit


def test_a_symbolic_link_is_never_read(repo: Path, tmp_path_factory: pytest.TempPathFactory
                                       ) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.md").write_text("secret\n")
    (repo / "via").symlink_to(outside, target_is_directory=True)
    (repo / "docs" / "link.md").symlink_to(outside / "secret.md")
    for path in ("via/secret.md", "docs/link.md"):
        with pytest.raises(OSError):
            read_document(repo, path)
    assert read_document(repo, "docs/a.md") == b"# a.md\n"


def test_a_first_sync_uploads_every_document(repo: Path) -> None:
    docs, _ = documents(repo, base("docs/*.md"))
    actions = plan_documents("Family", docs, [], set())
    assert [(a.kind, a.path) for a in actions] == [
        ("upload", "docs/a.md"), ("upload", "docs/b.md"), ("upload", "docs/c.md")]


def test_editing_one_document_resyncs_only_that_one(repo: Path) -> None:
    kb = base("docs/*.md")
    holds = held(repo, kb)
    docs, _ = documents(repo, kb)
    assert plan_documents("Family", docs, holds, {d.path for d in docs}) == []
    (repo / "docs" / "b.md").write_text("# b, edited\n")
    docs, _ = documents(repo, kb)
    assert [(a.kind, a.path, a.reason, a.stale)
            for a in plan_documents("Family", docs, holds, set())] \
        == [("replace", "docs/b.md", "changed in git", ("f-docs/b.md",))]


def test_removed_in_git_is_removed_and_removed_by_hand_is_put_back(repo: Path) -> None:
    kb = base("docs/*.md")
    holds = held(repo, kb)
    ours = {h.filename for h in holds}
    (repo / "docs" / "c.md").unlink()
    docs, _ = documents(repo, kb)
    present = [h for h in holds if h.filename != "docs/a.md"]  # removed in the admin UI
    actions = plan_documents("Family", docs, present, ours)
    assert [(a.kind, a.path, a.reason, a.stale) for a in actions] == [
        ("upload", "docs/a.md", "missing from Open WebUI", ()),
        ("remove", "docs/c.md", "removed from git", ("f-docs/c.md",))]


def test_two_equal_files_are_uploaded_once(repo: Path) -> None:
    """Open WebUI refuses the second as duplicate content (the example's models.yaml is
    templates/models-8gb.yaml)."""
    (repo / "docs" / "copy.md").write_text("# a.md\n")
    docs, _ = documents(repo, base("docs/*.md"))
    assert [(a.kind, a.path) for a in plan_documents("Family", docs, [], set())] == [
        ("upload", "docs/a.md"), ("upload", "docs/b.md"), ("upload", "docs/c.md")]


def test_what_open_webui_holds_decides_not_lanais_record(repo: Path) -> None:
    """After a restore lanai's record is newer than Open WebUI's data: content already
    there is never uploaded again (Open WebUI refuses duplicate content), content that is
    not is, and a file added by hand under another name is left alone."""
    kb = base("docs/*.md")
    docs, _ = documents(repo, kb)
    restored = [Held("old-a", "docs/a.md", docs[0].sha256),
                Held("old-b", "docs/b.md", "0" * 64),  # the version before the upgrade
                Held("mine", "grandma.pdf", "1" * 64),
                Held("dup", "docs/a.md", docs[0].sha256)]  # added twice
    ours = {d.path for d in docs}  # the record says all three were synced
    actions = plan_documents("Family", docs, restored, ours)
    assert [(a.kind, a.path, a.stale) for a in actions] == [
        ("remove", "docs/a.md", ("dup",)),
        ("replace", "docs/b.md", ("old-b",)),
        ("upload", "docs/c.md", ())]
    # Converged: the same content under another name counts as held.
    moved = [Held(f"f{i}", f"old/{d.path}", d.sha256) for i, d in enumerate(docs)]
    assert plan_documents("Family", docs, moved, set()) == []


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
