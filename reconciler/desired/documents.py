"""The documents a knowledge base of webui.yaml names: files of the state repo, hashed.

Links are never followed: a commit names files inside itself, nothing else.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.desired.webui_yaml import KnowledgeBase


@dataclass(frozen=True)
class Doc:
    path: str  # relative to the state repo
    sha256: str


def repo_files(root: Path) -> list[str]:
    """The regular files under `root` (relative, /-separated), sorted. Symbolic links, to
    files or directories, are skipped, and so is .git."""
    found = []
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not (current == str(root) and d == ".git")
                   and not os.path.islink(os.path.join(current, d))]
        for name in files:
            full = os.path.join(current, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                found.append(Path(full).relative_to(root).as_posix())
    return sorted(found)


def matches(pattern: str, path: str) -> bool:
    """Glob matching on /-separated paths: ``*`` and ``?`` within one part, ``**`` any
    number of parts; a wildcard never matches a part's leading dot."""
    return _match(pattern.strip("/").split("/"), path.split("/"))


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts:
        return False
    part = parts[0]
    if part.startswith(".") and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(part, head) and _match(rest, parts[1:])


def select(files: list[str], base: KnowledgeBase) -> tuple[list[str], list[int]]:
    """The files a knowledge base names; and the indexes of patterns that matched none."""
    chosen: set[str] = set()
    empty = []
    for index, pattern in enumerate(base.files):
        hits = [f for f in files if matches(pattern, f)]
        if not hits:
            empty.append(index)
        chosen.update(hits)
    return sorted(chosen), empty


def read_document(root: Path, relative: str) -> bytes:
    """A document's bytes, refusing a symbolic link anywhere on its path."""
    current = root
    for part in relative.split("/"):
        current = current / part
        if current.is_symlink():
            raise OSError(f"{relative} is a symbolic link")
    fd = os.open(current, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def documents(root: Path, base: KnowledgeBase,
              files: list[str] | None = None) -> tuple[list[Doc], list[str]]:
    """The files a knowledge base names, hashed; and patterns that matched nothing."""
    chosen, empty = select(repo_files(root) if files is None else files, base)
    docs = [Doc(p, hashlib.sha256(read_document(root, p)).hexdigest()) for p in chosen]
    return docs, [base.files[i] for i in empty]
