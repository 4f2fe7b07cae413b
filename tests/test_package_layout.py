"""The wheel holds the library: no benchmark references, one module that talks to glide,
pipecat only as a wire format (never imported).

Read from the package's source files with ``ast`` (nothing is imported), so the checks hold
whichever extras are installed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "anybus"
#: The one module that may import valkey-glide: the Redis adapter.
GLIDE_ADAPTER = "redis/_client.py"
#: ... and the one place that leans on glide's internals, kept apart from it.
GLIDE_HANDOVER = "redis/_handover.py"


def sources() -> Iterator[tuple[str, ast.Module]]:
    """Every Python file of the package, as (path inside the package, its tree)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    """The top-level name of every module ``tree`` imports (anywhere: functions, branches)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0]


def test_the_package_is_found() -> None:
    found = dict(sources())
    assert "__init__.py" in found
    assert GLIDE_ADAPTER in found
    assert "_bench/memory.py" in found  # `anybus bench` stays a command of the package


#: The modules of the pipecat wire bridge (a feature: a mixed fleet), the only ones named so.
PIPECAT_BRIDGE = ["_pipecat_messages.py", "_pipecat_values.py", "_pipecat_wire.py"]


def test_only_the_wire_bridge_is_about_pipecat_and_nothing_imports_it() -> None:
    named = [path for path, _ in sources() if "pipecat" in path.lower()]
    importing = [path for path, tree in sources() if "pipecat" in set(imported(tree))]
    assert named == PIPECAT_BRIDGE  # no benchmark reference or pipecat worker in the wheel
    assert importing == []  # anybus never depends on pipecat, nor imports a name it sends


def test_only_the_redis_adapter_imports_glide() -> None:
    importing = [path for path, tree in sources() if "glide" in set(imported(tree))]
    assert importing == [GLIDE_ADAPTER, GLIDE_HANDOVER]
