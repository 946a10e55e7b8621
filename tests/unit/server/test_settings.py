"""Server settings: /etc/lanai/server.yaml, overridden by LANAI_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode, NotSetUp
from reconciler.server.settings import load_settings


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "server.yaml"
    settings = load_settings({"LANAI_CONFIG": str(missing)})
    assert settings.home == Path("/var/lib/lanai")
    assert settings.repo is None
    assert settings.branch is None
    assert settings.secrets_file == Path("/etc/lanai/secrets.env")
    assert settings.config_file == missing


def test_paths_under_home(tmp_path: Path) -> None:
    settings = load_settings({"LANAI_CONFIG": str(tmp_path / "none"),
                              "LANAI_HOME": str(tmp_path)})
    assert settings.state_file == tmp_path / "state.json"
    assert settings.history_file == tmp_path / "history.jsonl"
    assert settings.clone_dir == tmp_path / "repo.git"
    assert settings.deployments_dir == tmp_path / "deployments"
    assert settings.env_dir == tmp_path / "env"
    assert settings.lock_dir == tmp_path / "lock"
    assert settings.suspend_file == tmp_path / "suspended.json"
    assert settings.socket_path == tmp_path / "daemon.sock"


def test_from_file(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("home: /srv/lanai\nrepo: /srv/git/state.git\nbranch: prod\n"
                      "secrets_file: /srv/secrets.env\n")
    settings = load_settings({"LANAI_CONFIG": str(config)})
    assert (settings.home, settings.repo, settings.branch, settings.secrets_file) == (
        Path("/srv/lanai"), "/srv/git/state.git", "prod", Path("/srv/secrets.env"))
    assert settings.require_repo() == "/srv/git/state.git"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("home: /srv/lanai\nrepo: /srv/git/state.git\n")
    settings = load_settings({"LANAI_CONFIG": str(config), "LANAI_REPO": "ssh://h/state.git",
                              "LANAI_HOME": str(tmp_path), "LANAI_BRANCH": "staging",
                              "LANAI_SECRETS_FILE": str(tmp_path / "s.env")})
    assert (settings.home, settings.repo, settings.branch, settings.secrets_file) == (
        tmp_path, "ssh://h/state.git", "staging", tmp_path / "s.env")


def test_empty_environment_value_falls_back_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("repo: /srv/git/state.git\n")
    settings = load_settings({"LANAI_CONFIG": str(config), "LANAI_REPO": ""})
    assert settings.repo == "/srv/git/state.git"


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("# nothing yet\n")
    assert load_settings({"LANAI_CONFIG": str(config)}).home == Path("/var/lib/lanai")


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("repo: /srv/git/state.git\nrepository: x\nbranches: y\n")
    with pytest.raises(NotSetUp) as info:
        load_settings({"LANAI_CONFIG": str(config)})
    assert str(info.value) == (f"{config} has unknown key(s) branches, repository; known keys "
                               "are home, repo, branch, secrets_file, deploy_key, ollama_url, "
                               "webhook_listen, metrics_listen.")
    assert info.value.exit_code == ExitCode.NOT_SET_UP


def test_invalid_yaml_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("repo: [unclosed\n")
    with pytest.raises(NotSetUp, match="is not valid YAML"):
        load_settings({"LANAI_CONFIG": str(config)})


def test_non_mapping_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("- repo\n")
    with pytest.raises(NotSetUp, match="must be a mapping"):
        load_settings({"LANAI_CONFIG": str(config)})


def test_require_repo_without_one(tmp_path: Path) -> None:
    settings = load_settings({"LANAI_CONFIG": str(tmp_path / "server.yaml")})
    with pytest.raises(NotSetUp) as info:
        settings.require_repo()
    assert "no state repo is configured" in str(info.value)
    assert "LANAI_REPO" in str(info.value)


def test_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANAI_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("LANAI_REPO", "/from/env.git")
    assert load_settings().repo == "/from/env.git"


def test_deploy_key_lives_beside_the_config_unless_named(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    assert load_settings({"LANAI_CONFIG": str(config)}).deploy_key == tmp_path / "deploy_key"
    named = load_settings({"LANAI_CONFIG": str(config), "LANAI_DEPLOY_KEY": "/k/key"})
    assert named.deploy_key == Path("/k/key")
