from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .harness import REQUIRED_IMAGES
from .laptop import pipx_install


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


@pytest.fixture(scope="session")
def laptop_lanai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`lanai` installed from this checkout with pipx, as the README tells a laptop to."""
    return pipx_install(tmp_path_factory.mktemp("laptop"))
