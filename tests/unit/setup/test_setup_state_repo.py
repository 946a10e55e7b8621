"""`lanai setup state-repo`: the bare repo with its hook, or a followed repo with a
deploy key (bootstrap.sh's step 6). Real git, real ssh-keygen, in tmp_path."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.models import lock as models_lock
from reconciler.setup.base import E_SETUP, SetupError, SetupPaths
from reconciler.setup.config import Wanted
from reconciler.setup.state_repo import (
    Seed,
    git_ssh_command,
    lock_for_gpu,
    models_template_for,
    pick_models_template,
    step_state_repo,
)
from tests.unit.setup.conftest import REPO_ROOT

EXAMPLE = Seed(REPO_ROOT / "desired-state", own=False)


def test_state_repo_is_seeded_from_the_example_with_a_hook(
        paths: SetupPaths, root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = root / "srv" / "lanai" / "state.git"
    step_state_repo(paths, Wanted(), EXAMPLE, "", dry_run=False)
    out = capsys.readouterr().out
    assert "created" in out and "post-receive hook" in out
    git = ["git", "-C", str(repo)]
    log = subprocess.run([*git, "log", "--format=%s", "main"], capture_output=True, text=True)
    assert log.stdout.strip() == "Initial state from lanai's example"
    files = subprocess.run([*git, "ls-tree", "--name-only", "main"], capture_output=True,
                           text=True).stdout.split()
    assert files == sorted(p.name for p in (REPO_ROOT / "desired-state").iterdir())
    hook = repo / "hooks" / "post-receive"
    assert "lanai post-receive hook" in hook.read_text()
    assert os.access(hook, os.X_OK)

    step_state_repo(paths, Wanted(), EXAMPLE, "", dry_run=False)
    assert "already set up" in capsys.readouterr().out
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert (clone / "lanai.yaml").read_text() == \
        (REPO_ROOT / "desired-state" / "lanai.yaml").read_text()


def test_a_dry_run_creates_nothing(paths: SetupPaths, root: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    step_state_repo(paths, Wanted(branch="prod"), EXAMPLE, "", dry_run=True)
    assert f"· state repo: would create the bare repo {paths.state_repo} (branch prod)" \
        in capsys.readouterr().out
    assert not root.exists()


def test_a_state_repo_path_that_is_not_a_repo_is_refused(paths: SetupPaths) -> None:
    repo = paths.state_repo
    repo.mkdir(parents=True)
    (repo / "notes.txt").write_text("mine")
    for dry_run in (True, False):
        with pytest.raises(SetupError) as failed:
            step_state_repo(paths, Wanted(), EXAMPLE, "", dry_run=dry_run)
        assert failed.value.code == E_SETUP
        assert "is not a bare git repo" in failed.value.message
    assert (repo / "notes.txt").read_text() == "mine"


def test_a_missing_seed_is_refused_and_leaves_no_repo(paths: SetupPaths,
                                                      tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="is missing, so the state repo cannot be seeded"):
        step_state_repo(paths, Wanted(), Seed(tmp_path / "nowhere", own=True), "",
                        dry_run=False)
    assert not paths.state_repo.exists()


def test_an_ssh_state_repo_gets_a_read_only_deploy_key_once(
        paths: SetupPaths, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "git@git.lanai-nowhere.invalid:me/state.git"
    step_state_repo(paths, Wanted(url), EXAMPLE, "", dry_run=False)
    first = capsys.readouterr()
    key = root / "etc" / "lanai" / "deploy_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = key.with_suffix(".pub").read_text().strip()
    assert public.startswith("ssh-ed25519 ") and "(read-only)" in public
    assert "READ-ONLY deploy key" in first.out and public in first.out
    assert "cannot read" in first.err and "add the deploy key above" in first.err
    assert f"✓ state repo: following {url}" in first.out
    assert not paths.state_repo.exists()
    step_state_repo(paths, Wanted(url), EXAMPLE, "", dry_run=False)
    assert "created" not in capsys.readouterr().out
    assert key.with_suffix(".pub").read_text().strip() == public  # the same key, kept
    assert git_ssh_command(key) == (
        f"ssh -o BatchMode=yes -i {key} -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={key.parent}/known_hosts "
        "-o StrictHostKeyChecking=accept-new")
    assert git_ssh_command(key.parent / "no_key") == "ssh -o BatchMode=yes"


def test_an_https_state_repo_that_cannot_be_read_is_a_warning(
        paths: SetupPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"file://{tmp_path}/missing.git"
    step_state_repo(paths, Wanted(url, "prod"), EXAMPLE, "", dry_run=False)
    out = capsys.readouterr()
    assert "git ls-remote failed" in out.err
    assert f"✓ state repo: following {url} (branch prod)" in out.out
    assert not paths.deploy_key.exists()


@pytest.mark.parametrize(("mib", "template"), [
    (0, "cpu"), (4096, "cpu"), (8192, "8gb"), (12288, "12gb"), (16376, "16gb"),
    (24576, "24gb"), (81559, "24gb")])
def test_the_models_template_matches_the_gpu_memory(mib: int, template: str) -> None:
    assert models_template_for(mib) == template
    assert (REPO_ROOT / "desired-state" / "templates" / f"models-{template}.yaml").is_file()


def test_seeding_without_a_gpu_picks_the_cpu_models_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT / "desired-state", clone)
    pick_models_template(clone, EXAMPLE, 0)
    assert "cpu template" in capsys.readouterr().out
    assert (clone / "models.yaml").read_text() == \
        (REPO_ROOT / "desired-state" / "templates" / "models-cpu.yaml").read_text()
    # The example lock's RTX 3070 is gone: CI must not fit this server's models to it.
    lock = models_lock.loads((clone / "models.lock").read_text())
    assert lock.gpu_memory is None and len(lock.models) >= 4


def test_seeding_with_a_gpu_records_that_gpu_in_the_lock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT / "desired-state", clone)
    pick_models_template(clone, EXAMPLE, 81559, "NVIDIA H100 80GB HBM3")
    assert "the 24gb template" in capsys.readouterr().out
    assert (clone / "models.yaml").read_text() == \
        (REPO_ROOT / "desired-state" / "templates" / "models-24gb.yaml").read_text()
    text = (clone / "models.lock").read_text()
    assert 'name: "NVIDIA H100 80GB HBM3"' in text
    lock = models_lock.loads(text)
    assert lock.gpu_memory == 81559 * 1024 * 1024


def test_the_example_lock_names_the_gpu_the_seeding_replaces() -> None:
    """lock_for_gpu edits lines of the example lock: they must still be there."""
    text = (REPO_ROOT / "desired-state" / "models.lock").read_text()
    assert lock_for_gpu(text, 8192, "x") != text
    assert lock_for_gpu(text, 0, "") != text


def test_a_seed_directory_of_the_users_keeps_its_own_models(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT / "desired-state", clone)
    pick_models_template(clone, Seed(tmp_path / "elsewhere", own=True), 0)
    assert (clone / "models.yaml").read_text() == \
        (REPO_ROOT / "desired-state" / "models.yaml").read_text()
