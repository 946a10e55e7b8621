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
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BackupError

SQLITE_HEADER = b"SQLite format 3\x00"
# Besides the databases at the top of the data directory: uploaded files and the
# vector store. cache/ (downloaded embedding and speech models) is not user data.
INCLUDED_DIRS = ("uploads", "vector_db")
SIDE_FILES = ("-wal", "-shm", "-journal")  # covered by the online backup
MANIFEST = "lanai-backup.json"
DATA_PREFIX = "data"
COUNTED_TABLES = {"users": "user", "chats": "chat"}
STEP_PAGES = 256  # pages per backup step: writers wait at most one short step


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_HEADER
    except OSError:
        return False


def online_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's backup API, in steps)."""
    src = sqlite3.connect(str(source), timeout=30)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst, pages=STEP_PAGES, sleep=0.01)
            # The copy inherits WAL mode; one self-contained file is what an archive wants.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


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

    Returns the files, bytes, and per database its integrity and row counts."""
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = total = 0
    databases: dict[str, dict[str, Any]] = {}
    for path in sorted(_members(data)):
        relative = path.relative_to(data)
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_sqlite(path):
            try:
                online_copy(path, target)
                databases[str(relative)] = check_database(target)
            except sqlite3.OperationalError as exc:  # busy or locked past the timeout
                raise BackupError(f"{relative} could not be read ({exc}); nothing was changed: "
                                  "try again when Open WebUI is less busy.",
                                  deterministic=False) from None
            except sqlite3.DatabaseError as exc:  # damaged beyond copying
                databases[str(relative)] = {"integrity": str(exc), "counts": {}}
                continue
        else:
            shutil.copy2(path, target)
        files += 1
        total += target.stat().st_size
    return {"files": files, "bytes": total, "databases": databases}


def _members(data: Path) -> list[Path]:
    out = []
    for entry in data.iterdir():
        if entry.is_file() and not entry.is_symlink() and is_sqlite(entry):
            out.append(entry)
        elif entry.name in INCLUDED_DIRS and entry.is_dir() and not entry.is_symlink():
            out += [p for p in entry.rglob("*") if p.is_file() and not p.is_symlink()
                    and not p.name.endswith(SIDE_FILES)]
    return out


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
