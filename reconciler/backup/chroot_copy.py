"""The copy a backup makes of Open WebUI's data, run as its own process inside a chroot.

The data directory is a volume the container can write, and a link planted there
between a check and an open would send root's reads (and SQLite's writes to a
database's -wal and -shm, which it opens read-write by name) anywhere on the host.
So the copy runs in a child process chrooted into the data directory: a link there
can only name something inside it, whatever the timing and whatever SQLite checks.
What it copies goes out through a directory fd opened before the chroot (root's
private staging directory), with names relative to it.

Standard library only: backup_archive runs this file with `python -I DATA_FD STAGING_FD`
(the two directories, opened and passed down); it prints one JSON object
({"copied": [[path, kind], ...], "damaged": {...}} or {"error": ..., "path": ...}).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import sys

SQLITE_HEADER = b"SQLite format 3\x00"
# Besides the databases at the top of the data directory: uploaded files and the
# vector store. cache/ (downloaded embedding and speech models) is not user data.
INCLUDED_DIRS = ("uploads", "vector_db")
SIDE_FILES = ("-wal", "-shm", "-journal")  # covered by the online backup
STEP_PAGES = 256  # pages per backup step: writers wait at most one short step
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CHUNK = 1 << 20


def regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_sqlite(path: str) -> bool:
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        return handle.read(16) == SQLITE_HEADER


def members() -> list[tuple[str, str]]:
    """(path relative to the data directory, "db" or "file"), links and the cache left out."""
    out: list[tuple[str, str]] = []
    for name in sorted(os.listdir(".")):
        if name.endswith(SIDE_FILES):
            continue
        if regular(name) and is_sqlite(name):
            out.append((name, "db"))
        elif name in INCLUDED_DIRS and stat.S_ISDIR(os.lstat(name).st_mode):
            for top, dirs, files in os.walk(name, followlinks=False):
                dirs.sort()
                for file in sorted(files):
                    path = os.path.join(top, file)
                    if regular(path) and not file.endswith(SIDE_FILES):
                        out.append((path, "db" if is_sqlite(path) else "file"))
    return out


def make_parents(staging: int, relative: str) -> None:
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        with contextlib.suppress(FileExistsError):
            os.mkdir("/".join(parts[:depth]), 0o700, dir_fd=staging)


def create(staging: int, relative: str) -> int:
    make_parents(staging, relative)
    return os.open(relative, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                   | os.O_CLOEXEC, 0o600, dir_fd=staging)


def planted_side_file(relative: str) -> str | None:
    """A -wal, -shm or -journal beside the database that is not a plain file: SQLite would
    open it read-write. Open WebUI never makes one; in the chroot it names nothing outside,
    but it says the container is not what it should be."""
    for suffix in SIDE_FILES:
        try:
            info = os.lstat(relative + suffix)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            return relative + suffix
    return None


def copy_database(relative: str, staging: int) -> None:
    """SQLite's online backup (consistent while Open WebUI writes) into memory, then out."""
    source = sqlite3.connect(f"/{relative}", timeout=30)
    try:
        memory = sqlite3.connect(":memory:")
        try:
            source.backup(memory, pages=STEP_PAGES, sleep=0.01)
            image = memory.serialize()
        finally:
            memory.close()
    finally:
        source.close()
    with os.fdopen(create(staging, relative), "wb") as out:
        out.write(image)


def copy_file(relative: str, staging: int) -> None:
    fd = os.open(relative, READ_FLAGS)
    with os.fdopen(fd, "rb") as source, os.fdopen(create(staging, relative), "wb") as out:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):  # swapped for something else since the walk
            raise OSError(f"{relative} is not a regular file")
        while chunk := source.read(CHUNK):
            out.write(chunk)
        out.flush()
        os.utime(out.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))


def main(argv: list[str]) -> int:
    data_fd, staging = (int(arg) for arg in argv)
    os.fchdir(data_fd)
    os.chroot(".")
    os.chdir("/")
    copied: list[tuple[str, str]] = []
    damaged: dict[str, str] = {}
    for relative, kind in members():
        try:
            if kind == "db":
                if planted := planted_side_file(relative):
                    print(json.dumps({"error": "planted", "path": planted}))
                    return 1
                try:
                    copy_database(relative, staging)
                except sqlite3.OperationalError as exc:  # busy or locked past the timeout
                    print(json.dumps({"error": "busy", "path": relative, "detail": str(exc)}))
                    return 1
                except sqlite3.DatabaseError as exc:  # damaged beyond copying
                    damaged[relative] = str(exc)
                    continue
            else:
                copy_file(relative, staging)
        except FileNotFoundError:  # removed by Open WebUI since the walk
            continue
        except OSError as exc:
            print(json.dumps({"error": "os", "path": relative, "errno": exc.errno,
                              "detail": exc.strerror or str(exc)}))
            return 1
        copied.append((relative, kind))
    print(json.dumps({"copied": copied, "damaged": damaged}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
