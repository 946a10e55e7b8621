"""A commit's tree on disk, with nothing from the commit followed out of it.

lanai runs as root and unpacks whatever is pushed. `tarfile`'s own `data` filter is missing
on Debian 12's Python 3.11.2, so the members are checked here, on every Python: no absolute
paths, no `..`, no device files or FIFOs, no hard links, and symbolic links only where they
resolve inside the tree (they are made last, after every file, so no file is written through
one). The files lanai generates beside the commit's are written fresh: never through a link,
and a commit that holds one of their names is refused rather than overwritten.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from reconciler.core.errors import StateError
from reconciler.desired import bounded

_CHUNK = 1024 * 1024


def _refuse(message: str) -> StateError:
    return StateError(f"{message}; fix it in the state repo and push again.")


class TreeBudget:
    """Counts a tree's files and bytes, refusing it past bounded's limits."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.total += max(size, 0)
        if self.count > bounded.MAX_TREE_FILES:
            raise _refuse(f"the commit has more than {bounded.MAX_TREE_FILES} files (the limit "
                          "for a state repo); keep data such as documents and model weights "
                          "elsewhere")
        if self.total > bounded.MAX_TREE_BYTES:
            raise _refuse(f"the commit's files are larger than "
                          f"{bounded.size_text(bounded.MAX_TREE_BYTES)} together (the limit for "
                          "a state repo); keep large files such as model weights elsewhere")


def check_listing(sizes: Iterable[int]) -> None:
    """Refuse a tree over the limits from its file sizes, read lazily (at most
    MAX_TREE_FILES + 1 of them)."""
    budget = TreeBudget()
    for size in sizes:
        budget.add(size)


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\0" in name:
        raise _refuse(f"{name!r} is not a path inside the state repo")
    return path


def extract(stream: IO[bytes], dest: Path) -> None:
    """Unpack an uncompressed tar stream (`git archive`) into the existing empty `dest`."""
    links: list[tuple[PurePosixPath, str]] = []
    budget = TreeBudget()  # the limits hold for the stream as well as for the listing
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = _relative(member.name)
            if path == PurePosixPath("."):
                continue
            if member.isdir():  # counted by its files: git has no empty directories
                _mkdir(dest, path)
                continue
            budget.add(member.size)
            if member.isreg():
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                _write_member(dest, path, source, member.mode)
            elif member.issym():
                if os.path.isabs(member.linkname):
                    raise _refuse(f"{member.name} is a symbolic link to {member.linkname}, "
                                  "outside the state repo; commit the file itself")
                links.append((path, member.linkname))
            elif member.islnk():
                raise _refuse(f"{member.name} is a hard link; commit the file itself")
            else:
                raise _refuse(f"{member.name} is a device file or FIFO, which a state repo "
                              "cannot hold")
    for path, target in links:
        _make_parents(dest, path)
        try:
            os.symlink(target, dest / path)
        except FileExistsError:
            raise _refuse(f"{path} appears twice in the commit") from None
    root = os.path.realpath(dest)
    for path, target in links:
        resolved = os.path.realpath(dest / path)
        if os.path.commonpath([root, resolved]) != root:
            raise _refuse(f"{path} is a symbolic link to {target}, which leads outside the "
                          "state repo; commit the file itself")


def _make_parents(dest: Path, path: PurePosixPath) -> None:
    """Make the directories above `path`, refusing any that is not a plain directory."""
    current = dest
    for part in path.parts[:-1]:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise _refuse(f"{path} lies under {current.relative_to(dest)}, which is not a "
                              "directory") from None


def _mkdir(dest: Path, path: PurePosixPath) -> None:
    _make_parents(dest, path / "x")


def _write_member(dest: Path, path: PurePosixPath, source: IO[bytes], mode: int) -> None:
    _make_parents(dest, path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(dest / path, flags, 0o755 if mode & 0o111 else 0o644)
    except FileExistsError:
        raise _refuse(f"{path} appears twice in the commit") from None
    with os.fdopen(fd, "wb") as sink:
        while chunk := source.read(_CHUNK):
            sink.write(chunk)


def refuse_generated(directory: Path, names: Iterable[str]) -> None:
    """Refuse a commit that holds a name lanai generates beside its files (as a file, a
    directory or a link): lanai would otherwise write over it, or through it."""
    for name in names:
        if os.path.lexists(directory / name):
            raise _refuse(f"{name} is in the state repo, but lanai generates that file on the "
                          "server; remove it from the repo")


def write_generated(directory: Path, name: str, text: str, mode: int = 0o600) -> None:
    """Write lanai's own file `name` in `directory`: created fresh beside it (never through
    a link, even one that appeared since), then renamed over any earlier version."""
    target = directory / name
    temporary = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)  # replaces a link itself, never what it points to
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
