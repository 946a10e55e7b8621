"""Open WebUI's data as one verified archive.

SQLite databases are copied through SQLite's online backup API (a consistent
copy while Open WebUI keeps writing; a file copy of a live database can be
torn), uploads and the rest of the vector store as files, and a manifest says
whose data it is. Local files only: finding the data on the server is
backup_run's job.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.backup.chroot_copy import SQLITE_HEADER
from reconciler.core.errors import BackupError

MANIFEST = "lanai-backup.json"
DATA_PREFIX = "data"
COUNTED_TABLES = {"users": "user", "chats": "chat"}


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_HEADER
    except OSError:
        return False


def check_database(path: Path) -> dict[str, Any]:
    """SQLite's integrity check and the row counts that say whose data it is."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = [row[0] for row in con.execute("PRAGMA integrity_check").fetchall()]
        tables = {row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts = {label: con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
                  for label, table in COUNTED_TABLES.items() if table in tables}
    finally:
        con.close()
    return {"integrity": "ok" if result == ["ok"] else "; ".join(result[:5]), "counts": counts}


def snapshot(data: Path, staging: Path) -> dict[str, Any]:
    """Copy what a backup holds from `data` into `staging`; databases checked.

    The copy runs chrooted into `data` (backup_copy.py: a link the container planted
    there names nothing outside it). Returns the files, bytes, and per database its
    integrity and row counts."""
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        report = _run_copy(data_fd, staging_fd)
    finally:
        os.close(data_fd)
        os.close(staging_fd)
    if report.get("error") == "busy":
        raise BackupError(f"{report['path']} could not be read ({report['detail']}); nothing "
                          "was changed: try again when Open WebUI is less busy.",
                          deterministic=False)
    if report.get("error") == "planted":
        raise BackupError(
            f"{report['path']} in {data} is not a plain file (a link or a device, which Open "
            "WebUI never makes there), so the backup did not open it and nothing was "
            "changed: look at what else changed in that volume, remove it, and back up "
            "again.", deterministic=True)
    if "error" in report:
        raise OSError(report.get("errno") or 0, report.get("detail") or "copy failed",
                      str(data / report.get("path", "")))
    databases: dict[str, dict[str, Any]] = {
        name: {"integrity": problem, "counts": {}}
        for name, problem in report["damaged"].items()}
    total = 0
    for name, kind in report["copied"]:
        target = staging / name
        if kind == "db":
            # The copy keeps WAL mode in its header; one self-contained file is what an
            # archive wants (staging is root's own: nothing planted here).
            try:
                con = sqlite3.connect(str(target))
                try:
                    con.execute("PRAGMA journal_mode=DELETE")
                finally:
                    con.close()
                databases[name] = check_database(target)
            except sqlite3.DatabaseError as exc:  # copied, but damaged
                databases[name] = {"integrity": str(exc), "counts": {}}
        total += target.stat().st_size
    return {"files": len(report["copied"]), "bytes": total, "databases": databases}


def _run_copy(data_fd: int, staging_fd: int) -> dict[str, Any]:
    """backup_copy.py as its own process (a chroot is for the whole process), given the
    two directories as fds; `-I`: nothing from the environment or the user's site."""
    script = Path(__file__).with_name("chroot_copy.py")
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(data_fd), str(staging_fd)],
        pass_fds=(data_fd, staging_fd), capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if "Operation not permitted" in detail:
            raise BackupError("backups run as root (they read Docker's volume in a chroot); "
                              "run `sudo lanai backup` on the server.") from None
        raise BackupError(f"the backup's copy of the data failed ({detail}); nothing was "
                          "changed and older backups are kept.") from None
    return report


def write_archive(staging: Path, manifest: dict[str, Any], target: Path) -> int:
    """staging + manifest -> target (.tar.gz), root-only, atomically; returns its size."""
    partial = target.with_name(target.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                body = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode = len(body), 0o600
                tar.addfile(info, io.BytesIO(body))
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        arcname = str(PurePosixPath(DATA_PREFIX) / path.relative_to(staging))
                        tar.add(path, arcname=arcname, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


def read_manifest(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST:
                raise ValueError(f"{archive.name} has no {MANIFEST} first; it is not a lanai "
                                 "backup")
            handle = tar.extractfile(member)
            assert handle is not None
            return json.loads(handle.read())
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ValueError(f"{archive.name} is not a readable archive ({exc})") from None


def verify_archive(archive: Path) -> dict[str, Any]:
    """Read every byte back (gzip checks its CRC at the end); every name is safe."""
    manifest = read_manifest(archive)
    count = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                _safe_name(member)
                if member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    while handle.read(1 << 20):
                        pass
                    count += 1
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ValueError(f"{archive.name} is damaged ({exc})") from None
    if count != manifest.get("files"):
        raise ValueError(f"{archive.name} holds {count} files, its manifest says "
                         f"{manifest.get('files')}")
    return manifest


def _safe_name(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != (DATA_PREFIX,) \
            or not (member.isfile() or member.isdir()):
        raise ValueError(f"unexpected entry {member.name!r}: not a lanai backup")
    return PurePosixPath(*path.parts[1:])


def extract(archive: Path, target: Path) -> None:
    """The data files of `archive` into `target` (regular files only, nothing outside it)."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            if member.name == MANIFEST or member.isdir():
                continue
            relative = _safe_name(member)
            out = target / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            handle = tar.extractfile(member)
            assert handle is not None
            with out.open("wb") as sink:
                shutil.copyfileobj(handle, sink, 1 << 20)
            os.chown(out, member.uid, member.gid)  # as Open WebUI wrote them
            os.chmod(out, member.mode & 0o777 or 0o644)
            os.utime(out, (member.mtime, member.mtime))


def restored_names(staged: Path) -> list[str]:
    """The top-level names a restore replaces in the data directory."""
    return sorted(p.name for p in staged.iterdir())
