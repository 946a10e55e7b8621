from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .harness import REQUIRED_IMAGES, CloudProvider, ModelRegistry, Outside
from .laptop import pipx_install
from .servers import OutsideDNS


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


@pytest.fixture(scope="session", autouse=True)
def outside(docker_client: docker.DockerClient) -> Iterator[None]:
    """The internet, as far as the stacks need it: the stand-in for registry.ollama.ai that
    every stack's Ollama pulls from, and a cloud provider for Open WebUI's connections. Each
    test Server attaches them to its stack's networks with a route out (harness.Outside)."""
    registry = ModelRegistry(docker_client)
    try:
        cloud = CloudProvider(docker_client)
    except BaseException:
        registry.stop()
        raise
    ModelRegistry.current, CloudProvider.current = registry, cloud
    Outside.started[:] = [registry, cloud]
    try:
        yield
    finally:
        Outside.started.clear()
        ModelRegistry.current = CloudProvider.current = None
        registry.stop()
        cloud.stop()


@pytest.fixture(scope="session")
def outside_dns(docker_client: docker.DockerClient, outside: None) -> Iterator[str]:
    """The address of the DNS server that names the stand-ins of `outside` for a booted
    server's Docker (servers.OutsideDNS); started by the first module that asks for it."""
    dns = OutsideDNS(docker_client, Outside.started)
    try:
        yield dns.address
    finally:
        dns.stop()
