"""`lanai setup config`: the server config and the secrets file (bootstrap.sh's step 5)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.server.secrets import read_secrets
from reconciler.server.settings import load_settings
from reconciler.setup.base import E_SETUP, SetupError, SetupPaths
from reconciler.setup.config import Wanted, parse_secrets_file, step_config, step_secrets


def test_config_is_written_once_then_kept(paths: SetupPaths, root: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    step_config(paths, Wanted(), dry_run=False)
    assert "✓ config: wrote" in capsys.readouterr().out
    config = root / "etc" / "lanai" / "server.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert yaml.safe_load(config.read_text()) == {
        "home": f"{root}/var/lib/lanai", "repo": f"{root}/srv/lanai/state.git",
        "secrets_file": f"{root}/etc/lanai/secrets.env"}
    step_config(paths, Wanted(), dry_run=False)
    assert "already set up" in capsys.readouterr().out

    settings = load_settings({"LANAI_CONFIG": str(config)})
    assert settings.repo == f"{root}/srv/lanai/state.git"
    assert settings.home == root / "var" / "lib" / "lanai"


def test_state_repo_url_and_branch_update_an_existing_config(
        paths: SetupPaths, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_config(paths, Wanted(), dry_run=False)
    config = root / "etc" / "lanai" / "server.yaml"
    step_config(paths, Wanted("git@example.invalid:me/state.git", "prod"), dry_run=False)
    assert "set repo branch" in capsys.readouterr().out
    data = yaml.safe_load(config.read_text())
    assert data["repo"] == "git@example.invalid:me/state.git"
    assert data["branch"] == "prod"
    assert data["home"] == f"{root}/var/lib/lanai"
    assert config.read_text().startswith("# lanai's server config")


def test_a_config_that_is_not_yaml_is_refused_and_kept(paths: SetupPaths) -> None:
    paths.config.parent.mkdir(parents=True)
    paths.config.write_text("repo: [unclosed\n")
    with pytest.raises(SetupError) as failed:
        step_config(paths, Wanted(branch="prod"), dry_run=False)
    assert failed.value.code == E_SETUP
    assert "could not be read as YAML" in failed.value.message
    assert paths.config.read_text() == "repo: [unclosed\n"


def test_a_dry_run_writes_nothing(paths: SetupPaths, root: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    step_config(paths, Wanted(), dry_run=True)
    step_secrets(paths, None, dry_run=True)
    out = capsys.readouterr().out
    assert f"· config: would write {paths.config}" in out
    assert f"· secrets: would create {paths.secrets_file} (mode 0600)" in out
    assert not root.exists()


def test_secrets_are_generated_once_kept_and_merged_from_a_file(
        paths: SetupPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets_file = paths.secrets_file
    step_secrets(paths, None, dry_run=False)
    first = capsys.readouterr()
    assert "generated WEBUI_SECRET_KEY, generated WEBUI_ADMIN_PASSWORD" in first.out
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    key = read_secrets(secrets_file)["WEBUI_SECRET_KEY"]
    admin = read_secrets(secrets_file)["WEBUI_ADMIN_PASSWORD"]
    assert len(key) >= 40 and len(admin) >= 40 and key != admin

    step_secrets(paths, None, dry_run=False)
    assert "already set up" in capsys.readouterr().out
    assert read_secrets(secrets_file)["WEBUI_SECRET_KEY"] == key

    given = tmp_path / "more.env"
    given.write_text("# cloud keys\nOPENAI_API_KEY=sk-not-a-real-key-4242\n"
                     "export ANTHROPIC_API_KEY='an-thropic 99'\n")
    given.chmod(0o600)
    step_secrets(paths, given, dry_run=False)
    merged = capsys.readouterr()
    assert "set ANTHROPIC_API_KEY, set OPENAI_API_KEY" in merged.out
    values = read_secrets(secrets_file)
    assert values == {"WEBUI_SECRET_KEY": key, "WEBUI_ADMIN_PASSWORD": admin,
                      "OPENAI_API_KEY": "sk-not-a-real-key-4242",
                      "ANTHROPIC_API_KEY": "an-thropic 99"}
    for secret in (key, admin, "sk-not-a-real-key-4242", "an-thropic 99"):
        assert secret not in merged.out + merged.err
        assert secret not in first.out + first.err
    step_secrets(paths, given, dry_run=False)
    assert "already set up" in capsys.readouterr().out


def test_a_secrets_file_others_can_read_is_used_with_a_warning(
        paths: SetupPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    given = tmp_path / "shared.env"
    given.write_text("OPENAI_API_KEY=sk-shared\n")
    given.chmod(0o644)
    step_secrets(paths, given, dry_run=False)
    assert f"{given} can be read by other users" in capsys.readouterr().err
    assert read_secrets(paths.secrets_file)["OPENAI_API_KEY"] == "sk-shared"


def test_a_bad_secrets_file_is_refused_without_its_value(paths: SetupPaths,
                                                         tmp_path: Path) -> None:
    given = tmp_path / "bad.env"
    given.write_text("OPENAI_API_KEY sk-oops\n")
    given.chmod(0o600)
    with pytest.raises(SetupError) as failed:
        step_secrets(paths, given, dry_run=False)
    assert failed.value.code == E_SETUP
    assert "line 1 is not NAME=value" in failed.value.message
    assert "sk-oops" not in failed.value.message


@pytest.mark.parametrize("text", ["=value\n", "lower=x\n", "EMPTY=\n", "NO_SEPARATOR\n"])
def test_lines_that_are_not_name_value_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="line 1 is not NAME=value"):
        parse_secrets_file(text)


def test_the_command_exits_with_bootstraps_code_and_one_sentence(
        env: dict[str, str], venv: Path, tmp_path: Path) -> None:
    """What bootstrap.sh runs: `lanai setup config`, its ✗ line and exit code 9."""
    given = tmp_path / "bad.env"
    given.write_text("OPENAI_API_KEY sk-oops\n")
    result = subprocess.run([str(venv / "bin" / "lanai"), "setup", "config",
                             "--secrets-file", str(given)], env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == E_SETUP, result.stderr
    assert result.stderr.splitlines()[-1].startswith("✗ cannot use --secrets-file")
    assert "sk-oops" not in result.stdout + result.stderr
    assert "✓ config: wrote" in result.stdout  # the config came first
