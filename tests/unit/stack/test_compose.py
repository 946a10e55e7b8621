"""compose.Project argument lists (exact), the environment compose sees, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.errors import DockerError, ExitCode
from reconciler.stack import compose
from reconciler.stack.compose import Project

STDERR = Path(__file__).resolve().parents[2] / "fixtures" / "compose-stderr"
DIR = Path("/var/lib/lanai/deployments/abc123def456-0a1b2c3d")
BASE = ["docker", "compose", "--project-name", "lanai", "--project-directory", str(DIR),
        "--file", f"{DIR}/compose.yaml", "--file", f"{DIR}/lanai.override.yaml"]


@pytest.fixture
def project() -> Project:
    return Project("lanai", DIR, "compose.yaml")


def test_base(project: Project) -> None:
    assert project.base() == BASE


def test_config(project: Project) -> None:
    assert project.config_cmd() == [*BASE, "config", "--format", "json"]


def test_pull(project: Project) -> None:
    assert project.pull_cmd(["ollama", "open-webui"]) == [
        *BASE, "pull", "ollama", "open-webui"]
    assert project.pull_cmd([]) == [*BASE, "pull"]


def test_up_without_remove_orphans(project: Project) -> None:
    assert project.up_cmd(["ollama"], remove_orphans=False) == [
        *BASE, "up", "--detach", "--pull", "never", "ollama"]


def test_up_with_remove_orphans(project: Project) -> None:
    assert project.up_cmd([], remove_orphans=True) == [
        *BASE, "up", "--detach", "--pull", "never", "--remove-orphans"]


def test_profiles_reach_every_command() -> None:
    project = Project("lanai", DIR, "compose.yaml", ("monitoring", "media"))
    flags = ["--profile", "monitoring", "--profile", "media"]
    assert project.base() == [*BASE, *flags]
    assert project.config_cmd(override=False) == [*BASE[:-2], *flags, "config", "--format",
                                                  "json"]
    assert project.up_cmd(["web"], remove_orphans=True) == [
        *BASE, *flags, "up", "--detach", "--pull", "never", "--remove-orphans", "web"]
    assert project.logs_cmd(["prometheus"], tail=5, follow=False) == [
        *BASE, *flags, "logs", "--no-color", "--tail", "5", "prometheus"]


def test_remove(project: Project) -> None:
    assert project.remove_cmd(["prometheus"]) == [*BASE, "rm", "--stop", "--force",
                                                  "prometheus"]


def test_restart(project: Project) -> None:
    assert project.restart_cmd(["open-webui"]) == [*BASE, "restart", "open-webui"]


def test_logs(project: Project) -> None:
    assert project.logs_cmd([], tail=None, follow=False) == [*BASE, "logs", "--no-color"]
    assert project.logs_cmd(["ollama"], tail=50, follow=True, timestamps=True) == [
        *BASE, "logs", "--no-color", "--tail", "50", "--follow", "--timestamps", "ollama"]
    assert project.logs_cmd(["ollama"], tail=0, follow=False) == [
        *BASE, "logs", "--no-color", "--tail", "0", "ollama"]


def test_other_compose_file_name() -> None:
    argv = Project("home", Path("/d"), "stack/compose.yml").config_cmd()
    assert argv[:10] == ["docker", "compose", "--project-name", "home", "--project-directory",
                         "/d", "--file", "/d/stack/compose.yml", "--file",
                         "/d/lanai.override.yaml"]


@pytest.mark.parametrize(("argv", "verb"), [
    ([*BASE, "config", "--format", "json"], "config"),
    ([*BASE, "up", "--detach"], "up"),
    ([*BASE, "pull", "ollama"], "pull"),
    (BASE, "compose"),
    ([*BASE, "--profile", "monitoring", "rm", "--stop"], "rm"),
])
def test_subcommand(argv: list[str], verb: str) -> None:
    assert compose.subcommand(argv) == verb


def test_compose_env_passes_only_the_allowed_variables() -> None:
    environ = {
        "PATH": "/opt/bin:/usr/bin", "HOME": "/root", "DOCKER_HOST": "unix:///run/d.sock",
        "DOCKER_CONFIG": "/root/.docker", "DOCKER_CONTEXT": "default",
        "WEBUI_SECRET_KEY": "must-not-pass", "OLLAMA_KEEP_ALIVE": "1h",
        "COMPOSE_PROJECT_NAME": "other", "COMPOSE_FILE": "/tmp/evil.yaml",
        "COMPOSE_PROFILES": "x", "LANAI_HOME": "/x", "TAG": "latest",
    }
    # COMPOSE_PROFILES is set, empty, so that a .env in the state repo cannot set it.
    assert compose.compose_env(environ) == {
        "PATH": "/opt/bin:/usr/bin", "HOME": "/root", "DOCKER_HOST": "unix:///run/d.sock",
        "DOCKER_CONFIG": "/root/.docker", "DOCKER_CONTEXT": "default", "COMPOSE_PROFILES": ""}


def test_compose_env_has_a_default_path() -> None:
    assert compose.compose_env({}) == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "COMPOSE_PROFILES": ""}


def test_run_hides_the_callers_environment(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("WEBUI_SECRET_KEY", "do-not-leak")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    script = "import os, json; print(json.dumps(sorted(os.environ)))"
    result = compose.run([sys.executable, "-c", script], cwd=tmp_path, timeout=30)
    assert result.returncode == 0
    names = set(json.loads(result.stdout))
    assert "WEBUI_SECRET_KEY" not in names
    assert "DOCKER_HOST" in names


def test_run_without_the_binary(tmp_path: Path) -> None:
    with pytest.raises(DockerError) as info:
        compose.run([str(tmp_path / "no-docker"), "compose", "version"], cwd=tmp_path,
                    timeout=5)
    assert "docker CLI is not installed" in str(info.value)
    assert info.value.exit_code == ExitCode.DOCKER
    assert info.value.deterministic is False


def test_run_that_hangs(tmp_path: Path) -> None:
    with pytest.raises(DockerError) as info:
        compose.run(["sleep", "30"], cwd=tmp_path, timeout=0.2)  # killed at the timeout
    assert "did not finish within 0s" in str(info.value)
    assert "docker info" in str(info.value)


def completed(stderr: str, returncode: int = 1, stdout: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["docker"], returncode, stdout=stdout, stderr=stderr)


def recorded(name: str) -> str:
    return (STDERR / name).read_text()


def test_error_text_drops_log_noise() -> None:
    stderr = (
        'time="2024-05-01T10:00:00Z" level=warning msg="version is obsolete"\n'
        "\n"
        "#1 [internal] load build definition\n"
        "Error response from daemon: manifest for ollama/ollama:9.9.9 not found\n"
        'level=debug msg="done"\n')
    assert compose.error_text(completed(stderr)) == "manifest for ollama/ollama:9.9.9 not found"


def test_error_text_of_a_real_port_conflict() -> None:
    text = compose.error_text(completed(recorded("up-port-already-allocated.txt")))
    assert "Bind for 127.0.0.1:18999 failed: port is already allocated" in text
    assert "\n" not in text
    assert compose.port_in_use(text)


def test_error_text_of_a_real_pull_without_dns() -> None:
    text = compose.error_text(completed(recorded("pull-no-such-host.txt")))
    assert "lookup registry-1.docker.io on 10.255.255.53:53: no such host" in text
    assert compose.pull_failure_is_transient(text) is True


@pytest.mark.parametrize(("name", "expected"), [
    ("up-port-already-allocated.txt",
     "driver failed programming external connectivity on endpoint lanaifxpc-web-1 "
     "(2590d0e24962eca78c70ded6f8281e6fe6cefff1509f639ec6a3ff7a6e10abf6): Bind for "
     "127.0.0.1:18999 failed: port is already allocated"),
    ("pull-no-such-host.txt",
     'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on '
     "10.255.255.53:53: no such host"),
])
def test_error_text_is_only_the_error(name: str, expected: str) -> None:
    assert compose.error_text(completed(recorded(name))) == expected


def test_error_text_strips_the_daemon_prefix() -> None:
    stderr = "Error response from daemon: manifest for ollama/ollama:9.9.9 not found\n"
    assert compose.error_text(completed(stderr)) == "manifest for ollama/ollama:9.9.9 not found"


def test_error_text_falls_back_to_stdout_then_exit_status() -> None:
    assert compose.error_text(completed("", stdout="service \"x\" has no image\n")) == (
        'service "x" has no image')
    assert compose.error_text(completed("", returncode=17)) == "exit status 17"
    assert compose.error_text(completed('level=warning msg="x"\n', returncode=3)) == (
        "exit status 3")


TRANSIENT = [
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
    "registry-1.docker.io: no such host",
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
    "registry-1.docker.io on 127.0.0.53:53: no such host",
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp '
    "44.205.64.79:443: i/o timeout",
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": net/http: request '
    "canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)",
    "toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
    'Error response from daemon: Head "https://ghcr.io/v2/open-webui/open-webui/manifests/'
    'v0.12.4": dial tcp 140.82.121.33:443: connect: connection refused',
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": EOF',
    "error pulling image configuration: download failed after attempts=6: "
    "net/http: TLS handshake timeout",
    'Error response from daemon: received unexpected HTTP status: 503 Service Unavailable',
]
DETERMINISTIC = [
    "Error response from daemon: manifest for ollama/ollama:9.9.9 not found: manifest unknown: "
    "manifest unknown",
    "Error response from daemon: pull access denied for lanai/nothing, repository does not "
    "exist or may require 'docker login': denied: requested access to the resource is denied",
    'Error response from daemon: Head "https://ghcr.io/v2/open-webui/open-webui/manifests/'
    'v9.9.9": unauthorized',
    "invalid reference format",
]


@pytest.mark.parametrize("text", TRANSIENT)
def test_transient_pull_failures(text: str) -> None:
    assert compose.pull_failure_is_transient(text) is True


@pytest.mark.parametrize("text", DETERMINISTIC)
def test_deterministic_pull_failures(text: str) -> None:
    assert compose.pull_failure_is_transient(text) is False


@pytest.mark.parametrize("text", [
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp '
    "44.205.64.79:443: connect: no route to host",
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
    "registry-1.docker.io on 10.0.0.1:53: server misbehaving",
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": context deadline '
    "exceeded",
])
def test_more_transient_network_failures(text: str) -> None:
    assert compose.pull_failure_is_transient(text) is True


@pytest.mark.parametrize(("text", "busy"), [
    ("Bind for 0.0.0.0:3000 failed: port is already allocated", True),
    ("failed to bind host port for 0.0.0.0:3000:172.18.0.3:8080/tcp: address already in use",
     True),
    ("Error starting userland proxy: listen tcp4 0.0.0.0:3000: bind: Address already in use",
     True),
    ("manifest unknown", False),
])
def test_port_in_use(text: str, busy: bool) -> None:
    assert compose.port_in_use(text) is busy


def test_run_streams_lines_and_keeps_them_for_the_error(tmp_path: Path) -> None:
    seen: list[str] = []
    result = compose.run(["sh", "-c", "echo one; echo two >&2; exit 3"], cwd=tmp_path,
                         timeout=10, on_line=seen.append)
    assert sorted(seen) == ["one", "two"]
    assert result.returncode == 3 and "two" in result.stderr


def test_run_stops_a_hung_command_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DockerError, match="did not finish within 1s"):
        compose.run(["sleep", "30"], cwd=tmp_path, timeout=1, on_line=lambda _line: None)


def test_pull_progress_throttles_download_lines_but_passes_events() -> None:
    from reconciler.stack.apply import PullProgress

    shown: list[str] = []
    progress = PullProgress(shown.append)
    for line in [" web Pulling", " abc Downloading [=>  ] 1MB/9MB",
                 " abc Downloading [==> ] 2MB/9MB", " abc Pull complete", "", " web Pulled"]:
        progress(line)
    assert shown == ["web Pulling", "abc Downloading [=>  ] 1MB/9MB", "abc Pull complete",
                     "web Pulled"]
