"""The edges of moving a project between Compose and a swarm stack (swarm/migrate.py), on
this machine's real engine, which is in no swarm: Compose's leftovers found by label and
taken down with no compose file, a stack's leftovers waited for until they are gone."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from pathlib import Path

import docker
import pytest

from reconciler.core.errors import DockerError
from reconciler.swarm import migrate

from .harness import REQUIRED_IMAGES


def test_compose_down_takes_a_project_down_by_name_and_keeps_its_volume(
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    project = f"lanai-migrate-{uuid.uuid4().hex[:6]}"
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  a:\n    image: {REQUIRED_IMAGES[0]}\n    entrypoint: [sleep, '300']\n"
        "    volumes: [data:/data]\nvolumes:\n  data: {}\n")
    up = subprocess.run(["docker", "compose", "-p", project, "up", "-d"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        assert migrate.compose_leftovers(docker_client, project) == [f"{project}-a-1"]
        assert migrate.compose_down(project) == [
            "docker", "compose", "--project-name", project, "down", "--remove-orphans"]
        down = subprocess.run(migrate.compose_down(project), cwd="/", capture_output=True,
                              text=True, timeout=120)  # no compose file where it runs
        assert down.returncode == 0, down.stderr
        assert migrate.compose_leftovers(docker_client, project) == []
        assert docker_client.volumes.get(f"{project}_data")  # the data stays
        assert migrate.stack_leftovers(docker_client, project) == []  # no swarm here
    finally:
        subprocess.run(["docker", "compose", "-p", project, "down", "-v"], cwd=tmp_path,
                       capture_output=True, timeout=120)


def test_the_wait_ends_when_the_stacks_network_is_gone_and_names_what_is_left(
        docker_client: docker.DockerClient) -> None:
    project = f"lanai-migrate-{uuid.uuid4().hex[:6]}"
    network = docker_client.networks.create(f"{project}_internal",
                                            labels={migrate.STACK_NAMESPACE: project})
    try:
        now = [0.0]
        with pytest.raises(DockerError) as info:
            migrate.wait_stack_gone(docker_client, project, timeout=5,
                                    sleep=lambda s: now.__setitem__(0, now[0] + s),
                                    clock=lambda: now[0])
        assert f"{project}_internal still exist after 5s" in info.value.message
        threading.Timer(1.0, network.remove).start()
        migrate.wait_stack_gone(docker_client, project, timeout=120)  # returns: it is gone
        assert docker_client.networks.list(filters={"label": f"{migrate.STACK_NAMESPACE}="
                                                    f"{project}"}) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
