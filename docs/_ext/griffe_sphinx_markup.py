"""A Griffe extension: keep reST markup in the docstrings, render it as Markdown.

anybus's docstrings follow the Google convention (``Args:``, ``Raises:``) and use a few reST
constructs inside the text. mkdocstrings renders docstring text as Markdown, so before it does,
this extension rewrites, in every docstring of the package:

* ``:class:`~anybus.WorkerBus``` (and ``:meth:``, ``:func:``, ``:attr:``, ``:mod:``, ``:data:``,
  ``:exc:``) into a cross-reference. The target is resolved the way Python resolves a name in
  the docstring's scope (the object, its parents, then the ``anybus`` package). In a rendered
  docstring, a target that resolves to nothing is a broken reference and fails the strict
  build; a target that exists but is not rendered anywhere (a private helper), or that lives
  outside anybus (the standard library), shows as code.
* ```text <https://...>`_`` into a Markdown link;
* a paragraph ending in ``::`` (reST's literal-block marker) into one ending in ``:``;
* ``#:`` comments just above an attribute into that attribute's docstring, as Sphinx reads them.

It is loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import builtins
import importlib.util
import logging
import re
from typing import Any

import griffe

# Warnings on a "mkdocs.*" logger count as warnings of the build: `mkdocs build --strict` fails.
logger = logging.getLogger("mkdocs.plugins.anybus_docstrings")

_ROLE = re.compile(r":(?:py:)?(class|meth|func|attr|mod|data|exc|obj):`(?P<body>[^`]+)`")
_LINK = re.compile(r"`(?P<text>[^`<]+?)\s*<(?P<url>https?://[^>]+)>`_")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)
_LONE_LITERAL_MARKER = re.compile(r"^[ \t]*::[ \t]*\n", re.MULTILINE)
_PACKAGE = "anybus"
#: The modules whose ``__all__`` the API reference renders.
PUBLIC_MODULES = ("anybus", "anybus.redis", "anybus.testing", "anybus.testing.conformance")


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Map the canonical path of every rendered object to the path it is rendered under.

    ``anybus._bus.WorkerBus`` is rendered as ``anybus.WorkerBus``; a member inherited from a
    private base class (``anybus._registry.SubscriptionRegistry.subscribe``) is rendered on
    the public class nearest to that base (``anybus.WorkerBus.subscribe``).
    """
    public: dict[str, str] = {}
    classes: list[tuple[str, griffe.Class]] = []
    for module_path in PUBLIC_MODULES:
        try:
            module = pkg.modules_collection[module_path]
        except KeyError:
            continue
        for name in module.exports or ():
            try:
                obj = module[name]
                target = obj.final_target if obj.is_alias else obj
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            public.setdefault(target.path, f"{module_path}.{name}")
            if target.is_class:
                classes.append((f"{module_path}.{name}", target))
    classes.sort(key=lambda item: len(item[1].mro()))
    for path, cls in classes:
        for name, member in cls.all_members.items():
            try:
                canonical = member.final_target.path if member.is_alias else member.path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            public.setdefault(canonical, f"{path}.{name}")
    return public


def _resolve(obj: griffe.Object, target: str, public: dict[str, str]) -> str | None:
    """The path ``target`` names from ``obj``'s docstring, or ``None`` if it names nothing."""
    collection = obj.modules_collection
    candidates = []
    if target.startswith(f"{_PACKAGE}.") or target == _PACKAGE:
        candidates.append(target)
    scope: griffe.Object | None = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    candidates.append(f"{_PACKAGE}.{target}")
    for path in candidates:
        try:
            found = collection[path]
            canonical = found.final_target.path if found.is_alias else found.path
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if "._" not in path:
            return path
        return public.get(canonical, canonical)
    return None


def _is_external(target: str) -> bool:
    """Whether ``target`` names a builtin or something in another importable package."""
    root = target.lstrip("~.").partition(".")[0]
    if root == _PACKAGE:
        return False
    return hasattr(builtins, root) or importlib.util.find_spec(root) is not None


def _convert(obj: griffe.Object, text: str, public: dict[str, str]) -> str:
    def role(match: re.Match[str]) -> str:
        body = match["body"].strip()
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~.")
            title = target.rpartition(".")[2] if body.startswith("~") else target
        path = _resolve(obj, target.lstrip("."), public)
        if path is None and _is_external(target):
            return f"<code>{title}</code>"  # the standard library, say: no inventory to link to
        if path is None and obj.path not in public and obj.path not in PUBLIC_MODULES:
            return f"<code>{title}</code>"  # not rendered: a private helper's business
        if path is None:
            logger.warning(
                "%s: the docstring refers to %r, which names nothing (from %s)",
                obj.path,
                target,
                match[0],
            )
            return f"`{title}`"
        # `optional`: if the object is not rendered on any page (a private helper), autorefs
        # shows the title as plain code instead of failing.
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    text = _ROLE.sub(role, text)
    text = _LINK.sub(lambda m: f"[{m['text']}]({m['url']})", text)
    text = _LONE_LITERAL_MARKER.sub("", text)
    return _LITERAL_MARKER.sub(":", text)


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above ``obj``'s definition, as text."""
    if obj.lineno is None or obj.filepath is None:
        return None
    try:
        lines = obj.lines_collection[obj.filepath]  # type: ignore[index]
    except KeyError:
        return None
    comment: list[str] = []
    index = obj.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return " ".join(comment) or None


class SphinxMarkup(griffe.Extension):
    """Rewrites reST roles, links and ``#:`` comments in the anybus package's docstrings."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Convert every docstring of the package once it is fully loaded."""
        if pkg.name != _PACKAGE:
            return
        public = _public_paths(pkg)
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            stack.extend(member for member in obj.members.values() if not member.is_alias)
            if obj.docstring is None and obj.is_attribute:
                text = _comment_docstring(obj)
                if text is not None:
                    obj.docstring = griffe.Docstring(text, parent=obj, lineno=obj.lineno)
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value, public)
