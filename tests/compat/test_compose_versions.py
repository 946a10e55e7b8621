"""lanai's generated files through REAL Compose binaries: the floor, Debian 13's, current.

Each test points the docker CLI at one cached static binary (DOCKER_CONFIG/cli-plugins,
the way the CLI finds plugins) and runs the real render(), i.e. `docker compose config`,
which needs no engine. tests/compat/fetch_compose.sh (called by tests/run) caches them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.core.errors import DockerError, StateError
from reconciler.desired.load import load_state
from reconciler.stack import compose, tool_versions
from reconciler.stack.render import LABEL_MANAGED, Rendered, config_error, render, render_key
from tests.compat.versions import VERSIONS, binary

EXAMPLE_STATE = Path(__file__).resolve().parents[2] / "desired-state"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compose-stderr"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Every character that Compose's env file parser treats specially somewhere.
AWKWARD = {
    "WEBUI_SECRET_KEY": "pa$word #1 ${HOME} $$ `x` = \"dq\" 'sq' back\\slash\\",
    "WEBUI_ADMIN_PASSWORD": "  spaced\tand 'quoted' = # not a comment  ",
}


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """The docker CLI of this machine with Compose `request.param` as its plugin."""
    path = binary(request.param)
    assert path.is_file(), f"{path} is missing; run tests/compat/fetch_compose.sh {request.param}"
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(path)
    monkeypatch.setenv("DOCKER_CONFIG", str(plugins.parent))
    assert tool_versions.compose_version() == request.param
    return str(request.param)


def do_render(tmp_path: Path, secrets: dict[str, str], *, gpu_runtime: bool = False,
              start_interval: bool = False) -> Rendered:
    directory = tmp_path / "d"
    shutil.copytree(EXAMPLE_STATE, directory)
    state = load_state(directory, COMMIT)
    key = render_key(COMMIT, state.config, secrets, gpu_runtime=gpu_runtime, salt=b"test",
                     start_interval=start_interval)
    return render(state, secrets, directory, COMMIT, key, gpu_runtime=gpu_runtime,
                  start_interval=start_interval)


def environment(rendered: Rendered, service: str) -> dict[str, str]:
    result = compose.run(rendered.project_handle.config_cmd(), cwd=rendered.directory,
                         timeout=60)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["services"][service]["environment"]
    # `compose config` prints a literal '$' as '$$' (its own escape), in every version.
    return {name: value.replace("$$", "$") for name, value in env.items()}


def test_every_version_reads_the_generated_files(version: str, tmp_path: Path) -> None:
    rendered = do_render(tmp_path, AWKWARD, gpu_runtime=False)
    env = environment(rendered, "open-webui")
    assert {name: env[name] for name in AWKWARD} == AWKWARD
    # `!reset` dropped the GPU reservation (no NVIDIA runtime), and the labels arrived.
    assert not ((rendered.services["ollama"].config.get("deploy") or {}).get("resources", {})
                .get("reservations") or {}).get("devices")
    assert rendered.services["ollama"].config["labels"][LABEL_MANAGED] == "true"


def test_every_version_reads_the_start_interval_override(version: str, tmp_path: Path) -> None:
    """Added only on an engine with API 1.44 (Compose refuses it against older engines at
    `up`), but `config` of every supported Compose must read it."""
    rendered = do_render(tmp_path, AWKWARD, start_interval=True)
    for name in ("ollama", "open-webui", "proxy"):
        check = rendered.services[name].config["healthcheck"]
        assert check["start_interval"] == "1s", (name, check)
        assert check["start_period"], (name, check)


def test_the_old_format_raw_override_is_lanais_fault_not_the_repos(tmp_path: Path,
                                                                   monkeypatch: pytest.
                                                                   MonkeyPatch) -> None:
    """The first-deploy failure of issue 12 on Debian 13 (Compose 2.26.1), classified."""
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary("2.26.1"))
    monkeypatch.setenv("DOCKER_CONFIG", str(plugins.parent))
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "compose.yaml").write_text("services:\n  web:\n    image: busybox:1\n")
    (directory / "s.env").write_text("K='v'\n")
    (directory / compose.OVERRIDE_FILE).write_text(
        f"services:\n  web:\n    env_file:\n    - path: {directory / 's.env'}\n"
        "      format: raw\n")
    project = compose.Project("lanai", directory, "compose.yaml")
    result = compose.run(project.config_cmd(), cwd=directory, timeout=60)
    assert result.returncode != 0
    error = config_error(project, result, timeout=60)
    assert isinstance(error, DockerError)
    assert str(error).startswith("Docker Compose 2.26.1 rejects the file lanai generated (")
    assert "not in your state repo" in str(error)
    assert "fix it in the state repo" not in str(error)


def test_a_broken_user_file_is_still_the_repos_to_fix(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary("2.26.1"))
    monkeypatch.setenv("DOCKER_CONFIG", str(plugins.parent))
    directory = tmp_path / "d"
    shutil.copytree(EXAMPLE_STATE, directory)
    text = (directory / "compose.yaml").read_text()
    # A key Compose does not know: lanai's own checks leave it to Compose.
    (directory / "compose.yaml").write_text(
        text.replace("  ollama:\n", "  ollama:\n    bogus_key: 1\n", 1))
    state_file_error = None
    try:
        do_render_in(directory)
    except StateError as exc:
        state_file_error = str(exc)
    assert state_file_error is not None
    assert state_file_error.startswith("compose.yaml is rejected by docker compose: ")
    assert "bogus_key" in state_file_error
    assert state_file_error.endswith("fix it in the state repo and push again.")


def do_render_in(directory: Path) -> Rendered:
    secrets = {"WEBUI_SECRET_KEY": "k", "WEBUI_ADMIN_PASSWORD": "p"}
    state = load_state(directory, COMMIT)
    key = render_key(COMMIT, state.config, secrets, gpu_runtime=False, salt=b"test")
    return render(state, secrets, directory, COMMIT, key, gpu_runtime=False)


def test_floor_binary_is_the_declared_floor() -> None:
    out = subprocess.run([str(binary(tool_versions.MIN_COMPOSE)), "version", "--short"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().removeprefix("v") == tool_versions.MIN_COMPOSE


def test_every_version_reads_the_profiles_lanai_passes(version: str, tmp_path: Path) -> None:
    """`--profile` switches the example's Prometheus on; a .env in the repo cannot."""
    directory = tmp_path / "d"
    shutil.copytree(EXAMPLE_STATE, directory)
    (directory / ".env").write_text("COMPOSE_PROFILES=monitoring\n")
    state = load_state(directory, COMMIT)
    key = render_key(COMMIT, state.config, AWKWARD, gpu_runtime=False, salt=b"test")
    off = render(state, AWKWARD, directory, COMMIT, key, gpu_runtime=False)
    assert "prometheus" not in off.services
    on = tmp_path / "on"
    shutil.copytree(EXAMPLE_STATE, on)
    text = (on / "lanai.yaml").read_text()
    (on / "lanai.yaml").write_text(text.replace("# profiles: [monitoring]",
                                                "profiles: [monitoring]"))
    state = load_state(on, COMMIT)
    rendered = render(state, AWKWARD, on, COMMIT, key, gpu_runtime=False)
    assert rendered.services["prometheus"].config["network_mode"] == "host"
    assert rendered.services["prometheus"].config["labels"][LABEL_MANAGED] == "true"
