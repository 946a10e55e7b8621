"""Ollama pulls its models over the network, from its registry: a stack whose Ollama has no
route out cannot pull a single model, and lanai says why in one sentence.

"The internet" here is the session's stand-in for registry.ollama.ai (harness.ModelRegistry,
tests/ollama_double/registry.py): a container that a stack's Ollama reaches by that host name
on each of its networks that is not `internal: true`, as the real registry is reached on a
real server. Ollama is the API double, which pulls the way Ollama does (manifest, then blobs
by digest, over HTTP where the real one uses HTTPS).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .harness import ModelRegistry, Server, StateRepo, new_project

STACK = Path(__file__).parent / "stacks" / "models"
PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"
TINY = "lanai-test:tiny"


@pytest.fixture
def inside_only(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Server]:
    """The models stack with its Ollama on one `internal: true` network and nothing else."""
    project = new_project()
    repo = StateRepo(tmp_path, STACK, {"PROJECT": project})
    repo.replace("compose.yaml", "    healthcheck:\n", "    networks: [inside]\n    healthcheck:\n")
    repo.write("compose.yaml", repo.read("compose.yaml")
               + "\nnetworks:\n  inside:\n    internal: true\n")
    repo.commit_push("Ollama on an internal network only")
    server = Server(tmp_path, repo, project, docker_client)
    yield server
    server.teardown()


def ollama_tags(server: Server) -> list[str]:
    listed = server.containers()["ollama"].exec_run(["ollama", "list"])
    assert listed.exit_code == 0, listed.output
    return [line.split()[0] for line in listed.output.decode().splitlines()[1:] if line.strip()]


def test_ollama_on_an_internal_network_only_cannot_pull_and_lanai_says_why(
        inside_only: Server):
    server = inside_only
    code, outcome = server.reconcile()
    assert code == 3, outcome
    assert outcome["status"] == "applied"  # the stack itself is up; its models are not
    error = outcome["error"]
    assert f"pulling {PHI3} failed: Ollama could not reach the model registry " \
           "registry.ollama.ai (" in error, error
    assert "joins a network with a route out" in error
    assert error.count("\n") == 0
    assert ollama_tags(server) == []
    registry = ModelRegistry.current
    assert registry is not None
    ollama = server.containers()["ollama"]
    assert set(ollama.attrs["NetworkSettings"]["Networks"]) == {f"{server.project}_inside"}
    address = ollama.attrs["NetworkSettings"]["Networks"][f"{server.project}_inside"]["IPAddress"]
    assert registry.requests_from(address) == []  # nothing reached it


def test_giving_ollama_a_network_with_a_route_out_lets_it_pull_through_the_registry(
        inside_only: Server):
    server = inside_only
    code, _ = server.reconcile()
    assert code == 3
    server.repo.replace("compose.yaml", "networks: [inside]", "networks: [inside, egress]")
    server.repo.replace("compose.yaml", "    internal: true\n",
                        "    internal: true\n  egress: {}\n")
    server.repo.commit_push("Ollama gets a way out to its registry")
    registry = ModelRegistry.current
    assert registry is not None
    assert registry.attach(server.project, server.repo.read("compose.yaml")) == [
        f"{server.project}_egress"]
    code, outcome = server.reconcile("--retry")
    assert code == 0, outcome
    assert sorted(ollama_tags(server)) == sorted([PHI3, TINY])
    ollama = server.containers()["ollama"]
    ollama.reload()
    address = ollama.attrs["NetworkSettings"]["Networks"][f"{server.project}_egress"]["IPAddress"]
    asked = registry.requests_from(address)
    assert "GET /v2/library/phi3/manifests/3.8b-mini-4k-instruct-q4_K_M HTTP/1.1" in asked
    assert "GET /v2/library/lanai-test/manifests/tiny HTTP/1.1" in asked
    assert sum("/blobs/sha256:" in line for line in asked) >= 2 * 5  # 4 layers + config each
