"""Backups and restores of Open WebUI's data, for real: the example state deployed,
chats written through Open WebUI's API, an image upgrade pushed through git (the
"newer" image is the pinned one under a v0.12.5 tag: Docker Hub and ghcr.io are
out of reach here, and lanai judges upgrades by the image reference git names),
a rollback refused and then restored, and restore_on_rollback."""

from __future__ import annotations

import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from .chats import create_chat, read_chat, signin
from .harness import (
    Server,
    StateRepo,
    example_repo,
    new_project,
    wait_for,
)

SECRET = "e2e-backup-secret-51d0c2"
ADMIN_EMAIL = "admin@lanai.home.arpa"
ADMIN_PASSWORD = "e2e-backup-admin-8b7e"
OLD = "ghcr.io/open-webui/open-webui:v0.12.4"
NEW = "ghcr.io/open-webui/open-webui:v0.12.5"


class Family:
    def __init__(self, server: Server, repo: StateRepo, port: int) -> None:
        self.server, self.repo, self.port = server, repo, port
        self.url = f"http://127.0.0.1:{port}"
        self.chats: dict[str, str] = {}
        self.backups: dict[str, str] = {}

    def token(self) -> str:
        wait_for(lambda: httpx.get(f"{self.url}/health", timeout=5).status_code == 200, 180,
                 "Open WebUI to answer")
        return signin(self.url, ADMIN_EMAIL, ADMIN_PASSWORD)

    def chat(self, name: str) -> None:
        self.chats[name] = create_chat(self.url, self.token(), name, [
            {"role": "user", "content": f"remember {name}"},
            {"role": "assistant", "content": f"{name} remembered"}])

    def has_chat(self, name: str) -> bool:
        try:
            read = read_chat(self.url, self.token(), self.chats[name])
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (401, 404):
                return False
            raise
        return read["title"] == name

    def webui_image(self) -> str:
        return self.server.containers()["open-webui"].attrs["Config"]["Image"]

    def backups_json(self) -> list[dict]:
        code, data = self.server.lanai_json("backups")
        assert code == 0, data
        return data["backups"]


