"""YAML loading that remembers where every key and item came from.

Errors about the desired state must name the file, the key path and the line,
so the loader keeps a map from key path (a tuple of keys and indexes) to the
1-based line it was written on.

Hand-written on purpose: PyYAML (already a dependency) composes the nodes within
bounded's limits and each node's mark gives its line; ruamel.yaml's per-key lines would
add a second YAML parser, one that does not go through those limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.desired import bounded

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """A parsed document and the line of each key path in it."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def load(text: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError with a line on bad input (or input
    over one of bounded's limits)."""
    try:
        node = bounded.compose(text)
    except bounded.LimitExceeded as exc:
        raise YamlSyntaxError(exc.message, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise YamlSyntaxError(f"invalid YAML: {exc.reason} (character {exc.character!r})",
                              line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {' '.join(str(exc).split())}", None) from None
    located = Located(data=None)
    if node is None:
        return located
    located.lines[()] = node.start_mark.line + 1
    located.data = _build(node, (), located.lines)
    return located


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        merged_lines: dict[Path_, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # Merge keys (<<) copy the anchored mapping(s); explicit keys win, as in YAML 1.1.
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [
                    value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise YamlSyntaxError("invalid YAML: a merge key (<<) must name a "
                                              "mapping or a list of mappings",
                                              key_node.start_mark.line + 1)
                    for k, v in _build(source, path, merged_lines).items():
                        merged.setdefault(k, v)
                continue
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError("invalid YAML: a mapping key must be a plain value, not "
                                      "a list or mapping", key_node.start_mark.line + 1)
            if key in result:
                raise YamlSyntaxError(
                    f"duplicate key {key!r} (the later value would silently win)",
                    key_node.start_mark.line + 1)
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, lines)
        for merged_path, line in merged_lines.items():
            # A merged key's line is the anchor's, unless the key is also written here.
            if merged_path[len(path)] not in result:
                lines.setdefault(merged_path, line)
        return {**merged, **result}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, lines))
        return items
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # an unknown or unsafe tag (!!python/object), bad !!binary
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"invalid YAML: {problem}", node.start_mark.line + 1) from None
    except (ValueError, OverflowError, LookupError, TypeError):  # !!int x, !!bool 1
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise YamlSyntaxError(f"invalid YAML: {node.value!r} is not a valid {tag}",
                              node.start_mark.line + 1) from None
    finally:
        loader.dispose()
