"""The shape of the package: the core imports no leaf, no core module imports itself back, and
modules stay small (tests/test_package_layout.py checks what the wheel holds).

Every import counts, those under ``TYPE_CHECKING`` and inside functions included: a cycle that
only the type checker sees is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "anybus"

#: The core: messages, subscriber, the bus, dispatch, the memory transport, errors.
CORE = {
    "anybus._bus",
    "anybus._checks",
    "anybus._dispatch",
    "anybus._exceptions",
    "anybus._fan_out",
    "anybus._hooks",
    "anybus._inbox",
    "anybus._lifecycle",
    "anybus._listen",
    "anybus._memory",
    "anybus._messages",
    "anybus._registry",
    "anybus._statistics",
    "anybus._subscriber",
    "anybus._transport",
}

#: Leaves the core must never import.
JOBS = {"anybus._jobs", "anybus._job_calls", "anybus._job_worker", "anybus._portal"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Every anybus module ``path`` (the module ``name``) imports, wherever the import stands."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # "from . import x" imports the module x
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {module for module in found if module.startswith("anybus")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imports(path) & modules.keys() for name, path in modules.items()}


def test_the_core_modules_exist() -> None:
    assert _graph().keys() >= CORE
    assert _graph().keys() >= JOBS


def test_the_core_imports_nothing_but_the_core() -> None:
    graph = _graph()
    outside = {module: sorted(graph[module] - CORE) for module in CORE if graph[module] - CORE}
    assert outside == {}, f"core modules importing leaves (jobs, transports, ...): {outside}"


def test_no_cycle_among_the_core_modules() -> None:
    graph = {module: graph_imports & CORE for module, graph_imports in _graph().items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(CORE):
        if module not in state:
            visit(module)


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """The import walk finds imports under TYPE_CHECKING and inside functions."""
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from anybus._bus import WorkerBus\n"
        "def f():\n"
        "    from anybus import _jobs\n"
    )
    assert {"anybus._bus", "anybus._jobs"} <= _imports(source, "anybus._example")


def test_modules_stay_small() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 420
    }
    assert long == {}, f"modules over 420 lines (split them by theme): {long}"
