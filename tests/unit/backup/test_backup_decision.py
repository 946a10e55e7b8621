"""What a deploy does for Open WebUI's data first (DataGuard.decision): a backup before an
upgrade, a refusal or a restore for a rollback across a migration, nothing otherwise.
Hand-built states and facts; no Docker."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from reconciler.backup.guard import DataGuard
from reconciler.backup.store import Backup, Lineage, Store
from reconciler.server.settings import ServerSettings
from reconciler.stack.facts import Facts
from reconciler.stack.render import Rendered, ServiceSpec

from ..stack.test_plan import WEBUI_CONFIG, WEBUI_REF, container, ollama

NEWER = "ghcr.io/open-webui/open-webui:v0.12.5"


def guard(tmp_path: Path) -> DataGuard:
    settings = ServerSettings(home=tmp_path, repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    return DataGuard(settings, client=no_docker, progress=lambda _m: None)


def no_docker() -> Any:
    raise AssertionError("a decision never asks Docker")


def state(image: str, *, env: dict[str, str] | None = None,
          settings: dict[str, Any] | None = None) -> Rendered:
    config = copy.deepcopy(WEBUI_CONFIG)
    config["image"] = image
    config["environment"].update(env or {})
    webui = ServiceSpec(name="open-webui", hash=f"h-{image}-{env}", image=image, config=config,
                        has_healthcheck=True)
    return Rendered(directory=Path("/nowhere"), commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={"open-webui": webui,
                                                           "ollama": ollama()},
                    settings=settings or {})


def running(image: str = WEBUI_REF) -> Facts:
    webui = container("open-webui", "h")
    return Facts(containers=[container("ollama", "ollama-h1"),
                             webui.__class__(**{**vars(webui), "image_ref": image})])


def keep(tmp_path: Path, image: str, created: str) -> Backup:
    store = Store(tmp_path / "backups")
    store.ensure()
    backup = Backup(id=f"{created[:10]}-upgrade", kind="upgrade", created=created,
                    service="open-webui", image=image, commit="a" * 40, size=10)
    store.archive(backup.id).write_bytes(b"x")
    store.save(backup)
    return backup


def test_the_same_image_needs_nothing(tmp_path: Path):
    assert guard(tmp_path).decision(state(WEBUI_REF), running(), state(WEBUI_REF)) is None


def test_no_container_yet_means_no_data_to_protect(tmp_path: Path):
    assert guard(tmp_path).decision(state(NEWER), Facts(), None) is None


def test_an_upgrade_is_backed_up_first(tmp_path: Path):
    decision = guard(tmp_path).decision(state(NEWER), running(), state(WEBUI_REF))
    assert decision == ("backup", WEBUI_REF)


def test_a_change_of_database_settings_is_backed_up_first(tmp_path: Path):
    desired = state(WEBUI_REF, env={"DATABASE_URL": "postgresql://db/webui"})
    assert guard(tmp_path).decision(desired, running(), state(WEBUI_REF)) == (
        "backup", WEBUI_REF)


def test_a_rollback_without_a_backup_is_refused_and_says_so(tmp_path: Path):
    history = Lineage(tmp_path / "webui-data.json")
    history.record(WEBUI_REF, commit="a", how="deploy")
    history.record(NEWER, commit="b", how="deploy")
    kind, message = guard(tmp_path).decision(state(WEBUI_REF), running(NEWER),
                                             state(NEWER))
    assert kind == "refuse"
    assert "no backup made with" in message and "migrated" in message, message


def test_a_rollback_names_the_backup_to_restore_or_restores_it_when_told(tmp_path: Path):
    backup = keep(tmp_path, WEBUI_REF, "2000-01-01T00:00:00.000Z")  # before v0.12.5 ran
    history = Lineage(tmp_path / "webui-data.json")
    history.record(WEBUI_REF, commit="a", how="deploy")
    history.record(NEWER, commit="b", how="deploy")
    kind, message = guard(tmp_path).decision(state(WEBUI_REF), running(NEWER),
                                             state(NEWER))
    assert kind == "refuse" and f"`lanai restore {backup.id}`" in message, message
    told = state(WEBUI_REF, settings={"backups": {"restore_on_rollback": True}})
    kind, chosen = guard(tmp_path).decision(told, running(NEWER), state(NEWER))
    assert (kind, chosen.id) == ("restore", backup.id)
