from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .harness import REQUIRED_IMAGES, ModelRegistry


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The real engine and the local test images; missing ones fail the run, never skip it."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine ({exc}); the test command (tests/run) starts one")
    for image in REQUIRED_IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"test image {image} is missing; build it with tests/images/build.sh")
    return client


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.fixture(scope="session", autouse=True)
def model_registry(docker_client: docker.DockerClient) -> Iterator[ModelRegistry]:
    """The stand-in for registry.ollama.ai that every stack's Ollama pulls from; each test
    Server attaches it to its stack's networks with a route out (harness.ModelRegistry)."""
    registry = ModelRegistry(docker_client)
    ModelRegistry.current = registry
    try:
        yield registry
    finally:
        ModelRegistry.current = None
        registry.stop()
