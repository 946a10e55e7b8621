"""Nothing from a commit is followed out of its tree: real git commits with symbolic links
are unpacked by GitSource.export and rendered, and nothing outside the tree is written."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode, StateError
from reconciler.desired import bounded, safe_tree
from reconciler.desired.load import load_state
from reconciler.desired.source import GitSource
from reconciler.stack.render import GENERATED, render

from ..conftest import EXAMPLE_STATE

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x.invalid", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A state repo with a working copy: commit() pushes what is in `work`."""

    def __init__(self, tmp_path: Path) -> None:
        self.bare = tmp_path / "state.git"
        self.work = tmp_path / "work"
        git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(self.bare))
        shutil.copytree(EXAMPLE_STATE, self.work)
        git(self.work, "init", "-q", "--initial-branch=main")
        self.source = GitSource(str(self.bare), tmp_path / "mirror.git")
        self.out = tmp_path / "deployments" / "out"

    def commit(self) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", "change")
        git(self.work, "push", "-q", "-f", str(self.bare), "main")
        self.source.fetch()
        return self.source.branch_head("main")

    def export_error(self) -> StateError:
        with pytest.raises(StateError) as caught:
            self.source.export(self.commit(), self.out)
        assert caught.value.exit_code == ExitCode.INVALID
        assert "\n" not in str(caught.value)
        assert not self.out.exists()  # nothing half-unpacked is left behind
        return caught.value


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the tree with a file that must stay as it is."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "victim").write_text("untouched\n")
    return place


def untouched(outside: Path) -> bool:
    return [p.name for p in outside.iterdir()] == ["victim"] \
        and (outside / "victim").read_text() == "untouched\n"


def test_a_link_with_an_absolute_target_is_refused(repo: Repo, outside: Path) -> None:
    os.symlink(outside / "victim", repo.work / "notes.txt")
    error = repo.export_error()
    assert str(error).startswith(f"notes.txt is a symbolic link to {outside / 'victim'}, "
                                 "outside the state repo")
    assert untouched(outside)


def test_a_link_climbing_out_of_the_tree_is_refused(repo: Repo) -> None:
    os.symlink("../../../../../../etc", repo.work / "config")
    assert str(repo.export_error()).startswith("config is a symbolic link to ../../../../../../"
                                               "etc, which leads outside the state repo")


def test_links_that_lead_out_only_together_are_refused(repo: Repo) -> None:
    # Each looks harmless on its own; followed on disk, here/.. is the tree's parent.
    os.symlink(".", repo.work / "here")
    os.symlink("here/..", repo.work / "up")
    assert str(repo.export_error()).startswith("up is a symbolic link to here/..")


def test_links_inside_the_tree_are_kept(repo: Repo) -> None:
    (repo.work / "models").mkdir()
    (repo.work / "models" / "helper.Modelfile").write_text("FROM phi3:mini\n")
    os.symlink("models/helper.Modelfile", repo.work / "Modelfile")
    os.symlink("models", repo.work / "more-models")
    repo.source.export(repo.commit(), repo.out)
    assert (repo.out / "Modelfile").is_symlink()
    assert (repo.out / "Modelfile").read_text() == "FROM phi3:mini\n"
    assert (repo.out / "more-models" / "helper.Modelfile").is_file()
    assert (repo.out / "compose.yaml").read_bytes() == (EXAMPLE_STATE / "compose.yaml"
                                                        ).read_bytes()


def test_an_executable_keeps_its_bit_and_nothing_gets_setuid(repo: Repo) -> None:
    script = repo.work / "hook.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o4777)
    repo.source.export(repo.commit(), repo.out)
    assert (repo.out / "hook.sh").stat().st_mode & 0o7777 == 0o755
    assert (repo.out / "compose.yaml").stat().st_mode & 0o7777 == 0o644


@pytest.mark.parametrize("name", GENERATED)
def test_a_commit_holding_a_name_lanai_generates_is_refused_by_render(
        repo: Repo, outside: Path, name: str) -> None:
    # A link inside the tree is unpacked; render must not write through it, nor over it.
    target = repo.work / "dir-for-link"
    target.mkdir()
    os.symlink("dir-for-link" if name.startswith(".") else "compose.yaml", repo.work / name)
    commit = repo.commit()
    repo.source.export(commit, repo.out)
    state = load_state(repo.out, commit)
    before = (repo.out / "compose.yaml").read_bytes()
    with pytest.raises(StateError) as caught:
        render(state, {}, repo.out, commit, "key", gpu_runtime=False)
    assert str(caught.value).startswith(f"{name} is in the state repo, but lanai generates "
                                        "that file on the server; remove it from the repo")
    assert caught.value.exit_code == ExitCode.INVALID
    assert (repo.out / "compose.yaml").read_bytes() == before
    assert list(target.iterdir()) == []


