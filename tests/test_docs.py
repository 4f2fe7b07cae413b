"""Every public name is documented, and the API reference pages render it, in reading order;
the README's code runs; the diagrams are drawn without a script, and the committed drawings
are up to date.

The site itself is built by ``scripts/docs`` (MkDocs, strict). These checks need only the
standard library and anybus, so they run with the test suite, on every change.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"

#: The modules whose ``__all__`` is the public API.
PUBLIC_MODULES = [
    "anybus",
    "anybus.redis",
    "anybus.postgres",
    "anybus.otel",
    "anybus.testing",
    "anybus.testing.conformance",
]

#: Coroutine methods (by qualified name) whose docstring does not yet say what cancelling them
#: does, in modules owned by other work in progress. Remove a name once its docstring says it;
#: a method that is not listed here and says nothing fails the test.
CANCELLATION_NOT_YET_DOCUMENTED: set[str] = set()


def public_names() -> Iterator[tuple[str, str]]:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            yield module_name, name


def is_data(obj: object) -> bool:
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))


def defining_module(module: ModuleType, name: str) -> Path:
    """The source file that assigns ``name``, following ``from .x import name`` in ``module``."""
    source = Path(inspect.getfile(module))
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            target = importlib.import_module(f".{node.module}", module.__name__)
            return Path(inspect.getfile(target))
    return source


def attribute_docstring(path: Path, name: str) -> str | None:
    """The ``#:`` comment above, or the string literal below, the assignment of ``name``."""
    lines = path.read_text().splitlines()
    body = ast.parse("\n".join(lines)).body
    for index, node in enumerate(body):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        comment: list[str] = []
        line = node.lineno - 2
        while line >= 0 and lines[line].lstrip().startswith("#:"):
            comment.insert(0, lines[line].lstrip()[2:].strip())
            line -= 1
        if comment:
            return " ".join(comment)
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            return following.value.value
    return None


