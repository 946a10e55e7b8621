"""The swarm planner on facts from a real 3-node swarm (tests/fixtures/swarm/api/: the
states and the stack files deployed in them) and lanai.yaml's servers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from reconciler.desired.servers import Server
from reconciler.swarm.facts import Facts, parse
from reconciler.swarm.plan import Deploy, LabelNode, SwarmPlan, plan

API = Path(__file__).resolve().parents[2] / "fixtures" / "swarm" / "api"
# lanai.yaml's servers for the captured swarm: node s5-X is box-X
SERVERS = [Server(name="box-a", manager=True, gpu="none", address="172.31.251.11"),
           Server(name="box-b", gpu="rtx-4090", address="172.31.251.12"),
           Server(name="box-c", gpu="8GiB", address="172.31.251.13")]
MODELS = {"box-b": ["qwen2.5:32b-instruct-q4_K_M", "nomic-embed-text:v1.5"],
          "box-c": ["llama3.1:8b-instruct-q4_K_M"]}


def facts(state: str) -> Facts:
    return parse(*(json.loads((API / state / f"{name}.json").read_text())
                   for name in ("nodes", "services", "tasks")), "lanai")


def stack(name: str) -> dict[str, Any]:
    return yaml.safe_load((API / "stacks" / f"{name}.yaml").read_text())


def hash_of(stack_name: str, service: str) -> str:
    return stack(stack_name)["services"][service]["deploy"]["labels"]["io.lanai.config-hash"]


def health(result: SwarmPlan) -> dict[str, str]:
    return {s.name: s.health for s in result.services}


def drift(result: SwarmPlan) -> list[tuple[str, str]]:
    return [(d.kind, d.subject) for d in result.drift]


def deploys(result: SwarmPlan) -> list[Deploy]:
    return [a for a in result.actions if isinstance(a, Deploy)]


def test_all_up_and_as_in_git_is_converged() -> None:
    result = plan(stack("base"), facts("all-up"), SERVERS)
    assert health(result) == {"ollama-box-b": "up", "ollama-box-c": "up", "proxy": "up"}
    assert result.drift == () and result.actions == ()
    assert result.converged and result.empty
    assert [s.reason for s in result.services] == [
        "ollama-box-b runs on node s5-b (box-b)", "ollama-box-c runs on node s5-c (box-c)",
        "proxy runs on node s5-a (box-a)"]
    assert [(s.running, s.replicas, s.server) for s in result.services] == [
        (1, 1, "box-b"), (1, 1, "box-c"), (1, 1, None)]


def test_the_ghost_1_of_1_on_a_dead_server_is_down() -> None:
    found = facts("node-down")
    # what `docker service ls` said at that moment (ServiceStatus.RunningTasks counts it)
    services = json.loads((API / "node-down" / "services.json").read_text())
    ghost = next(s for s in services if s["Spec"]["Name"] == "lanai_ollama-box-c")
    assert ghost["ServiceStatus"] == {"RunningTasks": 1, "DesiredTasks": 1, "CompletedTasks": 0}
    assert "lanai_ollama-box-c   replicated   1/1" in (API / "node-down" / "cli.txt").read_text()
    result = plan(stack("new"), found, SERVERS, models=MODELS)
    assert health(result) == {"ollama-box-b": "up", "ollama-box-c": "down", "proxy": "up"}
    c = result.services[1]
    assert (c.running, c.reason) == (
        0, "ollama-box-c is down: its server box-c is down (heartbeat failure)")
    assert not result.converged


def test_a_down_server_is_a_notice_naming_its_services_and_models_and_no_action() -> None:
    result = plan(stack("new"), facts("node-down"), SERVERS, models=MODELS)
    assert drift(result) == [("server-down", "box-c")]  # its Pending task is not repeated
    assert result.drift[0].detail == (
        "box-c (node s5-c) is down since 16:30 UTC (heartbeat failure): ollama-box-c and its "
        "models llama3.1:8b-instruct-q4_K_M are unavailable; Swarm starts them again when it "
        "is back, lanai changes nothing")
    assert result.actions == ()


def test_the_server_back_is_converged_again() -> None:
    assert plan(stack("new"), facts("node-back"), SERVERS).converged


def test_a_drained_server_is_reported_never_undone() -> None:
    result = plan(stack("new"), facts("drained"), SERVERS, models=MODELS)
    assert drift(result) == [("server-drained", "box-b")]
    assert result.drift[0].detail == (
        "box-b (node s5-b) is drained by hand: ollama-box-b waits until `docker node update "
        "--availability active s5-b`; lanai leaves it so")
    assert result.services[0].reason == "ollama-box-b is down: its server box-b is drained"
    assert result.actions == ()


def test_a_service_during_its_update_is_progressing() -> None:
    result = plan(stack("stage1"), facts("updating"), SERVERS)
    assert health(result) == {"ollama-box-b": "progressing", "ollama-box-c": "up",
                              "proxy": "up"}
    assert result.services[0].reason == "ollama-box-b: an update is in progress"
    assert result.drift == () and result.actions == ()
    assert not result.converged
    assert plan(stack("stage1"), facts("update-completed"), SERVERS).converged


def test_a_rolled_back_service_fails_the_commit_and_is_not_redeployed() -> None:
    result = plan(stack("bad"), facts("rolled-back"), SERVERS)
    assert drift(result) == [("rolled-back", "ollama-box-c")]
    assert result.drift[0].detail == (
        "Swarm rolled ollama-box-c back to its previous spec: the new one failed to start or "
        "turned unhealthy, so this commit failed; lanai does not deploy it again until a new "
        "commit or `lanai reconcile --retry`")
    assert result.actions == ()
    assert [d.subject for d in result.rolled_back] == ["ollama-box-c"]
    # the rolled-back task had not passed its health check yet when captured
    assert result.services[1].health == "down"
    # lanai's record says this very hash was deployed: the same
    record = {"ollama-box-c": hash_of("bad", "ollama-box-c")}
    assert drift(plan(stack("bad"), facts("rolled-back"), SERVERS, deployed=record)) == [
        ("rolled-back", "ollama-box-c")]


def test_a_rollback_in_progress_says_why_and_is_not_redeployed() -> None:
    result = plan(stack("bad"), facts("rolling-back"), SERVERS)
    assert drift(result) == [("rolled-back", "ollama-box-c")]
    assert "(update rolled back due to failure or early termination of task " in \
        result.drift[0].detail
    assert result.services[1].health == "progressing"
    assert result.actions == ()


def test_a_new_commit_after_a_rollback_is_deployed() -> None:
    record = {"ollama-box-c": hash_of("bad", "ollama-box-c")}
    result = plan(stack("pending"), facts("rolled-back"), SERVERS, deployed=record)
    assert drift(result) == [("changed", "ollama-box-c")]
    [deploy] = deploys(result)
    assert deploy.services == ("ollama-box-c",) and deploy.prune


def test_other_drift_beside_a_rollback_deploys_without_the_failed_spec() -> None:
    wanted = stack("bad")
    wanted["services"]["proxy"]["deploy"]["labels"]["io.lanai.config-hash"] = "0" * 16
    result = plan(wanted, facts("rolled-back"), SERVERS)
    assert drift(result) == [("rolled-back", "ollama-box-c"), ("changed", "proxy")]
    [deploy] = deploys(result)
    assert deploy.services == ("proxy",)
    assert list(deploy.stack["services"]) == ["ollama-box-b", "proxy"]
    assert not deploy.prune  # --prune would remove the rolled-back service
    assert deploy.reason == ("stack deploy: proxy to match git; ollama-box-c left as Swarm "
                             "rolled it back")


def test_a_pending_task_says_why() -> None:
    result = plan(stack("pending"), facts("pending"), SERVERS)
    assert drift(result) == [("pending", "ollama-box-c")]
    assert result.drift[0].detail == ("ollama-box-c: a task waits: no suitable node "
                                      "(insufficient resources on 3 nodes)")
    assert result.services[1].reason == (
        "ollama-box-c: an update is in progress; its task waits: no suitable node "
        "(insufficient resources on 3 nodes)")
    assert result.actions == ()


def test_the_gpu_reservation_runs_once_the_node_advertises_one() -> None:
    assert plan(stack("pending"), facts("gpu-reserved"), SERVERS).converged


def test_a_config_hash_change_deploys_one_ollama_server_at_a_time() -> None:
    result = plan(stack("new"), facts("all-up"), SERVERS)
    assert drift(result) == [("changed", "ollama-box-b"), ("changed", "ollama-box-c")]
    assert result.drift[0].detail == (
        f"ollama-box-b differs from git (config hash {hash_of('base', 'ollama-box-b')} in the "
        f"swarm, {hash_of('new', 'ollama-box-b')} in git): the deploy updates it")
    first, second = deploys(result)
    assert (first.stage, first.stages, first.services, first.prune) == (
        1, 2, ("ollama-box-b",), False)
    # stage 1 leaves ollama-box-c out: without --prune Swarm leaves it as it runs
    assert list(first.stack["services"]) == ["ollama-box-b", "proxy"]
    assert first.stack["networks"] == stack("new")["networks"]
    assert first.stack["version"] == "3.12"
    assert (second.stage, second.services, second.prune) == (2, ("ollama-box-c",), True)
    assert second.stack == stack("new")
    assert first.reason == ("stack deploy (stage 1 of 2): ollama-box-b to match git; one "
                            "Ollama server at a time, so chats go to the others meanwhile")


def test_the_staged_file_is_what_was_deployed_as_stage_1() -> None:
    # the capture deployed stage1.yaml: new's ollama-box-b beside base's ollama-box-c;
    # lanai's stage 1 leaves ollama-box-c out instead, so Swarm keeps it as it runs
    [first, _] = deploys(plan(stack("new"), facts("all-up"), SERVERS))
    assert first.stack["services"]["ollama-box-b"] == stack("stage1")["services"]["ollama-box-b"]


def test_other_services_go_with_the_first_ollama_stage() -> None:
    wanted = stack("new")
    wanted["services"]["proxy"]["deploy"]["labels"]["io.lanai.config-hash"] = "0" * 16
    first, second = deploys(plan(wanted, facts("all-up"), SERVERS))
    assert (first.services, second.services) == (("proxy", "ollama-box-b"), ("ollama-box-c",))


def test_stage_order_follows_lanai_yaml_with_down_servers_last() -> None:
    order = [SERVERS[0], SERVERS[2], SERVERS[1]]  # box-c listed before box-b
    staged = deploys(plan(stack("new"), facts("all-up"), order))
    assert [d.services for d in staged] == [("ollama-box-c",), ("ollama-box-b",)]
    # box-c is down: box-b rolls first, box-c's stage waits for its return
    staged = deploys(plan(stack("base"), facts("node-down"), order))
    assert [d.services for d in staged] == [("ollama-box-b",), ("ollama-box-c",)]


def test_one_changed_ollama_is_one_deploy() -> None:
    [deploy] = deploys(plan(stack("stage1"), facts("all-up"), SERVERS))
    assert (deploy.stages, deploy.services, deploy.prune) == (1, ("ollama-box-b",), True)
    assert deploy.reason == "stack deploy: ollama-box-b to match git"


def test_a_service_missing_from_the_swarm_is_created() -> None:
    wanted = stack("base")
    wanted["services"]["open-webui"] = copy.deepcopy(wanted["services"]["proxy"])
    result = plan(wanted, facts("all-up"), SERVERS)
    assert drift(result) == [("missing", "open-webui")]
    assert result.services[-1].health == "down"
    assert result.services[-1].reason == "open-webui is not in the swarm"
    [deploy] = deploys(result)
    assert deploy.services == ("open-webui",) and deploy.prune


def test_a_service_not_in_git_is_pruned() -> None:
    wanted = stack("base")
    del wanted["services"]["proxy"]
    result = plan(wanted, facts("all-up"), SERVERS)
    assert drift(result) == [("extra", "proxy")]
    [deploy] = deploys(result)
    assert deploy.prune and deploy.services == ()
    assert deploy.reason == "stack deploy: removing services no longer in git"


def test_replicas_scaled_by_hand() -> None:
    wanted = stack("base")
    wanted["services"]["proxy"]["deploy"]["replicas"] = 2  # same hash: the swarm was scaled
    result = plan(wanted, facts("all-up"), SERVERS)
    assert drift(result) == [("replicas", "proxy")]
    assert result.drift[0].detail == ("proxy has 1 replicas in the swarm, 2 in git (scaled by "
                                      "hand?): the deploy sets 2")
    assert [d.services for d in deploys(result)] == [("proxy",)]


def test_a_node_not_in_lanai_yaml_is_reported() -> None:
    result = plan(stack("base"), facts("all-up"), SERVERS[:2])
    assert drift(result) == [("unknown-node", "s5-c")]
    assert result.drift[0].detail == (
        "node s5-c (172.31.251.13, labelled box-c) is in the swarm but not in lanai.yaml: add "
        "it under servers, or remove it (`docker node rm s5-c`); lanai places nothing on it")


def test_a_server_with_no_node_is_reported() -> None:
    box_d = Server(name="box-d", ssh="admin@box-d.lan")
    result = plan(stack("base"), facts("all-up"), [*SERVERS, box_d])
    assert drift(result) == [("server-absent", "box-d")]
    assert result.drift[0].detail == ("box-d is in lanai.yaml but no swarm node is it: join it "
                                      "with ./bootstrap.sh --join <manager> admin@box-d.lan")


def test_unlabelled_nodes_are_labelled_by_address_before_the_first_deploy() -> None:
    servers = [SERVERS[0], SERVERS[1].model_copy(update={"labels": {"size": "big"}}),
               SERVERS[2]]
    result = plan(stack("base"), facts("unlabelled"), servers)
    labels = [a for a in result.actions if isinstance(a, LabelNode)]
    assert [(a.hostname, dict(a.labels)) for a in labels] == [
        ("s5-a", {"io.lanai.server": "box-a"}),
        ("s5-b", {"io.lanai.server": "box-b", "size": "big"}),
        ("s5-c", {"io.lanai.server": "box-c"})]
    assert labels[0].node == "kdhy0n1yc7bya3n6zdg4w847t"
    assert labels[1].reason == ("label node s5-b io.lanai.server=box-b, size=big: it is box-b "
                                "of lanai.yaml, and placement reads its labels")
    assert result.actions[:3] == tuple(labels)  # before the deploy that needs them
    assert [a.kind for a in result.actions[3:]] == ["deploy", "deploy"]
    assert ("unknown-node", "s5-a") not in drift(result)


def test_a_renamed_server_is_relabelled() -> None:
    # lanai.yaml renamed box-b to box-big: its node is found by its address
    servers = [SERVERS[0], SERVERS[1].model_copy(update={"name": "box-big"}), SERVERS[2]]
    result = plan(stack("base"), facts("all-up"), servers)
    [label] = [a for a in result.actions if isinstance(a, LabelNode)]
    assert (label.hostname, label.server, dict(label.labels)) == (
        "s5-b", "box-big", {"io.lanai.server": "box-big"})
    assert label.reason == ("label node s5-b io.lanai.server=box-big (was box-b): it is "
                            "box-big of lanai.yaml, and placement reads its labels")
    assert "unknown-node" not in [k for k, _ in drift(result)]


def test_without_addresses_nodes_are_matched_by_label_only() -> None:
    servers = [s.model_copy(update={"address": None}) for s in SERVERS]
    result = plan(stack("base"), facts("unlabelled"), servers)
    assert [k for k, _ in drift(result)].count("server-absent") == 3
    assert [k for k, _ in drift(result)].count("unknown-node") == 3


def test_the_plan_as_json() -> None:
    result = plan(stack("new"), facts("all-up"), SERVERS)
    out = json.loads(json.dumps(result.to_json()))
    assert out["services"][0] == {"name": "ollama-box-b", "server": "box-b", "health": "up",
                                  "running": 1, "replicas": 1,
                                  "reason": "ollama-box-b runs on node s5-b (box-b)"}
    assert [a["kind"] for a in out["actions"]] == ["deploy", "deploy"]
    assert "stack" not in out["actions"][0]
    assert out["actions"][0]["services"] == ["ollama-box-b"]


def test_workers_unknown_after_a_manager_restart_are_no_server_down() -> None:
    # dockerd restarted on the manager: 4.3 s later s5-c still read Unknown
    found = facts("manager-restarted")
    assert found.nodes[2].state == "unknown"
    result = plan(stack("pending"), found, SERVERS)
    assert "server-down" not in [k for k, _ in drift(result)]
    assert result.services[1].reason == (
        'ollama-box-c is down: its server box-c is unknown (Node moved to "unknown" state due '
        'to leadership change in cluster)')
    assert result.actions == ()


def test_a_task_whose_image_is_nowhere_says_so() -> None:
    result = plan(stack("image-missing"), facts("image-missing"), SERVERS)
    webui = next(s for s in result.services if s.name == "open-webui")
    assert (webui.health, webui.reason) == (
        "down", "open-webui is down: its task is rejected (No such image: "
        "ghcr.io/open-webui/open-webui:v0.12.4)")
