"""containers.service_container: a compose service's running container and its address.

The containers are `docker inspect` data recorded from a real engine, behind a
stand-in for the SDK's `client.containers.list`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from reconciler.stack.containers import service_container

INSPECT = Path(__file__).resolve().parents[2] / "fixtures" / "docker-inspect"


def inspect(name: str) -> dict[str, Any]:
    return json.loads((INSPECT / name).read_text())[0]


class Container:
    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        self.name = attrs["Name"].lstrip("/")


class Client:
    """`client.containers.list` over containers, answering the label filter as Docker does."""

    def __init__(self, *containers: Container) -> None:
        self.containers = self
        self.listed: list[Any] = []
        self._all = containers

    def list(self, *, filters: dict[str, list[str]]) -> list[Container]:
        self.listed.append(filters)
        return [c for c in self._all
                if all(k in (labels := c.attrs["Config"]["Labels"]) and labels[k] == v
                       for k, _, v in (f.partition("=") for f in filters["label"]))]


def test_the_running_container_of_the_service_and_its_address() -> None:
    ollama = Container(inspect("ollama-healthy.json"))
    client = Client(ollama, Container(inspect("open-webui-exited.json")))
    found = service_container(client, "lanai", "ollama")  # type: ignore[arg-type]
    assert found is not None
    assert found.container is ollama and found.address == "172.19.0.2"
    # only running containers are listed (the SDK's default), by both compose labels
    assert client.listed == [{"label": ["com.docker.compose.project=lanai",
                                        "com.docker.compose.service=ollama"]}]


def test_no_container_of_that_service_or_project_is_none() -> None:
    client = Client(Container(inspect("ollama-healthy.json")))
    assert service_container(client, "lanai", "open-webui") is None  # type: ignore[arg-type]
    assert service_container(client, "other", "ollama") is None  # type: ignore[arg-type]


def test_the_first_network_with_an_address_is_used() -> None:
    attrs = inspect("ollama-healthy.json")
    networks = attrs["NetworkSettings"]["Networks"]
    networks = {"bridge": {**copy.deepcopy(networks["lanai_internal"]), "IPAddress": ""},
                **networks}
    attrs["NetworkSettings"]["Networks"] = networks
    found = service_container(Client(Container(attrs)), "lanai", "ollama")  # type: ignore[arg-type]
    assert found is not None and found.address == "172.19.0.2"


def test_a_container_without_an_address_is_found_without_one() -> None:
    attrs = inspect("ollama-healthy.json")
    attrs["NetworkSettings"]["Networks"] = {}
    found = service_container(Client(Container(attrs)), "lanai", "ollama")  # type: ignore[arg-type]
    assert found is not None and found.address is None
    attrs["NetworkSettings"] = None  # e.g. a container being torn down
    found = service_container(Client(Container(attrs)), "lanai", "ollama")  # type: ignore[arg-type]
    assert found is not None and found.address is None
