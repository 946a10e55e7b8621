"""The package's layering, read from the imports: no cycles, nothing imports upward.

A package may import itself and the layers below it; packages of one layer are peers
and never import each other (models, Open WebUI and backups are each converged on
their own, so neither may reach into the other). The README's "Architecture" section
draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"

# Low to high.
LAYERS: list[set[str]] = [
    {"core"},
    {"desired"},
    {"server"},
    {"https"},
    {"stack"},
    {"swarm"},
    {"models", "webui", "backup"},
    {"notify", "bench"},
    {"engine", "metrics"},
    {"statuspage"},
    {"daemon"},
    {"setup"},
    {"cli"},
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports, at any depth of its code (an import
    inside a function is an import all the same)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("reconciler"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: use absolute imports (from reconciler....)")
            if not node.module.startswith("reconciler"):
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER_OF) else None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) & known.keys() for name, path in known.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        here = package_of(source)
        if here is None:  # reconciler/__init__.py, __main__.py: the top
            continue
        for target in targets:
            there = package_of(target)
            if there is None or there == here:
                continue
            if LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{source} imports {target} ({here} is not above {there})")
    return sorted(wrong)


def cycles_in(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYER_OF), "add the new package to LAYERS (and the README)"


def test_no_import_goes_up_or_sideways() -> None:
    wrong = upward_imports(graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    cycles = cycles_in(graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_command_modules_import_the_base_not_the_entry_point() -> None:
    edges = graph()
    offenders = sorted(m for m, targets in edges.items()
                       if m.startswith("reconciler.cli.") and m != "reconciler.cli.main"
                       and "reconciler.cli.main" in targets)
    assert not offenders


# The checkers themselves: a checker that finds nothing would pass any code.

@pytest.mark.parametrize("source,expected", [
    ("from reconciler.stack import facts\n", {"reconciler.stack.facts"}),
    ("from reconciler.stack.facts import Facts\n", {"reconciler.stack.facts"}),
    ("def f():\n    import reconciler.engine.reconcile\n", {"reconciler.engine.reconcile"}),
])
def test_imports_are_read_where_they_are(tmp_path: Path, source: str,
                                         expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports_of(path, modules()) & modules().keys() == expected


def test_upward_and_sideways_imports_are_caught() -> None:
    edges = {
        "reconciler.core.errors": {"reconciler.engine.reconcile"},  # up
        "reconciler.models.sync": {"reconciler.webui.api", "reconciler.stack.facts"},  # peer
        "reconciler.engine.reconcile": {"reconciler.engine.syncer", "reconciler.core.errors"},
    }
    assert upward_imports(edges) == [
        "reconciler.core.errors imports reconciler.engine.reconcile (core is not above engine)",
        "reconciler.models.sync imports reconciler.webui.api (models is not above webui)",
    ]


def test_a_cycle_is_caught() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles_in(edges) == [["a", "b", "c", "a"]]
