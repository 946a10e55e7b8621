"""Taking and restoring backups of Open WebUI's data on this server.

The data is the volume mounted at backups.data_path in the service's
container, read from the host (the reconciler runs beside Docker, as root).
A backup never changes the data; a restore first takes a backup of what is
there, so a mistaken restore can itself be undone.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import yaml

from reconciler import __version__
from reconciler.backup.archive import (
    check_database,
    extract,
    is_sqlite,
    snapshot,
    verify_archive,
    write_archive,
)
from reconciler.backup.chroot_copy import INCLUDED_DIRS, SIDE_FILES, SQLITE_HEADER
from reconciler.backup.store import Backup, Lineage, Store, to_prune
from reconciler.core import nofollow
from reconciler.core.errors import ApplyError, BackupError, DockerError, LanaiError
from reconciler.core.files import write_json_atomic
from reconciler.desired import safe_tree
from reconciler.server.record import now_iso
from reconciler.server.settings import ServerSettings
from reconciler.stack import compose
from reconciler.stack.apply import Applier, ApplyReport
from reconciler.stack.facts import LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE
from reconciler.stack.render import LABEL_HASH, RESTORE_FILE, Rendered

MAIN_DATABASE = "webui.db"
FULL = (errno.ENOSPC, errno.EDQUOT)
ASIDE = ".lanai-replaced"  # in the data volume: what a restore replaced, until it is done


@dataclass(frozen=True)
class DataDir:
    container: Any  # docker.models.containers.Container
    path: Path  # on this host
    image: str  # the reference the container was created from


def lineage(settings: ServerSettings) -> Lineage:
    return Lineage(settings.home / "webui-data.json")


def _pin_file(settings: ServerSettings) -> Path:
    return settings.home / "restore-pin.json"


def load_pin(settings: ServerSettings) -> dict[str, Any] | None:
    """Set by `lanai restore` when it started another image than git's: the service is
    held (reported, not healed back) until the next commit."""
    try:
        return json.loads(_pin_file(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save_pin(settings: ServerSettings, pin: dict[str, Any]) -> None:
    write_json_atomic(_pin_file(settings), pin)


def clear_pin(settings: ServerSettings) -> None:
    _pin_file(settings).unlink(missing_ok=True)


def locate(client: docker.DockerClient, project: str, service: str,
           data_path: str) -> DataDir | None:
    """The service's container and where its data volume lives here; None: no container."""
    try:
        found = client.containers.list(all=True, filters={"label": [
            f"{LABEL_PROJECT}={project}", f"{LABEL_SERVICE}={service}"]})
    except docker.errors.DockerException as exc:
        raise DockerError(f"cannot list containers ({exc}); check `docker info`.") from None
    found = [c for c in found if c.labels.get(LABEL_ONEOFF) != "True"]
    if not found:
        return None
    container = found[0]
    mounts = [m for m in container.attrs.get("Mounts") or []
              if m.get("Destination") == data_path]
    if not mounts:
        raise BackupError(
            f"{service} keeps no volume at {data_path}, so its data lives in the container and "
            f"is lost when the container is recreated; mount a volume there in compose.yaml "
            f"(or set backups.data_path in lanai.yaml).")
    path = Path(mounts[0].get("Source") or "")
    if not path.is_dir():
        raise BackupError(f"{service}'s data volume ({path}) cannot be read from here; run "
                          "lanai on the server itself, as root.")
    return DataDir(container, path, container.attrs.get("Config", {}).get("Image", ""))


def _failure(exc: OSError, store: Store, what: str) -> BackupError:
    if exc.errno in FULL:
        free = shutil.disk_usage(store.root).free if store.root.exists() else 0
        return BackupError(
            f"{what} failed: the disk holding {store.root} is full ({free // 2**20} MiB free); "
            "nothing was changed and older backups are kept: free some space (or lower "
            "backups.keep in lanai.yaml) and try again.", deterministic=True)
    return BackupError(f"{what} failed ({exc.strerror or exc} on {exc.filename or store.root}); "
                       "nothing was changed and older backups are kept.")


def take(settings: ServerSettings, client: docker.DockerClient, rendered: Rendered, *,
         kind: str, reason: str, progress: Callable[[str], None],
         commit: str | None = None) -> Backup | None:
    """One verified backup of the service's data; None when there is no data yet.

    `commit` is the commit whose deployment wrote the data (default: rendered's)."""
    config = rendered.config.backups
    data = locate(client, rendered.project, config.service, config.data_path)
    if data is None:
        return None
    return archive_data(Store(settings.backups_dir), data.path, kind=kind, reason=reason,
                        progress=progress, about={
                            "service": config.service, "project": rendered.project,
                            "image": data.image, "image_id": data.container.attrs.get("Image"),
                            "commit": commit or rendered.commit,
                            "data_path": config.data_path})


