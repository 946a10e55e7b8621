"""The docker commands of swarm mode, as exact argument lists."""

from __future__ import annotations

import pytest

from reconciler.swarm.cli import node_labels, service_force_update, stack_deploy, stack_rm


def test_stack_deploy_on_debian_13s_cli_runs_in_the_background() -> None:
    # the argv the fixture capture ran on docker 26.1.5 (tests/fixtures/swarm/api/README.md)
    assert stack_deploy("/var/lib/lanai/render/abc/lanai.stack.yaml", "lanai",
                        resolve_image="never", cli_version=(26, 1)) == [
        "docker", "stack", "deploy", "--compose-file",
        "/var/lib/lanai/render/abc/lanai.stack.yaml", "--prune", "--resolve-image", "never",
        "--detach=true", "lanai"]


def test_stack_deploy_on_debian_12s_cli_has_no_detach_flag() -> None:
    assert stack_deploy("s.yaml", "lanai", resolve_image="always", cli_version=(20, 10)) == [
        "docker", "stack", "deploy", "--compose-file", "s.yaml", "--prune",
        "--resolve-image", "always", "lanai"]


@pytest.mark.parametrize("resolve", ["never", "changed", "always"])
def test_stack_deploy_passes_the_resolve_mode(resolve: str) -> None:
    argv = stack_deploy("s.yaml", "p", resolve_image=resolve,  # type: ignore[arg-type]
                        cli_version=(26, 0))
    assert argv[argv.index("--resolve-image") + 1] == resolve


def test_a_stage_of_a_staged_deploy_does_not_prune() -> None:
    assert stack_deploy("s.yaml", "lanai", resolve_image="never", cli_version=(28, 2),
                        prune=False) == [
        "docker", "stack", "deploy", "--compose-file", "s.yaml", "--resolve-image", "never",
        "--detach=true", "lanai"]


def test_node_label() -> None:
    assert node_labels("ykspkqk3mqks", {"io.lanai.server": "box-c"}) == [
        "docker", "node", "update", "--label-add", "io.lanai.server=box-c", "ykspkqk3mqks"]


def test_node_labels_several_in_one_update() -> None:
    assert node_labels("s5-b", {"io.lanai.server": "box-b", "size": "big"}) == [
        "docker", "node", "update", "--label-add", "io.lanai.server=box-b",
        "--label-add", "size=big", "s5-b"]


def test_service_force_update() -> None:
    assert service_force_update("lanai_ollama-box-c") == [
        "docker", "service", "update", "--force", "lanai_ollama-box-c"]


def test_stack_rm() -> None:
    assert stack_rm("lanai") == ["docker", "stack", "rm", "lanai"]