def test_render_refuses_a_link_to_outside_even_in_a_directory_not_from_git(
        tmp_path: Path, outside: Path) -> None:
    state_dir = tmp_path / "state"
    shutil.copytree(EXAMPLE_STATE, state_dir)
    os.symlink(outside, state_dir / ".lanai-secrets")
    os.symlink(outside / "victim", state_dir / "lanai.override.yaml")
    with pytest.raises(StateError):
        render(load_state(state_dir), {"WEBUI_SECRET_KEY": "s", "WEBUI_ADMIN_PASSWORD": "p"},
               state_dir, COMMIT, "key", gpu_runtime=False)
    assert untouched(outside)


def test_write_generated_replaces_a_link_that_appeared_instead_of_following_it(
        tmp_path: Path, outside: Path) -> None:
    os.symlink(outside / "victim", tmp_path / "lanai.desired.json")
    safe_tree.write_generated(tmp_path, "lanai.desired.json", "{}", 0o644)
    assert not (tmp_path / "lanai.desired.json").is_symlink()
    assert (tmp_path / "lanai.desired.json").read_text() == "{}"
    assert untouched(outside)


def test_a_tree_over_the_file_limit_is_refused_before_anything_is_written(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = repo.commit()
    files = int(git(repo.work, "ls-files", "-z").count("\0"))
    monkeypatch.setattr(bounded, "MAX_TREE_FILES", files - 1)
    with pytest.raises(StateError) as caught:
        repo.source.export(commit, repo.out)
    assert str(caught.value).startswith(f"the commit has more than {files - 1} files")
    assert not repo.out.exists()
    monkeypatch.setattr(bounded, "MAX_TREE_FILES", files)
    repo.source.export(commit, repo.out)


def test_a_tree_over_the_size_limit_is_refused(repo: Repo,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (repo.work / "weights.bin").write_bytes(b"\0" * 300_000)
    monkeypatch.setattr(bounded, "MAX_TREE_BYTES", 256 * 1024)
    assert str(repo.export_error()).startswith("the commit's files are larger than 256 KiB "
                                               "together")


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize(("info", "message"), [
    (member("/etc/cron.d/x"), "'/etc/cron.d/x' is not a path inside the state repo"),
    (member("a/../../x"), "'a/../../x' is not a path inside the state repo"),
    (member("hard", tarfile.LNKTYPE, "compose.yaml"), "hard is a hard link"),
    (member("dev", tarfile.CHRTYPE), "dev is a device file or FIFO"),
    (member("fifo", tarfile.FIFOTYPE), "fifo is a device file or FIFO"),
])
def test_members_git_never_makes_are_refused_too(tmp_path: Path, info: tarfile.TarInfo,
                                                 message: str) -> None:
    """Defence in depth: the checks do not rely on the archive coming from git."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(StateError) as caught:
        safe_tree.extract(tar_of((member("compose.yaml"), b"x"), (info, b"")), dest)
    assert str(caught.value).startswith(message)
    assert not (tmp_path / "x").exists() and not Path("/etc/cron.d/x").exists()


def test_a_file_under_a_link_of_the_same_archive_is_refused(tmp_path: Path,
                                                            outside: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = tar_of((member("d", tarfile.SYMTYPE, str(outside)), b""),
                     (member("d/victim"), b"owned\n"))
    with pytest.raises(StateError):
        safe_tree.extract(archive, dest)
    assert untouched(outside)


def test_read_file_skips_a_file_over_the_size_limit(repo: Repo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon reads lanai.yaml of main's head for source.branch before the commit is
    loaded: a huge one is not read into memory (loading the commit reports it)."""
    commit = repo.commit()
    size = (repo.work / "lanai.yaml").stat().st_size
    monkeypatch.setattr(bounded, "MAX_FILE_BYTES", size)
    assert repo.source.read_file(commit, "lanai.yaml") is not None
    monkeypatch.setattr(bounded, "MAX_FILE_BYTES", size - 1)
    assert repo.source.read_file(commit, "lanai.yaml") is None
