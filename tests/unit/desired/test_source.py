"""The git source against real bare repos on disk (git is a real part here too)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from reconciler.core.errors import SourceError, StateError
from reconciler.desired.source import GitSource, git_reason


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x.invalid", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "state.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    (work / "compose.yaml").write_text("services: {}\n")
    (work / "sub").mkdir()
    (work / "sub" / "file.txt").write_text("hello\n")
    git(work, "checkout", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "First commit")
    git(work, "push", "-q", "origin", "main")
    return bare


def test_fetch_head_info_and_export(remote: Path, tmp_path: Path) -> None:
    source = GitSource(str(remote), tmp_path / "mirror.git")
    source.fetch()
    head = source.branch_head("main")
    assert len(head) == 40
    assert source.info(head).subject == "First commit"
    assert source.read_file(head, "compose.yaml") == "services: {}"
    assert source.read_file(head, "missing.yaml") is None
    out = tmp_path / "out"
    source.export(head, out)
    assert (out / "sub" / "file.txt").read_text() == "hello\n"
    assert source.resolve("main") == head == source.resolve(head[:12])


def test_unknown_branch_is_a_deterministic_error_naming_the_fix(remote: Path,
                                                                tmp_path: Path) -> None:
    source = GitSource(str(remote), tmp_path / "mirror.git")
    source.fetch()
    with pytest.raises(SourceError) as info:
        source.branch_head("production")
    assert info.value.deterministic
    assert "source.branch" in info.value.message


def test_unreachable_remote_is_transient_with_gits_reason(tmp_path: Path) -> None:
    source = GitSource(str(tmp_path / "nowhere.git"), tmp_path / "mirror.git")
    with pytest.raises(SourceError) as info:
        source.fetch()
    assert not info.value.deterministic
    assert "does not appear to be a git repository" in info.value.message
    assert "the stack keeps running" in info.value.message


def test_git_reason_takes_the_fatal_line_not_the_advice() -> None:
    stderr = ("fatal: 'x' does not appear to be a git repository\n"
              "fatal: Could not read from remote repository.\n\n"
              "Please make sure you have the correct access rights\nand the repository exists.\n")
    assert git_reason(stderr) == "'x' does not appear to be a git repository"
    assert git_reason("  stderr: 'error: RPC failed'\n") == "RPC failed"
    assert git_reason("just text\n") == "just text"


def test_ssh_command_uses_the_deploy_key_only_when_it_exists(tmp_path: Path) -> None:
    from reconciler.desired.source import ssh_command

    key = tmp_path / "deploy key"
    assert ssh_command(key) == "ssh -o BatchMode=yes"
    key.write_text("not really a key")
    assert ssh_command(key) == (
        f"ssh -o BatchMode=yes -i '{key}' -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={shlex.quote(str(tmp_path / 'known_hosts'))} "
        "-o StrictHostKeyChecking=accept-new")


def test_a_link_out_of_the_repo_is_refused_naming_it(remote: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "docs").mkdir()
    (work / "docs" / "shadow.md").symlink_to("/etc/shadow")
    (work / "docs" / "inside.md").symlink_to("../compose.yaml")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Links")
    git(work, "push", "-q", "origin", "main")
    source = GitSource(str(remote), tmp_path / "mirror.git")
    source.fetch()
    with pytest.raises(StateError) as info:
        source.export(source.branch_head("main"), tmp_path / "out")
    assert info.value.message.startswith("docs/shadow.md is a symbolic link to /etc/shadow, "
                                         "outside the state repo")