def archive_data(store: Store, data: Path, *, kind: str, reason: str,
                 progress: Callable[[str], None], about: dict[str, Any]) -> Backup:
    """Snapshot `data`, check it, archive it into `store`, read the archive back.

    On any failure nothing is left behind but the backups that were there."""
    backup_id = ""
    staging: Path | None = None
    try:
        store.ensure()
        store.clean_partials()  # leftovers of a backup killed half way (we hold the lock)
        backup_id = store.new_id(kind, datetime.now(UTC))
        staging = store.root / f".{backup_id}"
        progress(f"backing up {about.get('service', 'the')} data ({reason})")
        started = time.monotonic()
        snap = snapshot(data, staging)
        damaged = {name: r["integrity"] for name, r in snap["databases"].items()
                   if r["integrity"] != "ok"}
        if damaged:
            name, problem = next(iter(damaged.items()))
            raise BackupError(
                f"the copy of {name} fails SQLite's integrity check ({problem}), so the "
                f"database on the server is damaged; the backup was not kept and nothing was "
                "changed: older backups are listed by `lanai backups`.")
        counts = snap["databases"].get(MAIN_DATABASE, {}).get("counts", {})
        manifest = {"id": backup_id, "kind": kind, "created": now_iso(), "reason": reason,
                    **about, "files": snap["files"], "bytes": snap["bytes"], "counts": counts,
                    "databases": snap["databases"], "lanai": __version__}
        archive = store.archive(backup_id)
        size = write_archive(staging, manifest, archive)
        verify_archive(archive)
        backup = Backup.from_sidecar({**manifest, "size": size})
        store.save(backup)
    except OSError as exc:
        _discard(store, backup_id)
        raise _failure(exc, store, "the backup") from None
    except ValueError as exc:  # the archive did not read back
        _discard(store, backup_id)
        raise BackupError(f"the backup could not be read back ({exc}); it was not kept, "
                          "nothing was changed, and older backups are kept.") from None
    except LanaiError:
        _discard(store, backup_id)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    progress(f"backup {backup_id}: {size // 1024} KiB, {counts.get('users', 0)} user(s), "
             f"{counts.get('chats', 0)} chat(s), verified ({time.monotonic() - started:.1f}s)")
    return backup


def _discard(store: Store, backup_id: str) -> None:
    if backup_id:
        store.delete(backup_id)
        store.archive(backup_id).with_name(f"{backup_id}.tar.gz.partial").unlink(missing_ok=True)


def prune(settings: ServerSettings, keep: int) -> list[str]:
    store = Store(settings.backups_dir)
    gone = to_prune(store.list(), keep)
    for backup in gone:
        store.delete(backup.id)
    return [b.id for b in gone]


# -- restore ---------------------------------------------------------------------------


