"""The planner on hand-built desired states and facts: exact ordered actions and drift."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from reconciler.stack.facts import ContainerFact, Facts
from reconciler.stack.plan import ORDER, Action, Drift, Plan, config_diff, plan
from reconciler.stack.render import Rendered, ServiceSpec

OLLAMA_REF = "ollama/ollama:0.24.0"
WEBUI_REF = "ghcr.io/open-webui/open-webui:v0.12.4"
OLLAMA_ID = "sha256:8c796ac68e31b3950b06971220c7e85da93bff42d7de8aa8b4301d337e6a1417"
WEBUI_ID = "sha256:a553fe26c190b1c33a0b869e8c227b14b5f1d32958970db0e9440fdb6a187479"
OTHER_ID = "sha256:0000000000aa1111111111111111111111111111111111111111111111111111"

OLLAMA_CONFIG: dict[str, Any] = {
    "image": OLLAMA_REF,
    "environment": {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "30m"},
    "restart": "unless-stopped",
}
WEBUI_CONFIG: dict[str, Any] = {
    "image": WEBUI_REF,
    "environment": {"OLLAMA_BASE_URL": "http://ollama:11434", "WEBUI_SECRET_KEY": "<secret>"},
    "ports": [{"target": 8080, "published": "3000"}],
}


def spec(name: str, hash_: str, image: str | None, config: dict[str, Any]) -> ServiceSpec:
    return ServiceSpec(name=name, hash=hash_, image=image, config=config,
                       has_healthcheck=True)


def ollama(hash_: str = "ollama-h1", config: dict[str, Any] | None = None) -> ServiceSpec:
    return spec("ollama", hash_, OLLAMA_REF, config or copy.deepcopy(OLLAMA_CONFIG))


def webui(hash_: str = "webui-h1") -> ServiceSpec:
    return spec("open-webui", hash_, WEBUI_REF, copy.deepcopy(WEBUI_CONFIG))


def rendered(key: str, *services: ServiceSpec) -> Rendered:
    return Rendered(directory=Path("/var/lib/lanai/deployments") / key, commit=key * 4,
                    key=key, project="lanai", compose_file="compose.yaml",
                    services={s.name: s for s in services})


def container(service: str, config_hash: str | None, *, status: str = "running",
              health: str | None = "healthy", image_id: str | None = None,
              exit_code: int = 0, health_log: str | None = None) -> ContainerFact:
    return ContainerFact(
        id=f"{service}-id", name=f"lanai-{service}-1", service=service, status=status,
        health=health, image_id=image_id or {"ollama": OLLAMA_ID, "open-webui": WEBUI_ID}.get(
            service, OTHER_ID),
        image_ref={"ollama": OLLAMA_REF, "open-webui": WEBUI_REF}.get(service, "x:1"),
        config_hash=config_hash, exit_code=exit_code, health_log=health_log)


def facts(*containers: ContainerFact, ollama_image: str | None = OLLAMA_ID,
          webui_image: str | None = WEBUI_ID) -> Facts:
    return Facts(containers=list(containers),
                 images={OLLAMA_REF: ollama_image, WEBUI_REF: webui_image})


def in_sync() -> tuple[Rendered, Facts]:
    desired = rendered("k1", ollama(), webui())
    return desired, facts(container("ollama", "ollama-h1"), container("open-webui", "webui-h1"))


# ---------------------------------------------------------------- deploys


def test_fresh_server_pulls_missing_images_then_creates() -> None:
    desired = rendered("k1", ollama(), webui())
    result = plan(desired, facts(ollama_image=None, webui_image=None), applied=None, prune=True)
    assert result.actions == [
        Action("pull", "ollama", f"image {OLLAMA_REF} is not on this server"),
        Action("pull", "open-webui", f"image {WEBUI_REF} is not on this server"),
        Action("create", "ollama", "new service"),
        Action("create", "open-webui", "new service"),
    ]
    assert result.drift == []
    assert result.services("pull") == ["ollama", "open-webui"]


def test_fresh_server_with_images_present_only_creates() -> None:
    desired = rendered("k1", ollama(), webui())
    result = plan(desired, facts(webui_image=None), applied=None, prune=True)
    assert [(a.kind, a.service) for a in result.actions] == [
        ("pull", "open-webui"), ("create", "ollama"), ("create", "open-webui")]


def test_a_built_service_is_not_pulled() -> None:
    built = spec("app", "app-h1", "local/app:1",
                 {"image": "local/app:1", "build": {"context": "."}})
    result = plan(rendered("k1", built), Facts(images={"local/app:1": None}), applied=None,
                  prune=True)
    assert result.actions == [Action("create", "app", "new service")]


def test_everything_in_sync() -> None:
    desired, live = in_sync()
    result = plan(desired, live, applied=desired, prune=True)
    assert result == Plan(actions=[], drift=[])
    assert result.empty


def test_in_sync_is_also_empty_while_deploying_an_equivalent_commit() -> None:
    desired, live = in_sync()
    older = rendered("k0", ollama(), webui())
    result = plan(desired, live, applied=older, prune=True)
    assert result.empty
    assert result.drift == []


def test_config_changed_in_git_is_an_update_with_its_diff() -> None:
    new_config = copy.deepcopy(OLLAMA_CONFIG)
    new_config["environment"]["OLLAMA_KEEP_ALIVE"] = "1h"
    new_config["environment"]["OLLAMA_FLASH_ATTENTION"] = "1"
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", ollama("ollama-h2", new_config), webui())
    live = facts(container("ollama", "ollama-h1"), container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=applied, prune=True)
    assert result.actions == [Action(
        "update", "ollama", "configuration changed in git",
        ("environment.OLLAMA_FLASH_ATTENTION: added 1",
         "environment.OLLAMA_KEEP_ALIVE: 30m -> 1h"))]
    assert result.drift == []


def test_new_image_tag_in_git_is_pulled_before_the_update() -> None:
    new_ref = "ollama/ollama:0.25.0"
    new_config = {**copy.deepcopy(OLLAMA_CONFIG), "image": new_ref}
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", spec("ollama", "ollama-h2", new_ref, new_config), webui())
    live = Facts(containers=[container("ollama", "ollama-h1"),
                             container("open-webui", "webui-h1")],
                 images={new_ref: None, WEBUI_REF: WEBUI_ID})
    result = plan(desired, live, applied=applied, prune=True)
    assert result.actions == [
        Action("pull", "ollama", f"image {new_ref} is not on this server"),
        Action("update", "ollama", "configuration changed in git",
               (f"image: {OLLAMA_REF} -> {new_ref}",)),
    ]


def test_service_deleted_from_compose_during_a_deploy_is_removed() -> None:
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", ollama())
    live = facts(container("ollama", "ollama-h1"), container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=applied, prune=True)
    assert result.actions == [Action("remove", "open-webui", "service removed from compose")]
    assert result.drift == []


def test_service_deleted_from_compose_without_prune_is_left() -> None:
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", ollama())
    live = facts(container("ollama", "ollama-h1"), container("open-webui", "webui-h1"))
    assert plan(desired, live, applied=applied, prune=False).actions == []


# ---------------------------------------------------------------- drift


def test_container_stopped_by_hand() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", status="exited", health=None),
                 container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "stopped", "container exited")]
    assert result.actions == [Action("start", "ollama", "container is exited")]


def test_container_that_died_names_its_exit_code() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1"),
                 container("open-webui", "webui-h1", status="exited", health=None,
                           exit_code=137))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("open-webui", "stopped", "container exited (exit code 137)")]
    assert result.actions == [Action("start", "open-webui",
                                     "container is exited (exit code 137)")]


def test_container_removed_by_hand() -> None:
    desired, _ = in_sync()
    live = facts(container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "missing", "container not found (removed by hand?)")]
    assert result.actions == [Action("create", "ollama", "container is missing")]


def test_container_and_image_removed_by_hand() -> None:
    desired, _ = in_sync()
    live = facts(container("open-webui", "webui-h1"), ollama_image=None)
    result = plan(desired, live, applied=desired, prune=True)
    assert result.actions == [
        Action("pull", "ollama", f"image {OLLAMA_REF} is not on this server"),
        Action("create", "ollama", "container is missing")]


def test_unhealthy_container_is_restarted() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", health="unhealthy",
                           health_log="Error: could not connect to ollama app"),
                 container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "unhealthy",
                                  "health check failing: Error: could not connect to ollama app")]
    assert result.actions == [Action("restart", "ollama", "container is unhealthy")]


def test_starting_container_is_left_alone() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", health="starting"),
                 container("open-webui", "webui-h1"))
    assert plan(desired, live, applied=desired, prune=True) == Plan()


def test_crash_looping_container_is_drift_without_action() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", status="restarting", health=None,
                           exit_code=1),
                 container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "unhealthy",
                                  "container keeps crashing and restarting (exit code 1)")]
    assert result.actions == []


def test_container_changed_by_hand() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "hand-made"), container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "changed",
                                  "running container's configuration differs from git")]
    assert result.actions == [Action("update", "ollama", "configuration differs from git")]


def test_container_changed_by_hand_during_a_deploy_shows_the_git_diff() -> None:
    new_config = copy.deepcopy(OLLAMA_CONFIG)
    new_config["restart"] = "always"
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", ollama("ollama-h2", new_config), webui())
    live = facts(container("ollama", "hand-made"), container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=applied, prune=True)
    assert result.drift == [Drift("ollama", "changed",
                                  "running container's configuration differs from git")]
    assert result.actions == [Action("update", "ollama", "configuration differs from git",
                                     ("restart: unless-stopped -> always",))]


def test_container_without_lanai_label_is_taken_over() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", None), container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.actions == [Action("update", "ollama", "container was not created by lanai")]
    assert result.drift == []


def test_image_id_mismatch() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", image_id=OTHER_ID),
                 container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift(
        "ollama", "changed",
        f"runs image {OTHER_ID[:19]}, but {OLLAMA_REF} is {OLLAMA_ID[:19]}")]
    assert result.actions == [Action("update", "ollama",
                                     f"image {OLLAMA_REF} points to another image")]


def test_orphan_service_with_prune() -> None:
    desired, live = in_sync()
    live.containers.append(container("old-thing", "x-h1"))
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("old-thing", "orphan",
                                  "1 container(s) of a service no longer in compose")]
    assert result.actions == [Action("remove", "old-thing", "not in the desired state")]


def test_orphan_service_without_prune_is_only_reported() -> None:
    desired, live = in_sync()
    live.containers.append(container("old-thing", "x-h1"))
    result = plan(desired, live, applied=desired, prune=False)
    assert result.drift == [Drift("old-thing", "orphan",
                                  "1 container(s) of a service no longer in compose")]
    assert result.actions == []


def test_orphan_never_deployed_by_lanai_during_a_deploy() -> None:
    desired, live = in_sync()
    live.containers.append(container("old-thing", None))
    applied = rendered("k0", ollama(), webui())
    result = plan(desired, live, applied=applied, prune=True)
    assert result.actions == [Action("remove", "old-thing", "not in the desired state")]
    assert [d.kind for d in result.drift] == ["orphan"]


# ---------------------------------------------------------------- heal limit


def test_held_service_reports_held_and_does_nothing() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", health="unhealthy"),
                 container("open-webui", "webui-h1", status="exited", health=None))
    result = plan(desired, live, applied=desired, prune=True, held=["ollama"])
    assert result.drift == [
        Drift("ollama", "unhealthy", "health check failing"),
        Drift("ollama", "held", "heal limit reached; not restarting again until the window "
              "passes, a new commit, or --retry"),
        Drift("open-webui", "stopped", "container exited"),
    ]
    assert result.actions == [Action("start", "open-webui", "container is exited")]


def test_held_service_still_acts_when_deploying() -> None:
    applied = rendered("k1", ollama(), webui())
    desired = rendered("k2", ollama(), webui())
    live = facts(container("ollama", "ollama-h1", health="unhealthy"),
                 container("open-webui", "webui-h1"))
    result = plan(desired, live, applied=applied, prune=True, held=["ollama"])
    assert result.actions == [Action("restart", "ollama", "container is unhealthy")]
    assert [d.kind for d in result.drift] == ["unhealthy"]


def test_held_service_without_drift_adds_nothing() -> None:
    desired, live = in_sync()
    assert plan(desired, live, applied=desired, prune=True, held=["ollama"]) == Plan()


# ---------------------------------------------------------------- order


def test_actions_run_in_a_fixed_order() -> None:
    applied = rendered("k1", ollama(), webui(), spec("zeta", "z1", None, {}))
    desired = rendered("k2", ollama(), webui(), spec("alpha", "a1", "alpha/a:1",
                                                     {"image": "alpha/a:1"}))
    live = Facts(containers=[container("ollama", "ollama-h1", health="unhealthy"),
                             container("open-webui", "webui-h1", status="exited", health=None),
                             container("zeta", "z1")],
                 images={OLLAMA_REF: OLLAMA_ID, WEBUI_REF: WEBUI_ID, "alpha/a:1": None})
    result = plan(desired, live, applied=applied, prune=True)
    assert [(a.kind, a.service) for a in result.actions] == [
        ("pull", "alpha"), ("remove", "zeta"), ("create", "alpha"), ("start", "open-webui"),
        ("restart", "ollama")]
    assert sorted(ORDER, key=ORDER.__getitem__)[0] == "pull"


def test_action_and_drift_json() -> None:
    action = Action("update", "ollama", "configuration changed in git", ("a: 1 -> 2",))
    assert action.to_json() == {"kind": "update", "service": "ollama",
                                "reason": "configuration changed in git",
                                "details": ["a: 1 -> 2"]}
    assert Drift("ollama", "stopped", "container exited").to_json() == {
        "service": "ollama", "kind": "stopped", "detail": "container exited"}


# ---------------------------------------------------------------- config_diff


def test_config_diff_lines() -> None:
    old = {"image": "a:1", "environment": {"A": "1", "B": "2"}, "ports": [1], "restart": "no"}
    new = {"image": "a:2", "environment": {"A": "1", "C": "3"}, "ports": [1, 2]}
    assert config_diff(old, new) == [
        "environment.B: removed",
        "environment.C: added 3",
        "image: a:1 -> a:2",
        "ports: [1] -> [1, 2]",
        "restart: removed",
    ]


def test_config_diff_of_equal_configs_is_empty() -> None:
    assert config_diff(OLLAMA_CONFIG, copy.deepcopy(OLLAMA_CONFIG)) == []


def test_config_diff_shortens_long_values() -> None:
    lines = config_diff({"command": "x"}, {"command": "y" * 100})
    assert lines == ["command: x -> " + "y" * 57 + "..."]


def test_config_diff_non_string_values_use_repr() -> None:
    assert config_diff({"healthcheck": {"retries": 5}}, {"healthcheck": {"retries": 6}}) == [
        "healthcheck.retries: 5 -> 6"]
    assert config_diff({"x": None}, {"x": True}) == ["x: None -> True"]
