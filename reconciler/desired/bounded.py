"""Limits on what lanai reads from a commit, so that any commit is read in bounded time and
memory: the daemon runs as root and reads whatever is pushed.

A few hundred bytes of nested YAML aliases expand to gigabytes ("billion laughs"), an alias
inside its own anchor never ends, and deep nesting overflows Python's stack. So YAML is
composed with a count of aliases, values and depth, and the expanded size is computed on
the node graph (shared nodes counted once per use, in time linear in the file) before
anything is built from it. The limits are far above real files: Open WebUI's settings with
long prompts are a few hundred KB, a compose file a few KB.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

MAX_FILE_BYTES = 2 * MIB  # lanai.yaml, compose.yaml, models.yaml, webui.yaml, a Modelfile
MAX_YAML_ALIASES = 100  # alias uses (*name) in one file
MAX_YAML_NODES = 20_000  # values (scalars, lists, mappings) after aliases are expanded
MAX_YAML_DEPTH = 64  # lists and mappings nested in each other, aliases expanded
MAX_TREE_FILES = 20_000  # entries in the commit's tree (files, links, directories)
MAX_TREE_BYTES = 2 * GIB  # total size of the commit's files

LIMIT_HINT = "keep the file simpler (the limits are in the README's configuration reference)"


class LimitExceeded(ValueError):
    """A file over one of the limits: `message` names the limit, `line` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def size_text(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`, reading at most `limit` + 1 bytes (a FIFO or /dev/zero in
    place of a file cannot make this read forever). Raises LimitExceeded, UnicodeDecodeError,
    OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise LimitExceeded(f"the file is larger than {size_text(limit)} (the limit for a "
                            f"file lanai reads); {LIMIT_HINT}")
    return data.decode("utf-8")


class _CountingLoader(yaml.SafeLoader):
    """PyYAML's safe composer, counting aliases, values and depth as it goes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_count = 0
        self.node_count = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_YAML_ALIASES:
                raise LimitExceeded(f"too many YAML aliases (limit {MAX_YAML_ALIASES}); "
                                    f"{LIMIT_HINT}", line)
            return super().compose_node(parent, index)
        self.node_count += 1
        if self.node_count > MAX_YAML_NODES:
            raise LimitExceeded(f"too many YAML values (limit {MAX_YAML_NODES}); {LIMIT_HINT}",
                                line)
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise LimitExceeded(f"YAML nested too deeply (limit {MAX_YAML_DEPTH} levels); "
                                    f"{LIMIT_HINT}", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose(text: str) -> yaml.Node | None:
    """One YAML document as a node graph whose expansion is known to be small and finite.

    Raises yaml.YAMLError for bad YAML, LimitExceeded for YAML over a limit."""
    loader = _CountingLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None:
        _check_expansion(node)
    return node


def _check_expansion(root: yaml.Node) -> None:
    """Raise LimitExceeded if expanding the aliases of `root` would be too big or deep, or
    never end (an alias inside its own anchor)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, expanded height)
    on_path: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        line = node.start_mark.line + 1 if node.start_mark else None
        known = sizes.get(key)
        if known is None:
            if key in on_path:
                raise LimitExceeded("a YAML alias refers to the list or mapping that contains "
                                    "it, which never ends; use a copy instead", line)
            if depth > MAX_YAML_DEPTH:
                raise LimitExceeded(f"YAML nested too deeply once aliases are expanded "
                                    f"(limit {MAX_YAML_DEPTH} levels); {LIMIT_HINT}", line)
            on_path.add(key)
            count, height = 1, 1
            for child in _children(node):
                child_count, child_height = walk(child, depth + 1)
                count += child_count
                height = max(height, child_height + 1)
                if count > MAX_YAML_NODES:
                    raise LimitExceeded(f"YAML aliases expand to more than {MAX_YAML_NODES} "
                                        f"values (the limit); {LIMIT_HINT}", line)
            on_path.discard(key)
            known = sizes[key] = (count, height)
        if depth + known[1] - 1 > MAX_YAML_DEPTH:
            raise LimitExceeded(f"YAML nested too deeply once aliases are expanded "
                                f"(limit {MAX_YAML_DEPTH} levels); {LIMIT_HINT}", line)
        return known

    walk(root, 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