def restore(settings: ServerSettings, client: docker.DockerClient, rendered: Rendered,
            backup: Backup, *, progress: Callable[[str], None], start: bool = True,
            health_timeout: float = 300) -> dict[str, Any]:
    """Put `backup` back: check it, back up what is there, stop, swap, start its image.

    With start=False the service stays stopped (a deploy that follows starts it)."""
    config = rendered.config.backups
    store = Store(settings.backups_dir)
    archive = store.archive(backup.id)
    data = locate(client, rendered.project, backup.service or config.service, config.data_path)
    if data is None:
        raise BackupError(f"there is no {config.service} container to restore into; deploy "
                          "first (`lanai reconcile`), then restore.")
    # Staged in lanai's root-only home, not in the volume: the container can write the
    # volume, and a link planted there would send root's writes anywhere on the host.
    work = settings.home / "restore"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    work.chmod(0o700)
    staged = work / backup.id
    shutil.rmtree(staged, ignore_errors=True)
    try:
        progress(f"checking backup {backup.id}")
        verify_archive(archive)
        extract(archive, staged)
        for db in (p for p in staged.rglob("*") if p.is_file() and is_sqlite(p)):
            result = check_database(db)
            if result["integrity"] != "ok":
                raise BackupError(f"backup {backup.id} holds a damaged {db.name} "
                                  f"({result['integrity']}); nothing was changed.")
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise _failure(exc, store, f"reading backup {backup.id}") from None
    except (ValueError, EOFError, tarfile.TarError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise BackupError(f"backup {backup.id} cannot be read ({exc}); nothing was changed.") \
            from None
    try:
        safety = take(settings, client, rendered, kind="pre-restore",
                      reason=f"before restoring {backup.id}", progress=progress)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    progress(f"stopping {config.service}")
    data.container.stop(timeout=60)
    aside = f"{ASIDE}-{backup.id}"
    try:
        try:
            data_fd = nofollow.open_dir(data.path)
        except OSError as exc:
            data.container.start()
            raise BackupError(f"{config.service}'s data volume ({data.path}) is not a plain "
                              f"directory ({exc.strerror}); nothing was changed: check it "
                              "by hand.") from None
        try:
            _swap(data_fd, staged, aside)
        except OSError as exc:
            _swap_back(data_fd, aside)
            data.container.start()
            raise _failure(exc, store, f"restoring {backup.id}") from None
        finally:
            nofollow.remove_at(data_fd, aside)
            os.close(data_fd)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    image = backup.image or data.image
    if start:
        _start(client, rendered, data, image, backup.id, progress)
        try:
            Applier(client, health_timeout=health_timeout, progress=progress).wait_healthy(
                rendered, [config.service], ApplyReport())
        except ApplyError as exc:
            raise BackupError(f"the data is restored but {exc.message}") from None
    lineage(settings).rewind(backup.created, image, commit=backup.commit,
                             how=f"restore {backup.id}")
    return {"restored": backup.id, "image": image, "safety_backup": safety.id if safety else None,
            "counts": backup.counts}


def _swap(data_fd: int, staged: Path, aside: str) -> None:
    """Move what a backup covers aside (databases with their WAL files, uploads, vector
    store), then the staged copy in: renames where the volume and lanai's home share a
    mount, else a copy. The volume is the container's to write, so every step
    acts on names in the open directory and follows no link (nofollow)."""
    aside_fd = nofollow.make_dir_at(data_fd, aside)
    try:
        incoming = sorted(os.listdir(staged))
        for name in os.listdir(data_fd):
            if not name.startswith(".lanai-") and (name in incoming or _covered(data_fd, name)):
                os.rename(name, name, src_dir_fd=data_fd, dst_dir_fd=aside_fd)
        for name in incoming:
            try:
                os.rename(staged / name, name, dst_dir_fd=data_fd)
            except OSError as exc:  # another filesystem, or another mount of the same one
                if exc.errno != errno.EXDEV:
                    raise
                nofollow.copy_into(staged / name, data_fd, name)
    finally:
        os.close(aside_fd)


def _covered(data_fd: int, name: str) -> bool:
    if name in INCLUDED_DIRS:
        return True
    head = nofollow.read_head_at(data_fd, name, len(SQLITE_HEADER))
    return nofollow.kind_at(data_fd, name) == stat.S_IFREG and (
        head == SQLITE_HEADER or name.endswith(SIDE_FILES))


def _swap_back(data_fd: int, aside: str) -> None:
    try:
        aside_fd = nofollow.open_dir(Path(aside), dir_fd=data_fd)
    except OSError:
        return
    try:
        for name in os.listdir(aside_fd):
            nofollow.remove_at(data_fd, name)
            os.rename(name, name, src_dir_fd=aside_fd, dst_dir_fd=data_fd)
    finally:
        os.close(aside_fd)


def _start(client: docker.DockerClient, rendered: Rendered, data: DataDir, image: str,
           backup_id: str, progress: Callable[[str], None]) -> None:
    """Start the service on the restored data with the image the backup was made with."""
    service = rendered.config.backups.service
    if image == data.image:
        progress(f"starting {service} ({image})")
        data.container.start()
        return
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise BackupError(f"the backup was made with {image}, which is no longer on this "
                          f"server; pull it (`docker pull {image}`) and restore again.") from None
    progress(f"starting {service} with {image}, the image the backup was made with")
    extra = rendered.directory / RESTORE_FILE
    # The hash label marks the container as restored: the reconciler reports it as
    # drift from git instead of mistaking it for the deployed configuration.
    safe_tree.write_generated(rendered.directory, RESTORE_FILE, yaml.safe_dump(
        {"services": {service: {"image": image,
                                "labels": {LABEL_HASH: f"restored-{backup_id}"}}}}), 0o644)
    project = rendered.project_handle
    argv = [*project.base(), "--file", str(extra), "up", "--detach", "--pull", "never",
            "--no-deps", service]
    result = compose.run(argv, cwd=rendered.directory, timeout=600)
    if result.returncode != 0:
        raise BackupError(f"the data is restored but {service} did not start with {image} "
                          f"({(result.stderr or '').strip()[-300:]}); see `lanai logs "
                          f"{service}`.")