@pytest.mark.parametrize(("module_name", "name"), list(public_names()))
def test_every_public_name_has_a_docstring(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    if name.startswith("__"):
        return  # __version__: module metadata, named in the reference page's text
    if is_data(obj):
        doc = attribute_docstring(defining_module(module, name), name)
    else:
        doc = inspect.getdoc(obj)
    assert (doc or "").strip(), f"{module_name}.{name} has no docstring"


def public_members() -> Iterator[tuple[str, str, Any]]:
    """Public methods and properties of the public classes, inherited ones included."""
    for module_name, name in public_names():
        cls = getattr(importlib.import_module(module_name), name)
        if not inspect.isclass(cls):
            continue
        seen: set[str] = set()
        for base in cls.__mro__:
            if not base.__module__.startswith("anybus"):
                continue
            for member, value in vars(base).items():
                if member.startswith("_") or member in seen:
                    continue
                seen.add(member)
                if inspect.isroutine(value) or isinstance(
                    value, property | classmethod | staticmethod
                ):
                    yield f"{module_name}.{name}.{member}", member, getattr(cls, member)


@pytest.mark.parametrize(
    ("path", "member", "obj"), [pytest.param(*m, id=m[0]) for m in public_members()]
)
def test_every_public_method_has_a_docstring(path: str, member: str, obj: Any) -> None:
    assert (inspect.getdoc(obj) or "").strip(), f"{path} has no docstring"


def test_blocking_calls_say_what_cancelling_them_does() -> None:
    undocumented = set()
    for _, member, obj in public_members():
        if member.startswith("test_"):
            continue  # a conformance test: pytest runs it
        function = inspect.unwrap(getattr(obj, "__func__", obj))
        blocks = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        if blocks and "cancel" not in (inspect.getdoc(obj) or "").lower():
            undocumented.add(function.__qualname__)
    assert undocumented <= CANCELLATION_NOT_YET_DOCUMENTED, (
        f"say what cancelling these does: {sorted(undocumented - CANCELLATION_NOT_YET_DOCUMENTED)}"
    )
    assert not CANCELLATION_NOT_YET_DOCUMENTED - undocumented, (
        "documented now, remove them from CANCELLATION_NOT_YET_DOCUMENTED: "
        f"{sorted(CANCELLATION_NOT_YET_DOCUMENTED - undocumented)}"
    )


# --- the reference pages ----------------------------------------------------------------

_DIRECTIVE = re.compile(
    r"^::: (?P<identifier>[\w.]+)\n(?P<options>(?:    .*\n|\n)*)", re.MULTILINE
)
_LIST_OPTION = re.compile(r"^ +(?P<key>filters|members): \[(?P<items>[^\]]*)\]$", re.MULTILINE)
_PUBLIC_FILTER = re.compile(r"^ +filters: public$", re.MULTILINE)


def rendered(module_name: str, name: str) -> bool:
    """Whether some ``::: identifier`` block in docs/reference/ renders ``module.name``.

    Mirrors what mkdocstrings does with the block's ``members`` and ``filters`` options.
    """
    for page in sorted(REFERENCE.glob("*.md")):
        for block in _DIRECTIVE.finditer(page.read_text()):
            identifier, options = block["identifier"], block["options"]
            if identifier == f"{module_name}.{name}":
                return True
            if identifier != module_name:
                continue
            lists = {
                m["key"]: [item.strip().strip("'\"") for item in m["items"].split(",")]
                for m in _LIST_OPTION.finditer(options)
            }
            if "members" in lists:
                if name in lists["members"]:
                    return True
                continue
            if _PUBLIC_FILTER.search(options) or "filters" not in lists:
                return True  # the whole __all__
            if keep(name, lists["filters"]):
                return True
    return False


def keep(name: str, filters: list[str]) -> bool:
    """mkdocstrings' filter rule: the last matching filter decides; ``!`` excludes."""
    decision = None
    for pattern in filters:
        exclude = pattern.startswith("!")
        if re.search(pattern[1:] if exclude else pattern, name):
            decision = not exclude
    if decision is None:
        return any(pattern.startswith("!") for pattern in filters)
    return decision


@pytest.mark.parametrize(("module_name", "name"), list(public_names()))
def test_every_public_name_is_in_the_api_reference(module_name: str, name: str) -> None:
    if name.startswith("__"):
        return
    assert rendered(module_name, name), (
        f"{module_name}.{name} is not rendered by any page in docs/reference/: add it to the "
        "members list of the section it belongs to"
    )


def test_reference_pages_are_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in REFERENCE.glob("*.md"):
        assert f"reference/{page.name}" in nav


def reference_members(page: str) -> list[list[str]]:
    """The ``members`` list of each ``::: identifier`` block of a reference page, in order."""
    blocks = []
    for block in _DIRECTIVE.finditer((REFERENCE / page).read_text()):
        lists = {m["key"]: m["items"] for m in _LIST_OPTION.finditer(block["options"])}
        members = lists.get("members")
        blocks.append([] if members is None else [n.strip() for n in members.split(",")])
    return blocks


def test_the_anybus_reference_is_in_reading_order() -> None:
    # Not alphabetical (default_registry and AnybusError first): each block names its members,
    # and the sections come in the order a reader learns them.
    blocks = reference_members("anybus.md")
    assert all(blocks), "every ::: anybus block in docs/reference/anybus.md lists its members"
    names = [name for block in blocks for name in block]
    assert len(names) == len(set(names)), "a name is rendered twice in docs/reference/anybus.md"
    # One name of each section, in the order the sections must come.
    sections = ["MemoryBus", "BusSubscriber", "BusMessage", "JobWorker", "AnybusError"]
    sections += ["BusStatistics", "WireCodec", "MessageRegistry"]  # then the rest
    where = [next(i for i, block in enumerate(blocks) if name in block) for name in sections]
    assert where == sorted(set(where)), f"sections out of order: {where}"
    assert names[0] == "MemoryBus"


# --- the README and the home page ---------------------------------------------------------

README = ROOT / "README.md"
HOME = ROOT / "docs" / "index.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return [match["code"] for match in _PYTHON_BLOCK.finditer(path.read_text())]


def run_snippet(code: str, *, timeout: float = 60) -> str:
    """Run ``code`` as a reader would paste it into a file, warnings as errors; its output."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_the_readme_snippet_runs_and_prints_what_it_says() -> None:
    snippet = python_blocks(README)[0]
    # The cancel overtakes the data message sent before it; "other" keeps neither (target).
    assert run_snippet(snippet) == "worker: cancel\nworker: data\n" * 2


def test_the_docs_home_shows_the_readme_snippet() -> None:
    assert python_blocks(README)[0] in python_blocks(HOME)


def test_the_readme_redis_snippets_run(redis_url: str) -> None:
    worker_code, runner_code = python_blocks(README)[1:3]
    channel = f"readme-{uuid.uuid4().hex}"

    def adapt(code: str) -> str:
        url = 'RedisBus("redis://127.0.0.1:6379", channel="readme")'
        assert url in code
        return code.replace(url, f"RedisBus({redis_url!r}, channel={channel!r})")

    worker = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", adapt(worker_code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "worker: ready\n"  # subscribed: start the runner
        assert run_snippet(adapt(runner_code), timeout=30) == "runner: cat.png -> 640x480\n"
    finally:
        worker.kill()
        worker.communicate()


_INSTALL_FROM_PYPI = re.compile(r"pip install (?!--find-links)['\"]?anybus\b")


@pytest.mark.parametrize(
    "page", ["README.md", "docs/index.md", "docs/quickstart-asyncio.md", "docs/quickstart-trio.md"]
)
def test_no_page_installs_from_pypi(page: str) -> None:
    # Nothing is published yet: `pip install anybus` finds nothing.
    for line in (ROOT / page).read_text().splitlines():
        if "finds nothing" not in line:
            assert not _INSTALL_FROM_PYPI.search(line), f"{page}: {line.strip()}"


# --- diagrams ------------------------------------------------------------------------------

EXT = ROOT / "docs" / "_ext"


def sequence_diagrams() -> ModuleType:
    """docs/_ext/sequence_diagrams.py, the MkDocs hook that draws the sequence diagrams."""
    spec = importlib.util.spec_from_file_location(
        "sequence_diagrams", EXT / "sequence_diagrams.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_diagrams_are_up_to_date() -> None:
    drawn = sequence_diagrams().diagrams()
    assert "img/job-life.svg" in drawn
    for uri, svg in drawn.items():
        committed = ROOT / "docs" / uri
        assert committed.exists(), f"run python docs/_ext/sequence_diagrams.py to draw {uri}"
        assert committed.read_text() == svg, (
            f"docs/{uri} is out of date: run python docs/_ext/sequence_diagrams.py"
        )


def test_the_job_diagram_draws_every_step() -> None:
    svg = sequence_diagrams().diagrams()["img/job-life.svg"]
    for label in ("BusJobRequestMessage", "BusJobCancelMessage", "BusJobResponseMessage"):
        assert label in svg
    assert svg.count("<circle") == 10  # autonumber: ten messages
    assert "<script" not in svg


def test_the_diagrams_need_no_script() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert "- docs/_ext/sequence_diagrams.py" in config  # the build draws them (hooks:)
    assert "mermaid" not in config.lower()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert "```mermaid" not in page.read_text(), f"{page.name}: draw it in docs/_ext/"
    assert "](img/job-life.svg)" in (ROOT / "docs" / "jobs.md").read_text()


def test_a_diagram_line_that_cannot_be_read_is_named() -> None:
    with pytest.raises(ValueError, match=r"^line 3: cannot read 'A => B: hi'"):
        sequence_diagrams().parse("sequenceDiagram\n    participant A\n    A => B: hi\n")
