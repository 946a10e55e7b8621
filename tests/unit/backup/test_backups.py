"""Backups on real files: SQLite's online backup of a database being written, the
archive read back, damage found, a full disk (a real tmpfs), and the pure decisions
(which backup a rollback needs, what retention deletes)."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from reconciler.backup.archive import (
    MANIFEST,
    check_database,
    extract,
    read_manifest,
    snapshot,
    verify_archive,
    write_archive,
)
from reconciler.backup.run import archive_data
from reconciler.backup.store import Backup, Lineage, Store, backup_for, is_rollback, to_prune
from reconciler.core.errors import BackupError, ExitCode

ABOUT = {"service": "open-webui", "image": "ghcr.io/open-webui/open-webui:v0.12.4",
         "commit": "c0ffee", "project": "lanai"}


def make_webui_data(root: Path, users: int = 2, chats: int = 5, wal: bool = True) -> Path:
    """A data directory shaped like Open WebUI's: webui.db, uploads/, vector_db/, cache/."""
    data = root / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / "recipe.pdf").write_bytes(b"%PDF-1.4 soup" * 100)
    (data / "vector_db" / "5f1c").mkdir(parents=True)
    (data / "vector_db" / "5f1c" / "data_level0.bin").write_bytes(os.urandom(4096))
    chroma = sqlite3.connect(data / "vector_db" / "chroma.sqlite3")
    chroma.execute("CREATE TABLE embeddings (id INTEGER PRIMARY KEY, doc TEXT)")
    chroma.execute("INSERT INTO embeddings (doc) VALUES ('soup')")
    chroma.commit()
    chroma.close()
    (data / "cache" / "embedding").mkdir(parents=True)
    (data / "cache" / "embedding" / "model.bin").write_bytes(b"x" * 1000)
    db = sqlite3.connect(data / "webui.db")
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute('CREATE TABLE "user" (id TEXT PRIMARY KEY, email TEXT)')
    db.execute("CREATE TABLE chat (id TEXT PRIMARY KEY, user_id TEXT, chat TEXT)")
    db.executemany('INSERT INTO "user" VALUES (?, ?)',
                   [(f"u{i}", f"u{i}@example.invalid") for i in range(users)])
    db.executemany("INSERT INTO chat VALUES (?, ?, ?)",
                   [(f"c{i}", "u0", f"chat {i}") for i in range(chats)])
    db.commit()
    db.close()
    return data


def test_snapshot_copies_databases_uploads_and_vectors_but_not_the_cache(tmp_path: Path):
    data = make_webui_data(tmp_path)
    snap = snapshot(data, tmp_path / "staging")
    copied = sorted(str(p.relative_to(tmp_path / "staging"))
                    for p in (tmp_path / "staging").rglob("*") if p.is_file())
    assert copied == ["uploads/recipe.pdf", "vector_db/5f1c/data_level0.bin",
                      "vector_db/chroma.sqlite3", "webui.db"]
    assert snap["databases"]["webui.db"] == {"integrity": "ok",
                                             "counts": {"users": 2, "chats": 5}}
    assert snap["databases"]["vector_db/chroma.sqlite3"]["integrity"] == "ok"
    assert snap["files"] == 4


def test_rows_still_in_the_wal_are_in_the_copy(tmp_path: Path):
    data = make_webui_data(tmp_path)
    writer = sqlite3.connect(data / "webui.db")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # keep the new rows in webui.db-wal
    writer.execute("INSERT INTO chat VALUES ('late', 'u0', 'only in the WAL')")
    writer.commit()
    assert (data / "webui.db-wal").stat().st_size > 0
    snapshot(data, tmp_path / "staging")
    copy = sqlite3.connect(tmp_path / "staging" / "webui.db")
    assert copy.execute("SELECT chat FROM chat WHERE id = 'late'").fetchone() == (
        "only in the WAL",)
    assert not (tmp_path / "staging" / "webui.db-wal").exists()
    writer.close()


def test_a_database_being_written_is_copied_consistently(tmp_path: Path):
    data = make_webui_data(tmp_path, chats=0)
    stop = threading.Event()

    def write() -> None:
        con = sqlite3.connect(data / "webui.db", timeout=30)
        n = 0
        while not stop.is_set():
            con.execute("INSERT INTO chat VALUES (?, 'u0', ?)", (f"w{n}", "x" * 2000))
            con.commit()
            n += 1
        con.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        snaps = [snapshot(data, tmp_path / f"staging{i}") for i in range(3)]
    finally:
        stop.set()
        thread.join()
    for snap in snaps:
        assert snap["databases"]["webui.db"]["integrity"] == "ok"
    assert snaps[-1]["databases"]["webui.db"]["counts"]["chats"] > 0


