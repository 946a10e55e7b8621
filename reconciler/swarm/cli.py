"""The docker commands swarm mode runs, as argument lists (pure; tested as exact lists).

The stack itself goes through the real `docker stack deploy`, never an imitation of it:
it reads the stack file with docker/cli's own loader and schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

ResolveImage = Literal["never", "changed", "always"]
# `docker stack deploy --detach` arrived in CLI 26.0 (cli/command/stack/deploy.go); 26.x
# warns that it will wait for convergence by default some day. lanai waits itself, by its
# own rule (plan.py), so it asks for the background deploy where the flag exists; 20.10
# has no such flag and never waits.
DETACH_CLI = (26, 0)


def stack_deploy(compose_file: str, project: str, *, resolve_image: ResolveImage,
                 cli_version: tuple[int, int], prune: bool = True) -> list[str]:
    """`docker stack deploy`. `prune`: remove services no longer in the file; a staged
    deploy (one Ollama server at a time) leaves it off, so the services left out of an
    early stage keep running as they are. `resolve_image`: `never` where no registry is
    reachable (images loaded with --images); `always` pins each tag to its digest."""
    argv = ["docker", "stack", "deploy", "--compose-file", compose_file]
    if prune:
        argv.append("--prune")
    argv += ["--resolve-image", resolve_image]
    if cli_version >= DETACH_CLI:
        argv.append("--detach=true")
    return [*argv, project]


def node_labels(node: str, labels: Mapping[str, str]) -> list[str]:
    """Label a node (by ID or hostname) in one update: placement constraints read them."""
    flags = [arg for key, value in labels.items() for arg in ("--label-add", f"{key}={value}")]
    return ["docker", "node", "update", *flags, node]


def service_force_update(service: str) -> list[str]:
    """Replace a service's tasks with the same spec: how a remote Ollama that lost its GPU
    gets it back (`docker exec` only reaches the manager's own containers)."""
    return ["docker", "service", "update", "--force", service]


def stack_rm(project: str) -> list[str]:
    """Remove the stack's services and networks (its volumes stay, on each node)."""
    return ["docker", "stack", "rm", project]