@pytest.fixture(scope="module")
def family(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Family]:
    docker_client.images.get(OLD).tag(NEW.rsplit(":", 1)[0], NEW.rsplit(":", 1)[1])
    root = tmp_path_factory.mktemp("backups")
    project = new_project()
    repo, ports = example_repo(root, project)
    port = ports.webui
    server = Server(root, repo, project, docker_client, {"WEBUI_SECRET_KEY": SECRET,
                                                         "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        code, outcome = server.reconcile()
        assert code == 0, (outcome.get("error"), outcome.get("notes"))
        yield Family(server, repo, port)
    finally:
        server.teardown()
        docker_client.images.remove(NEW, noprune=True)


def test_an_on_demand_backup_is_verified_and_listed_with_its_commit_and_image(family: Family):
    family.chat("before the upgrade")
    code, taken = family.server.lanai_json("backup")
    assert code == 0, taken
    assert taken["kind"] == "manual"
    assert taken["counts"]["chats"] == 1 and taken["counts"]["users"] >= 1
    assert (taken["image"], taken["commit"]) == (OLD, family.repo.head())
    listed = family.backups_json()
    assert [b["id"] for b in listed] == [taken["id"]]
    archive = family.server.home / "backups" / f"{taken['id']}.tar.gz"
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "data/webui.db" in names and not any("cache/" in n for n in names)
    text = family.server.lanai("backups")
    assert taken["id"] in text.stdout and "manual" in text.stdout, text.stdout
    assert family.server.status()["backups"]["newest"]["id"] == taken["id"]


def test_download_copies_a_verified_backup_here(family: Family, tmp_path: Path):
    code, data = family.server.lanai_json("backup", "--download", "latest", "--to",
                                          str(tmp_path))
    assert code == 0, data
    path = Path(data["downloaded"])
    assert path.parent == tmp_path and path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(path) as tar:
        handle = tar.extractfile("data/webui.db")
        assert handle is not None
        (tmp_path / "webui.db").write_bytes(handle.read())
    db = sqlite3.connect(tmp_path / "webui.db")
    assert db.execute("SELECT title FROM chat").fetchall() == [("before the upgrade",)]


def test_an_upgrade_pushed_through_git_is_preceded_by_a_backup(family: Family):
    family.repo.replace("compose.yaml", OLD, NEW)
    family.repo.commit_push("Upgrade Open WebUI to v0.12.5")
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    assert outcome["status"] == "applied" and outcome["backup"], outcome
    assert family.webui_image() == NEW
    upgrade = next(b for b in family.backups_json() if b["id"] == outcome["backup"])
    assert upgrade["kind"] == "upgrade" and upgrade["image"] == OLD
    assert upgrade["counts"]["chats"] == 1
    family.backups["upgrade"] = upgrade["id"]
    assert family.has_chat("before the upgrade")
    family.chat("after the upgrade")


def test_a_revert_across_the_migration_is_refused_and_names_the_backup(family: Family):
    family.repo.revert_push()
    ids = family.server.container_ids()
    code, outcome = family.server.reconcile()
    assert code == 10, outcome
    assert outcome["status"] == "failed"
    error = outcome["error"]
    assert f"lanai restore {family.backups['upgrade']}" in error and "migrated" in error, error
    # The newer image keeps serving, on its data.
    assert family.server.container_ids() == ids and family.webui_image() == NEW
    assert family.has_chat("after the upgrade")
    # Deterministic: the next reconcile does not try again.
    code, again = family.server.reconcile()
    assert again["status"] == "waiting", again


def test_restore_asks_for_confirmation_without_a_terminal(family: Family):
    result = family.server.lanai("restore", family.backups["upgrade"])
    assert result.returncode == 2 and "--yes" in result.stderr, result.stderr


def test_restore_puts_the_old_data_and_image_back_and_keeps_what_was_there(family: Family,
                                                                        tmp_path: Path):
    # A compromised Open WebUI plants links in its volume where earlier versions staged the
    # backup and set the data aside, aimed at a directory of this host: root follows none.
    host = tmp_path / "host-dir"
    host.mkdir()
    webui = family.server.containers()["open-webui"]
    for name in (".lanai-restore-", ".lanai-replaced-"):
        planted = webui.exec_run(["ln", "-s", str(host),
                                  f"/app/backend/data/{name}{family.backups['upgrade']}"])
        assert planted.exit_code == 0, planted.output
    code, result = family.server.lanai_json("restore", family.backups["upgrade"], "--yes")
    assert code == 0, result
    assert list(host.iterdir()) == []
    assert result["image"] == OLD and result["reconcile"] == "applied", result
    assert family.server.status()["applied_commit"] == family.repo.head()
    assert family.webui_image() == OLD
    assert family.has_chat("before the upgrade")
    assert not family.has_chat("after the upgrade")  # the data is as the backup had it
    safety = next(b for b in family.backups_json() if b["id"] == result["safety_backup"])
    assert safety["kind"] == "pre-restore" and safety["image"] == NEW
    assert safety["counts"]["chats"] == 2  # the chat written after the upgrade is kept there
    history = family.server.history()
    assert any(r["status"] == "restored" for r in history)


def test_restore_on_rollback_restores_the_backup_then_deploys_the_older_image(family: Family):
    family.repo.replace("compose.yaml", OLD, NEW)
    family.repo.commit_push("Upgrade Open WebUI to v0.12.5 again")
    code, outcome = family.server.reconcile()
    assert code == 0 and outcome["backup"], outcome
    family.chat("second upgrade")
    family.repo.replace("compose.yaml", NEW, OLD)
    family.repo.replace("lanai.yaml", "restore_on_rollback: false", "restore_on_rollback: true")
    family.repo.commit_push("Back to v0.12.4, restoring its data")
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    assert any(n.startswith("restored backup ") and "restore_on_rollback" in n
               for n in outcome["notes"]), outcome
    assert family.webui_image() == OLD
    assert family.has_chat("before the upgrade")
    assert not family.has_chat("second upgrade")
    kept = [b for b in family.backups_json() if b["kind"] == "pre-restore"
            and b["counts"].get("chats") == 2 and b["image"] == NEW]
    assert len(kept) == 2  # both restores kept what they replaced


def test_a_restore_onto_another_image_than_git_is_drift_until_the_next_commit(family: Family):
    newer = next(b for b in family.backups_json() if b["kind"] == "pre-restore")
    code, result = family.server.lanai_json("restore", newer["id"], "--yes")
    assert code == 0, result
    assert result["pinned"] == OLD and family.webui_image() == NEW
    assert family.server.status()["backups"]["restore_pin"]["backup"] == newer["id"]
    ids = family.server.container_ids()
    code, drift = family.server.lanai_json("drift")
    assert code == 1
    line = next(d for d in drift["drift"] if d["service"] == "open-webui")
    assert f"restored from backup {newer['id']}" in line["detail"], drift
    code, outcome = family.server.reconcile()
    assert outcome["status"] == "drift", outcome
    assert family.server.container_ids() == ids  # not "healed" back to git's image
    assert family.has_chat("second upgrade")