def test_archive_reads_back_and_extracts_to_the_same_bytes(tmp_path: Path):
    data = make_webui_data(tmp_path)
    snap = snapshot(data, tmp_path / "staging")
    archive = tmp_path / "b.tar.gz"
    size = write_archive(tmp_path / "staging", {"id": "b", "files": snap["files"]}, archive)
    assert size == archive.stat().st_size
    assert archive.stat().st_mode & 0o777 == 0o600
    assert read_manifest(archive)["id"] == "b"
    assert verify_archive(archive)["files"] == 4
    extract(archive, tmp_path / "out")
    for name in ("uploads/recipe.pdf", "vector_db/5f1c/data_level0.bin"):
        assert (tmp_path / "out" / name).read_bytes() == (data / name).read_bytes()
    assert check_database(tmp_path / "out" / "webui.db")["counts"] == {"users": 2, "chats": 5}


def test_a_truncated_archive_is_found_damaged(tmp_path: Path):
    data = make_webui_data(tmp_path)
    (data / "uploads" / "big.bin").write_bytes(os.urandom(300_000))
    snap = snapshot(data, tmp_path / "staging")
    archive = tmp_path / "b.tar.gz"
    write_archive(tmp_path / "staging", {"id": "b", "files": snap["files"]}, archive)
    with archive.open("r+b") as handle:
        handle.truncate(archive.stat().st_size // 2)
    with pytest.raises(ValueError, match=r"damaged|not a readable"):
        verify_archive(archive)


def test_an_archive_with_a_path_outside_the_data_is_refused(tmp_path: Path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, body in ((MANIFEST, b'{"files": 1}'), ("data/../../etc/cron.d/x", b"boom")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with pytest.raises(ValueError, match="not a lanai backup"):
        verify_archive(archive)
    with pytest.raises(ValueError, match="not a lanai backup"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "etc").exists()


def test_links_the_container_planted_in_its_volume_lead_nowhere_outside(tmp_path: Path):
    """Open WebUI's volume is writable by its container: links there, absolute or
    relative, to a host file or directory, are not followed by root's copy."""
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "shadow").write_text("root:$6$secret\n")
    data = make_webui_data(tmp_path)
    (data / "uploads" / "shadow.txt").symlink_to(host / "etc" / "shadow")
    (data / "uploads" / "up.txt").symlink_to("../../host/etc/shadow")
    (data / "vector_db" / "5f1c" / "etc").symlink_to(host / "etc")
    (data / "stolen.db").symlink_to(host / "etc" / "shadow")
    snap = snapshot(data, tmp_path / "staging")
    copied = sorted(str(p.relative_to(tmp_path / "staging"))
                    for p in (tmp_path / "staging").rglob("*") if p.is_file())
    assert copied == ["uploads/recipe.pdf", "vector_db/5f1c/data_level0.bin",
                      "vector_db/chroma.sqlite3", "webui.db"]
    assert snap["files"] == 4
    assert not any(p.is_symlink() for p in (tmp_path / "staging").rglob("*"))


@pytest.mark.parametrize("side", ["-shm", "-wal", "-journal"])
def test_a_database_side_file_planted_as_a_link_is_never_opened(tmp_path: Path, side: str):
    """SQLite opens a database's -wal and -shm read-write by name. Debian's SQLite (3.40)
    refuses a linked one itself, with "unable to open database file", which read as "try
    again when Open WebUI is less busy"; lanai names the link instead, and does not rely on
    SQLite's check: the copy runs chrooted into the volume."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious host file\n" * 100)
    before = (victim.read_bytes(), victim.stat().st_mtime_ns)
    data = make_webui_data(tmp_path)
    for name in ("webui.db-wal", "webui.db-shm", "webui.db-journal"):
        (data / name).unlink(missing_ok=True)
    (data / f"webui.db{side}").symlink_to(victim)
    store = Store(tmp_path / "backups")
    with pytest.raises(BackupError) as info:
        archive_data(store, data, kind="manual", reason="test", progress=lambda _m: None,
                     about=ABOUT)
    assert f"webui.db{side} in {data} is not a plain file" in info.value.message
    assert (victim.read_bytes(), victim.stat().st_mtime_ns) == before
    assert store.list() == []


def test_a_damaged_database_is_not_kept_as_a_backup(tmp_path: Path):
    data = make_webui_data(tmp_path, wal=False)
    db = data / "webui.db"
    raw = bytearray(db.read_bytes())
    page = 4096
    raw[page * 2: page * 2 + 200] = os.urandom(200)  # scribble over a table page
    db.write_bytes(bytes(raw))
    store = Store(tmp_path / "backups")
    with pytest.raises(BackupError) as info:
        archive_data(store, data, kind="manual", reason="test", progress=lambda _m: None,
                     about=ABOUT)
    assert "integrity check" in info.value.message and "not kept" in info.value.message
    assert info.value.exit_code == ExitCode.BACKUP
    assert store.list() == [] and sorted(p.name for p in store.root.iterdir()) == []


def test_a_backup_records_whose_data_it_is(tmp_path: Path):
    data = make_webui_data(tmp_path)
    store = Store(tmp_path / "backups")
    lines: list[str] = []
    taken = archive_data(store, data, kind="upgrade", reason="before v0.12.5",
                         progress=lines.append, about=ABOUT)
    assert taken.counts == {"users": 2, "chats": 5}
    assert (taken.kind, taken.image, taken.commit) == ("upgrade", ABOUT["image"], "c0ffee")
    assert store.list() == [taken]
    assert store.root.stat().st_mode & 0o777 == 0o700
    assert "verified" in lines[-1]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB filesystem (tmpfs) for the backups directory (needs root, as CI is)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_during_a_backup_keeps_older_backups_and_leaves_nothing_behind(
        tmp_path: Path, small_disk: Path):
    data = make_webui_data(tmp_path)
    store = Store(small_disk / "backups")
    older = archive_data(store, data, kind="manual", reason="fits", progress=lambda _m: None,
                         about=ABOUT)
    (data / "uploads" / "video.mp4").write_bytes(os.urandom(2 * 2**20))  # does not fit
    with pytest.raises(BackupError) as info:
        archive_data(store, data, kind="scheduled", reason="daily", progress=lambda _m: None,
                     about=ABOUT)
    message = info.value.message
    assert "disk holding" in message and "is full" in message and "older backups are kept" \
        in message
    assert store.list() == [older]
    assert sorted(p.name for p in store.root.iterdir()) == [f"{older.id}.json",
                                                            f"{older.id}.tar.gz"]
    assert verify_archive(store.archive(older.id))["counts"] == {"users": 2, "chats": 5}
    shutil.rmtree(store.root)


# -- pure decisions ---------------------------------------------------------------------


def backup(id_: str, kind: str, created: str, image: str = "img:v1") -> Backup:
    return Backup(id=id_, kind=kind, created=created, service="open-webui", image=image,
                  commit="c", size=1)


def test_retention_deletes_only_scheduled_backups_beyond_keep():
    listed = [backup("s1", "scheduled", "2026-11-01T03:30:00.000Z"),
              backup("s2", "scheduled", "2026-11-02T03:30:00.000Z"),
              backup("u1", "upgrade", "2026-11-01T10:00:00.000Z"),
              backup("s3", "scheduled", "2026-11-03T03:30:00.000Z"),
              backup("m1", "manual", "2026-10-01T10:00:00.000Z")]
    assert [b.id for b in to_prune(listed, 2)] == ["s1"]
    assert to_prune(listed, 3) == []


def test_store_ids_are_unique_and_found_by_prefix(tmp_path: Path):
    from datetime import UTC, datetime

    store = Store(tmp_path)
    store.ensure()
    when = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)
    first = store.new_id("scheduled", when)
    store.archive(first).write_bytes(b"x")
    assert store.new_id("scheduled", when) == f"{first}-2"
    for id_ in (first, "20261125-040000-manual"):
        store.archive(id_).write_bytes(b"x")
        store.save(backup(id_, "manual", f"2026-11-25T0{id_[10]}:00:00.000Z"))
    assert store.get("20261125-04").id == "20261125-040000-manual"
    with pytest.raises(BackupError, match="matches 2 backups"):
        store.get("20261125")
    with pytest.raises(BackupError, match=r"no backup .nope.*lanai backups"):
        store.get("nope")


def test_a_rollback_is_an_image_the_data_ran_before_the_current_one(tmp_path: Path):
    lineage = Lineage(tmp_path / "webui-data.json")
    lineage.record("img:v0.12.4", commit="a", how="deploy")
    lineage.record("img:v0.12.5", commit="b", how="deploy")
    seen = lineage.load()
    assert is_rollback(seen, "img:v0.12.5", "img:v0.12.4")
    assert not is_rollback(seen, "img:v0.12.4", "img:v0.12.5")
    assert not is_rollback(seen, "img:v0.12.5", "img:v0.12.5")
    # never seen here: the version in the tag decides
    assert is_rollback(seen, "img:v0.12.5", "img:v0.11.0")
    assert not is_rollback(seen, "img:v0.12.5", "img:v0.13.0")
    assert not is_rollback(seen, "img:v0.12.5", "img:main-abc")


def test_the_backup_for_a_rollback_is_the_newest_one_before_the_data_moved_on(tmp_path: Path):
    lineage = [{"image": "img:v1", "since": "2026-11-01T00:00:00.000Z"},
               {"image": "img:v2", "since": "2026-11-10T00:00:00.000Z"}]
    listed = [backup("after", "scheduled", "2026-11-11T03:30:00.000Z", image="img:v2"),
              backup("upgrade", "upgrade", "2026-11-09T23:59:59.000Z", image="img:v1"),
              backup("older", "scheduled", "2026-11-05T03:30:00.000Z", image="img:v1")]
    assert backup_for(listed, lineage, "img:v1", "open-webui").id == "upgrade"
    assert backup_for(listed, lineage, "img:v3", "open-webui") is None


def test_after_a_restore_the_newer_image_is_an_upgrade_again(tmp_path: Path):
    lineage = Lineage(tmp_path / "webui-data.json")
    lineage.record("img:v1", commit="a", how="deploy")
    backup_taken = "2999-01-01T00:00:00.000Z"  # after v1 started, before v2 (see below)
    lineage.record("img:v2", commit="b", how="deploy")
    entries = lineage.load()
    entries[1]["since"] = "2999-01-02T00:00:00.000Z"
    (tmp_path / "webui-data.json").write_text(json.dumps({"images": entries}))
    assert is_rollback(lineage.load(), "img:v2", "img:v1")
    lineage.rewind(backup_taken, "img:v1", commit="a", how="restore")
    assert [e["image"] for e in lineage.load()] == ["img:v1"]
    assert not is_rollback(lineage.load(), "img:v1", "img:v2")
    # a backup of v2's data restored: the data is v2's again
    lineage.rewind("2999-01-03T00:00:00.000Z", "img:v2", commit="b", how="restore")
    assert is_rollback(lineage.load(), "img:v2", "img:v1")


def test_the_daemon_backs_up_daily_at_backups_schedule_and_not_when_it_is_null(tmp_path: Path):
    from reconciler.daemon.run import Daemon
    from reconciler.server.settings import ServerSettings

    settings = ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    daemon = Daemon(settings)
    daemon.scheduler.start()
    try:
        daemon._schedule_backups("03:30")
        daemon._schedule_backups("03:30")  # every reconcile asks; one job
        [job] = [j for j in daemon.scheduler.get_jobs() if j.id == "backup"]
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["hour"], fields["minute"], fields["day"]) == ("3", "30", "*")
        assert str(job.trigger.timezone) == "UTC"
        daemon._schedule_backups(None)  # a push set backups.schedule: null
        assert [j for j in daemon.scheduler.get_jobs() if j.id == "backup"] == []
    finally:
        daemon.scheduler.shutdown(wait=False)


def test_backups_schedule_is_a_daily_time():
    from pydantic import ValidationError

    from reconciler.desired.lanai_yaml import Backups

    assert Backups(schedule="00:05").schedule == "00:05"
    assert Backups(schedule=None).schedule is None
    for bad in ("3:30", "24:00", "daily", "03:60"):
        with pytest.raises(ValidationError, match="HH:MM"):
            Backups(schedule=bad)


# -- a restore never follows a link the container planted in its volume -----------------


class _Container:
    """Stands in for Docker's container object: the volume is a real directory here."""

    def __init__(self, data: Path) -> None:
        self.attrs = {"Mounts": [{"Destination": "/app/backend/data", "Source": str(data)}],
                      "Config": {"Image": ABOUT["image"]}, "Image": "sha256:1"}
        self.labels: dict[str, str] = {}
        self.running = True

    def stop(self, timeout: int = 0) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True


class _Client:
    def __init__(self, container: _Container) -> None:
        self.containers = self
        self.container = container

    def list(self, **_: object) -> list[_Container]:
        return [self.container]


def _restore_setup(tmp_path: Path):
    from types import SimpleNamespace

    from reconciler.server.settings import ServerSettings

    home = tmp_path / "var-lib-lanai"
    home.mkdir()
    data = make_webui_data(tmp_path, users=3, chats=4)
    settings = ServerSettings(home=home, repo=None, branch=None,
                              secrets_file=home / "secrets.env",
                              config_file=home / "server.yaml", deploy_key=home / "key")
    backup = archive_data(Store(settings.backups_dir), data, kind="manual", reason="test",
                          progress=lambda _: None, about=ABOUT)
    # Open WebUI goes on writing: one more user that the restore takes away again.
    db = sqlite3.connect(data / "webui.db")
    db.execute("INSERT INTO \"user\" VALUES ('late', 'late@example.invalid')")
    db.commit()
    db.close()
    rendered = SimpleNamespace(
        project="lanai", commit="c0ffee", directory=tmp_path,
        config=SimpleNamespace(backups=SimpleNamespace(service="open-webui",
                                                       data_path="/app/backend/data")))
    return settings, data, backup, _Client(_Container(data)), rendered


def test_a_restore_does_not_write_through_links_planted_in_the_volume(tmp_path: Path):
    from reconciler.backup.run import restore

    settings, data, backup, client, rendered = _restore_setup(tmp_path)
    host = tmp_path / "host-etc"  # what a compromised container would aim root's writes at
    host.mkdir()
    (host / "passwd").write_text("root:x:0:0\n")
    # Links where earlier versions staged the backup and set the data aside.
    for name in (f".lanai-restore-{backup.id}", f".lanai-replaced-{backup.id}"):
        (data / name).symlink_to(host)

    result = restore(settings, client, rendered, backup, progress=lambda _: None, start=False)

    assert result["restored"] == backup.id
    assert sorted(p.name for p in host.iterdir()) == ["passwd"]
    assert (host / "passwd").read_text() == "root:x:0:0\n"
    assert (data / "webui.db").is_file() and not (data / "webui.db").is_symlink()
    assert check_database(data / "webui.db")["counts"] == {"users": 3, "chats": 4}
    assert (data / "uploads" / "recipe.pdf").read_bytes() == b"%PDF-1.4 soup" * 100
    assert not (data / f".lanai-replaced-{backup.id}").exists()
    staging = settings.home / "restore"
    assert staging.stat().st_mode & 0o777 == 0o700 and list(staging.iterdir()) == []


def test_a_restore_refuses_a_volume_that_is_itself_a_link(tmp_path: Path):
    from reconciler.backup.run import restore

    settings, data, backup, client, rendered = _restore_setup(tmp_path)
    moved = data.rename(tmp_path / "elsewhere")
    data.symlink_to(moved)
    before = check_database(moved / "webui.db")["counts"]
    with pytest.raises(BackupError, match="not a plain directory"):
        restore(settings, client, rendered, backup, progress=lambda _: None, start=False)
    assert check_database(moved / "webui.db")["counts"] == before
    assert client.container.running


def test_copying_into_the_volume_refuses_rather_than_writes_through_a_link(tmp_path: Path):
    from reconciler.core import nofollow

    source = tmp_path / "staged"
    (source / "uploads").mkdir(parents=True)
    (source / "uploads" / "a.txt").write_text("restored")
    volume, host = tmp_path / "volume", tmp_path / "host"
    volume.mkdir()
    host.mkdir()
    fd = nofollow.open_dir(volume)
    try:
        nofollow.copy_into(source / "uploads", fd, "uploads")
        assert (volume / "uploads" / "a.txt").read_text() == "restored"
        (volume / "b.txt").symlink_to(host / "b.txt")
        (source / "b.txt").write_text("restored")
        with pytest.raises(FileExistsError):
            nofollow.copy_into(source / "b.txt", fd, "b.txt")
        assert list(host.iterdir()) == []
    finally:
        os.close(fd)
