"""Every failure a user can cause with a push ends in one sentence naming the cause
and the fix, a documented exit code, and the running stack untouched."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from .harness import MINI_STATE, Server, StateRepo, free_port, new_project, wait_for


class Mini:
    def __init__(self, server: Server, port: int) -> None:
        self.server, self.port = server, port
        self.repo = server.repo

    def fingerprint(self) -> dict[str, tuple[str, str]]:
        """Container ids and start times: any restart or recreate changes them."""
        return {name: (c.id, c.attrs["State"]["StartedAt"])
                for name, c in self.server.containers().items()}

    def serving(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def mini(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mini]:
    root = tmp_path_factory.mktemp("bad-input")
    project, port = new_project(), free_port()
    repo = StateRepo(root, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(root, repo, project, docker_client, {"GREETING_KEY": "unused"})
    code, outcome = server.reconcile()
    assert code == 0, outcome
    yield Mini(server, port)
    server.teardown()


@pytest.fixture
def pushed(mini: Mini) -> Iterator[Mini]:
    """Each test pushes one bad commit; afterwards it is reverted and the stack re-synced."""
    start = mini.repo.head()
    yield mini
    if mini.repo.head() != start:
        subprocess.run(["git", "reset", "--quiet", "--hard", start], cwd=mini.repo.work,
                       check=True)
        subprocess.run(["git", "push", "--quiet", "--force", "origin", "HEAD:main"],
                       cwd=mini.repo.work, check=True)
    code, outcome = mini.server.reconcile()
    assert code == 0, outcome
    assert mini.server.status()["sync"] == "Synced"


def expect_failure(mini: Mini, code: int, *fragments: str) -> str:
    """Reconcile via the human CLI; check exit code, one-line message, stack untouched."""
    before = mini.fingerprint()
    result = mini.server.lanai("reconcile")
    assert result.returncode == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = errors[0].removeprefix("error: ")
    for fragment in fragments:
        assert fragment in message, message
    assert mini.fingerprint() == before
    assert mini.serving()
    status = mini.server.status()
    assert status["sync"] == "Failed" and status["head_commit"] == mini.repo.head()
    assert status["last_error"] == message
    return message


def test_malformed_yaml_names_file_and_line(pushed: Mini):
    pushed.repo.write("compose.yaml", pushed.repo.read("compose.yaml").replace(
        "    init: true\n", "    init: true\n   bad indent: [\n", 1))
    pushed.repo.commit_push("Malformed")
    expect_failure(pushed, 2, "compose.yaml:", "invalid YAML", "push again")


def test_unknown_key_names_file_key_path_line_and_suggests(pushed: Mini):
    pushed.repo.replace("lanai.yaml", "  self_heal: true", "  selfheal: true")
    pushed.repo.commit_push("Typo in a key")
    message = expect_failure(pushed, 2, "lanai.yaml:", "sync.selfheal", "unknown key")
    assert "did you mean 'self_heal'?" in message
    line = next(i for i, text in enumerate(pushed.repo.read("lanai.yaml").splitlines(), 1)
                if "selfheal" in text)
    assert f"lanai.yaml:{line}:" in message


def test_wrong_type_names_the_value(pushed: Mini):
    pushed.repo.replace("lanai.yaml", "  health_timeout: 60s", "  health_timeout: soon")
    pushed.repo.commit_push("Wrong type")
    expect_failure(pushed, 2, "lanai.yaml:", "sync.health_timeout", "'soon'")


def test_missing_secret_says_how_to_add_it(pushed: Mini):
    text = pushed.repo.read("lanai.yaml") + "secrets:\n  web: [OPENAI_API_KEY]\n"
    pushed.repo.write("lanai.yaml", text)
    pushed.repo.commit_push("Needs a key the server lacks")
    expect_failure(pushed, 8, "OPENAI_API_KEY", "lanai secrets set OPENAI_API_KEY")
    # Adding the secret on the server is the fix, without a new commit.
    added = pushed.server.lanai("secrets", "set", "OPENAI_API_KEY", stdin="sk-test-123\n")
    assert added.returncode == 0, added.stderr
    assert "sk-test-123" not in added.stdout + added.stderr
    code, outcome = pushed.server.reconcile()
    assert code == 0, outcome
    assert pushed.server.env_of("web")["OPENAI_API_KEY"] == "sk-test-123"


def test_image_that_cannot_be_pulled_fails_before_touching_the_stack_registry_unreachable(
        pushed: Mini):
    # Docker Hub cannot be reached here, as on a server whose network is down.
    pushed.repo.replace("compose.yaml", "image: lanai-test/debian:bookworm",
                        "image: lanai-test/does-not-exist:1.0")
    pushed.repo.commit_push("Unreachable image")
    expect_failure(pushed, 3, "cannot pull", "lanai-test/does-not-exist:1.0",
                   "Nothing was changed")
    failure = pushed.server.lanai_json("status")[1]
    assert failure["sync"] == "Failed"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real, empty OCI registry (Debian's docker-registry) on 127.0.0.1."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200,
             30, "the registry")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_image_that_does_not_exist_is_a_deterministic_failure(pushed: Mini, registry: str):
    pushed.repo.replace("compose.yaml", "image: lanai-test/debian:bookworm",
                        f"image: {registry}/lanai/nope:1.0")
    pushed.repo.commit_push("Image that does not exist")
    expect_failure(pushed, 3, "cannot pull", "check the image name and tag")
    _, outcome = pushed.server.reconcile()
    assert outcome["status"] == "waiting"  # not retried until a new commit or --retry


def test_port_already_taken_is_refused_before_anything_changes(pushed: Mini):
    taken = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        pushed.repo.replace("compose.yaml", f'"127.0.0.1:{pushed.port}:8000"',
                            f'"127.0.0.1:{taken}:8000"')
        pushed.repo.commit_push("Move to a taken port")
        expect_failure(pushed, 3, f"port {taken}", "already in use", "change the port")


def test_compose_file_that_docker_compose_rejects(pushed: Mini):
    pushed.repo.replace("compose.yaml", "    init: true\n    command",
                        "    init: true\n    depends_on: [database]\n    command")
    pushed.repo.commit_push("Depend on a service that does not exist")
    expect_failure(pushed, 2, "compose.yaml is rejected by docker compose", "database")


def test_invalid_restart_policy_is_caught_before_docker_sees_it(pushed: Mini):
    pushed.repo.replace("compose.yaml", "    restart: unless-stopped\n    init: true\n    command",
                        "    restart: sometimes\n    init: true\n    command")
    pushed.repo.commit_push("Invalid restart policy")
    expect_failure(pushed, 2, "services.web.restart", "'sometimes' is not a restart policy")


def test_ollama_published_on_the_lan_is_refused(pushed: Mini):
    pushed.repo.replace("compose.yaml", "    init: true\n    volumes:",
                        "    init: true\n    ports:\n      - \"11434:11434\"\n    volumes:")
    pushed.repo.commit_push("Publish Ollama")
    expect_failure(pushed, 2, "services.ollama.ports[0]", "no authentication",
                   "allow_ollama_on_lan")


def test_a_yaml_alias_bomb_is_refused_at_once_naming_file_and_line(pushed: Mini):
    """9**12 values in 600 bytes: refused by the limits (status names the new head), not
    expanded while the server stalls."""
    lines = ["x-0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x-{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]" for n in range(1, 12)]
    start = len(pushed.repo.read("compose.yaml").splitlines()) + 1
    pushed.repo.write("compose.yaml", pushed.repo.read("compose.yaml") + "\n".join(lines) + "\n")
    pushed.repo.commit_push("Alias bomb")
    message = expect_failure(pushed, 2, "compose.yaml:", "YAML aliases expand to more than")
    assert start <= int(message.split(":")[1]) < start + 12


def test_a_committed_link_out_of_the_repo_is_refused_and_nothing_is_written_through_it(
        pushed: Mini, tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (pushed.repo.work / "lanai.override.yaml").symlink_to(victim)
    pushed.repo.commit_push("A link named like lanai's own file")
    expect_failure(pushed, 2, "lanai.override.yaml is a symbolic link to", "outside the state "
                   "repo")
    assert victim.read_text() == "untouched\n"


def test_a_committed_file_named_like_lanais_own_is_refused(pushed: Mini):
    (pushed.repo.work / "lanai.desired.json").symlink_to("compose.yaml")
    pushed.repo.commit_push("A link inside the repo named like lanai's own file")
    expect_failure(pushed, 2, "lanai.desired.json is in the state repo, but lanai generates")
