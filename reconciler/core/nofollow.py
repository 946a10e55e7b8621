"""File operations as root inside a directory a container can write.

Open WebUI's data volume is writable by its container; a compromised container
can plant a symlink there to send root's writes anywhere on the host. Here every
step names its target relative to an open directory and never follows a link:
directories are opened with O_NOFOLLOW, files are created with O_EXCL (which
never follows a link), renames and removals act on the name itself.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: Path, dir_fd: int | None = None) -> int:
    """An fd of directory `path`; OSError (ELOOP/ENOTDIR) when its last part is a link."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def kind_at(dir_fd: int, name: str) -> int | None:
    """The file type (stat.S_IFMT) of `name` itself, not of what a link names; None: absent."""
    try:
        return stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return None


def remove_at(dir_fd: int, name: str) -> None:
    """Remove `name` (a tree, a file or a link: the link, never what it names)."""
    kind = kind_at(dir_fd, name)
    if kind is None:
        return
    if kind == stat.S_IFDIR:
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based on Linux: follows no link inside
    else:
        os.unlink(name, dir_fd=dir_fd)


def make_dir_at(dir_fd: int, name: str, mode: int = 0o700) -> int:
    """A new directory `name` (whatever was there removed first), opened."""
    remove_at(dir_fd, name)
    os.mkdir(name, mode, dir_fd=dir_fd)  # fails rather than follows if a link appears
    return open_dir(Path(name), dir_fd=dir_fd)


def read_head_at(dir_fd: int, name: str, size: int) -> bytes:
    """The first bytes of regular file `name`; b"" for anything else (link, FIFO, dir)."""
    if kind_at(dir_fd, name) != stat.S_IFREG:
        return b""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return b""
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def copy_into(source: Path, dir_fd: int, name: str) -> None:
    """Copy `source` (a root-only tree of directories and regular files) to `name` in
    `dir_fd`, keeping owners, modes and times; refuses (FileExistsError) rather than
    writes through anything already at a name it creates."""
    info = os.stat(source, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = open_dir(Path(name), dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(source)):
                copy_into(source / child, fd, child)
        finally:
            _same_as(fd, info)
            os.close(fd)
        return
    if not stat.S_ISREG(info.st_mode):
        return  # a backup holds only directories and regular files
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        with source.open("rb") as src, os.fdopen(os.dup(fd), "wb") as sink:
            shutil.copyfileobj(src, sink, 1 << 20)
        _same_as(fd, info)
    finally:
        os.close(fd)


def _same_as(fd: int, info: os.stat_result) -> None:
    os.fchown(fd, info.st_uid, info.st_gid)
    os.fchmod(fd, stat.S_IMODE(info.st_mode))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
