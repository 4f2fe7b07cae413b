"""One trace drawn as a static SVG waterfall: no JavaScript, no CDN, nothing downloaded.

The docs show one real trace that crosses two processes (a caller and a worker). Its spans are
exported by each process as :class:`SpanRecord` dicts (JSON), gathered into one list, and
drawn here at docs build time by :func:`render`: one row per span in tree order, indented by
depth, a bar per span on a shared time axis (milliseconds since the trace's earliest start),
coloured by the process that recorded it. A span whose parent was recorded by another process
still nests under that parent: that is what the picture is for.

The docs' picture, ``docs/img/trace.svg``, is of the trace examples/otel_trace.py makes: an
asyncio caller asks a trio worker (a second process) for one job over Redis. Used three ways:

* as an MkDocs hook (``hooks:`` in mkdocs.yml): every build records that trace afresh with
  :func:`record` and draws it into the site (``img/trace.svg``), over the committed copy and
  without writing into docs/. When no Redis answers (``ANYBUS_REDIS_URL``, by default
  ``redis://127.0.0.1:6379``), it draws the committed recording, docs/_ext/trace-spans.json,
  and says so at INFO (not a warning: the build is strict);
* as a script, ``python docs/_ext/trace_picture.py --record``, which records the trace (Redis
  needed) into docs/_ext/trace-spans.json and draws it into docs/img/trace.svg, where GitHub
  shows it to readers of the unbuilt pages; ``python docs/_ext/trace_picture.py`` alone redraws
  docs/img/trace.svg from the committed recording. tests/test_trace_picture.py fails if the
  committed picture differs from what the committed recording draws;
* ``python docs/_ext/trace_picture.py SPANS.json OUT.svg`` draws any file of spans as it is.

In the docs' picture a message's producer and consumer spans are labelled with the message's
type (``send BusJobRequestMessage``) rather than the random channel their names carry
(:func:`labelled`); :func:`render` itself draws names as they are.

Text is measured with docs/_ext/sequence_diagrams.py's ``width`` and set in its fonts, so that
both kinds of drawing agree on how wide a label is.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

EXT = Path(__file__).resolve().parent
DOCS = EXT.parent
ROOT = DOCS.parent
#: The program whose trace the docs show, and how long it may take.
EXAMPLE = ROOT / "examples" / "otel_trace.py"
RECORD_TIMEOUT = 60.0
#: The committed recording, drawn when no Redis answers; the picture's path under docs/.
RECORDING = EXT / "trace-spans.json"
PICTURE = "img/trace.svg"
TITLE = "One job, one trace: an asyncio caller and a trio worker over Redis"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

# MkDocs shows its plugins' loggers (mkdocs.plugins.*); a warning would fail a strict build.
log = logging.getLogger("mkdocs.plugins.anybus.trace_picture")


def _sibling(name: str) -> ModuleType:
    """The module ``docs/_ext/<name>.py``, however this module was loaded.

    Run as a script, docs/_ext is on ``sys.path``; loaded by MkDocs as a hook, it is too, but
    only while the hook runs; loaded by path from a test, it is not. So the sibling is loaded
    by path, once.
    """
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == str(EXT / f"{name}.py"):
        return module
    spec = importlib.util.spec_from_file_location(name, EXT / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {EXT / f'{name}.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import sequence_diagrams as _diagrams
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from opentelemetry.sdk.trace import ReadableSpan
else:
    _diagrams = _sibling("sequence_diagrams")

SANS = _diagrams.SANS
MONO = _diagrams.MONO

KINDS = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUSES = ("UNSET", "OK", "ERROR")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")

AttributeValue = str | int | float | bool

#: The canvas's width, in pixels; its height follows from the number of rows.
WIDTH = 860
MARGIN = 16
ROW = 24
BAR = 14
INDENT = 14
NAME_SIZE = 12.5
TAG_SIZE = 9.5
DURATION_SIZE = 11
AXIS_SIZE = 11
TITLE_SIZE = 15
#: The widest the column of span names may be, as a share of the canvas.
LABEL_SHARE = 0.42

#: Bar colours, one a process, in the order processes first appear in the tree. Mid-tone, so
#: that white text reads inside them and they stand out on a light or a dark page alike.
PALETTE = ("#2f6db5", "#c2601a", "#2e8a57", "#8159b0", "#1d8a96", "#a34d74")
COLORS = {
    "background": "#ffffff",
    "text": "#1a1a1a",
    "muted": "#5c6670",
    "stripe": "#f4f6f9",
    "grid": "#e1e5ea",
    "axis": "#8a949e",
    "guide": "#b4bec8",
    "tag_fill": "#eef1f5",
    "tag_stroke": "#c3cad3",
    "tag_text": "#3d4750",
    "error": "#d62728",
    "on_bar": "#ffffff",
}


@dataclass(frozen=True)
class SpanRecord:
    """One finished span, as exported by the process that recorded it.

    Attributes:
        name: The span's name.
        trace_id: The trace's id, 32 lowercase hex digits.
        span_id: The span's id, 16 lowercase hex digits.
        parent_id: The parent span's id, or ``None`` for a root.
        kind: ``INTERNAL``, ``SERVER``, ``CLIENT``, ``PRODUCER`` or ``CONSUMER``.
        start_ns: When it started, in nanoseconds since the epoch.
        end_ns: When it ended, in nanoseconds since the epoch.
        process: A label for the process that recorded it, such as ``"caller · asyncio"``.
        attributes: The span's attributes.
        status: ``UNSET``, ``OK`` or ``ERROR``.
    """

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    start_ns: int
    end_ns: int
    process: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict, hash=False)
    status: str = "UNSET"

    def __post_init__(self) -> None:
        """Refuse a record no exporter writes, naming the field."""
        if not _TRACE_ID.fullmatch(self.trace_id):
            raise ValueError(f"span {self.name!r}: trace_id {self.trace_id!r} is not 32 hex")
        if not _SPAN_ID.fullmatch(self.span_id):
            raise ValueError(f"span {self.name!r}: span_id {self.span_id!r} is not 16 hex")
        if self.parent_id is not None and not _SPAN_ID.fullmatch(self.parent_id):
            raise ValueError(f"span {self.name!r}: parent_id {self.parent_id!r} is not 16 hex")
        if self.kind not in KINDS:
            raise ValueError(f"span {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.status not in STATUSES:
            raise ValueError(
                f"span {self.name!r}: status {self.status!r} is not one of {STATUSES}"
            )
        if self.end_ns < self.start_ns:
            raise ValueError(f"span {self.name!r} ends before it starts")

    def to_json(self) -> dict[str, Any]:
        """This record as a JSON-able dict, read back by :meth:`from_json`."""
        return {
            "name": self.name,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "kind": self.kind,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "process": self.process,
            "attributes": dict(self.attributes),
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        """A record from a dict written by :meth:`to_json` (in this process or another).

        Raises:
            ValueError: A field is missing or of the wrong type.
        """
        try:
            name, start, end = data["name"], data["start_ns"], data["end_ns"]
            fields = (data["trace_id"], data["span_id"], data["kind"], data["process"])
            parent = data["parent_id"]
        except KeyError as error:
            raise ValueError(f"a span record without {error.args[0]!r}: {data!r}") from None
        attributes = data.get("attributes", {})
        if not all(isinstance(value, str) for value in (name, *fields)):
            raise ValueError(f"a span record's name, ids, kind and process are strings: {data!r}")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in (start, end)):
            raise ValueError(f"span {name!r}: start_ns and end_ns are integers")
        if parent is not None and not isinstance(parent, str):
            raise ValueError(f"span {name!r}: parent_id is a string or null")
        if not isinstance(attributes, dict) or not all(
            isinstance(value, str | int | float | bool) for value in attributes.values()
        ):
            raise ValueError(f"span {name!r}: attributes map names to str, int, float or bool")
        return cls(
            name=name,
            trace_id=data["trace_id"],
            span_id=data["span_id"],
            parent_id=parent,
            kind=data["kind"],
            start_ns=start,
            end_ns=end,
            process=data["process"],
            attributes={str(key): value for key, value in attributes.items()},
            status=str(data.get("status", "UNSET")),
        )

    @classmethod
    def from_readable_span(cls, span: ReadableSpan, process: str) -> SpanRecord:
        """A record of a finished opentelemetry-sdk span, recorded by ``process``.

        An attribute holding a sequence is kept as its items joined by ``", "``.

        Raises:
            ValueError: The span has no context, or has not ended.
        """
        context = span.context
        if context is None:
            raise ValueError(f"span {span.name!r} has no context")
        if span.start_time is None or span.end_time is None:
            raise ValueError(f"span {span.name!r} has not ended")
        attributes: dict[str, AttributeValue] = {}
        for key, value in (span.attributes or {}).items():
            if isinstance(value, str | int | float | bool):
                attributes[key] = value
            elif isinstance(value, Sequence):
                attributes[key] = ", ".join(map(str, value))
            else:
                attributes[key] = str(value)
        return cls(
            name=span.name,
            trace_id=format(context.trace_id, "032x"),
            span_id=format(context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else None,
            kind=span.kind.name,
            start_ns=span.start_time,
            end_ns=span.end_time,
            process=process,
            attributes=attributes,
            status=span.status.status_code.name,
        )


# --- layout ----------------------------------------------------------------------------------


def tree_order(spans: Sequence[SpanRecord]) -> list[tuple[SpanRecord, int]]:
    """Each span with its depth, depth-first from the roots, children by start time.

    A span whose parent is not among ``spans`` is a root.

    Raises:
        ValueError: Two spans share an id, or some spans are their own ancestors.
    """
    by_id: dict[str, SpanRecord] = {}
    for span in spans:
        if span.span_id in by_id:
            raise ValueError(f"two spans have the id {span.span_id}: {span.name!r}")
        by_id[span.span_id] = span

    def order(span: SpanRecord) -> tuple[int, int, str]:
        return (span.start_ns, -span.end_ns, span.span_id)

    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in by_id else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[SpanRecord, int]] = []
    stack = [(root, 0) for root in sorted(children.get(None, []), key=order, reverse=True)]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        below = sorted(children.get(span.span_id, []), key=order, reverse=True)
        stack.extend((child, depth + 1) for child in below)
    if len(ordered) != len(spans):
        seen = {span.span_id for span, _ in ordered}
        lost = sorted(span.name for span in spans if span.span_id not in seen)
        raise ValueError(f"spans that are their own ancestors: {', '.join(lost)}")
    return ordered


def nice_step(span_ms: float, ticks: int = 7) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` intervals."""
    raw = span_ms / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    raise AssertionError("unreachable")  # pragma: no cover


def duration_label(ns: int) -> str:
    """A duration to three significant figures: ``"0.42 ms"``, ``"12.3 ms"``, ``"1.5 s"``.

    Below 0.01 ms it is given in microseconds, below one in nanoseconds.
    """
    ms = ns / 1e6
    if ms >= 999.5:  # what would round to "1000 ms"
        return f"{_figures(ms / 1000)} s"
    if ms >= 0.01:
        return f"{_figures(ms)} ms"
    if ns >= 1000:
        return f"{_figures(ns / 1000)} µs"
    return f"{ns} ns"


def _figures(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _n(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _sans(text: str, size: float) -> float:
    # Backticks would switch sequence_diagrams' measure to monospace; an ellipsis is as wide
    # as three dots in most fonts, wider than the measure's guess for a character it lacks.
    return _diagrams.width(text.replace("`", "'").replace("…", "..."), size)


def _mono(text: str, size: float) -> float:
    return _diagrams.width(f"`{text.replace('`', chr(39))}`", size)


def _fit(text: str, room: float, size: float) -> str:
    """``text``, cut short with an ellipsis if it is wider than ``room``."""
    if _sans(text, size) <= room + 0.5:  # the half pixel: rounding, in the column's sum
        return text
    while text and _sans(text + "…", size) > room:
        text = text[:-1]
    return text.rstrip() + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _tag(kind: str) -> str:
    return "" if kind == "INTERNAL" else kind.lower()


def render(spans: Sequence[SpanRecord], *, title: str | None = None) -> str:
    """The SVG waterfall of one trace's spans.

    Args:
        spans: Every span of one trace, in any order, from any number of processes.
        title: A heading drawn above the picture, also its accessible name.

    Raises:
        ValueError: No spans, spans of more than one trace, or spans whose parents do not
            form a tree.
    """
    if not spans:
        raise ValueError("no spans to draw: a trace picture needs at least one span")
    trace_ids = sorted({span.trace_id for span in spans})
    if len(trace_ids) > 1:
        raise ValueError(
            f"spans of {len(trace_ids)} traces ({', '.join(trace_ids)}): draw one trace at a time"
        )
    rows = tree_order(spans)
    processes: list[str] = []
    for span, _ in rows:
        if span.process not in processes:
            processes.append(span.process)
    color = {process: PALETTE[i % len(PALETTE)] for i, process in enumerate(processes)}
    errors = any(span.status == "ERROR" for span, _ in rows)

    parts: list[str] = []
    y = float(MARGIN)

    # Title.
    if title:
        y += TITLE_SIZE
        parts.append(
            f'<text x="{MARGIN}" y="{_n(y)}" font-size="{TITLE_SIZE}" font-weight="bold" '
            f'fill="{COLORS["text"]}">{_esc(title)}</text>'
        )
        y += 12

    # Legend: a swatch and a name per process, wrapped at the canvas's width.
    swatch, legend_size = 12.0, 12.0
    items = [(process, color[process], False) for process in processes]
    if errors:
        items.append(("status ERROR", COLORS["background"], True))
    x = float(MARGIN)
    line_top = y
    for label, fill, outlined in items:
        item_width = swatch + 6 + _sans(label, legend_size)
        if x > MARGIN and x + item_width > WIDTH - MARGIN:
            x = float(MARGIN)
            line_top += 20
        stroke = f' stroke="{COLORS["error"]}" stroke-width="2"' if outlined else ""
        parts.append(
            f'<rect class="legend" x="{_n(x)}" y="{_n(line_top + 1)}" width="{_n(swatch)}" '
            f'height="{_n(swatch)}" rx="2" fill="{fill}"{stroke}/>'
        )
        parts.append(
            f'<text class="legend" x="{_n(x + swatch + 6)}" y="{_n(line_top + 11.5)}" '
            f'font-size="{legend_size:g}" fill="{COLORS["text"]}">{_esc(label)}</text>'
        )
        x += item_width + 22
    y = line_top + 20 + 12

    # Columns: span names on the left, the time axis on the right.
    def label_need(span: SpanRecord, depth: int) -> float:
        tag = _tag(span.kind)
        tag_width = _sans(tag, TAG_SIZE) + 16 if tag else 0
        return depth * INDENT + _sans(span.name, NAME_SIZE) + tag_width

    label_width = min(max(label_need(span, depth) for span, depth in rows), WIDTH * LABEL_SHARE)
    label_width = max(label_width, _sans("time since the trace began", AXIS_SIZE) - 40)
    chart_left = MARGIN + label_width + 20
    chart_right = WIDTH - MARGIN - 4
    chart_width = chart_right - chart_left

    t0 = min(span.start_ns for span in spans)
    total_ms = max(max(span.end_ns for span in spans) - t0, 1) / 1e6
    step = nice_step(total_ms)
    intervals = max(1, math.ceil(total_ms / step - 1e-9))
    domain_ms = intervals * step
    scale = chart_width / (domain_ms * 1e6)  # pixels a nanosecond
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))

    # Axis: tick labels over the rows, a grid line down through them.
    axis_y = y + AXIS_SIZE
    rows_top = axis_y + 8
    rows_bottom = rows_top + ROW * len(rows)
    parts.append(
        f'<text x="{_n(chart_left - 12)}" y="{_n(axis_y)}" text-anchor="end" '
        f'font-size="{AXIS_SIZE}" fill="{COLORS["muted"]}">time since the trace began, ms</text>'
    )
    grid: list[str] = []
    for index in range(intervals + 1):
        tick_x = chart_left + chart_width * index / intervals
        label = f"{index * step:.{decimals}f}"
        anchor = "start" if index == 0 else "end" if index == intervals else "middle"
        parts.append(
            f'<text class="tick" x="{_n(tick_x)}" y="{_n(axis_y)}" text-anchor="{anchor}" '
            f'font-size="{AXIS_SIZE}" fill="{COLORS["muted"]}">{label}</text>'
        )
        grid.append(
            f'<line x1="{_n(tick_x)}" y1="{_n(rows_top - 3)}" x2="{_n(tick_x)}" '
            f'y2="{_n(rows_bottom)}" stroke="{COLORS["grid"]}" stroke-width="1"/>'
        )
    grid.append(
        f'<line x1="{_n(chart_left)}" y1="{_n(rows_top - 3)}" x2="{_n(chart_right)}" '
        f'y2="{_n(rows_top - 3)}" stroke="{COLORS["axis"]}" stroke-width="1"/>'
    )

    # Rows.
    stripes: list[str] = []
    guides: list[str] = []
    row_of = {span.span_id: index for index, (span, _) in enumerate(rows)}
    depth_of = {span.span_id: depth for span, depth in rows}
    body: list[str] = []
    for index, (span, depth) in enumerate(rows):
        top = rows_top + ROW * index
        middle = top + ROW / 2
        if index % 2 == 1:
            stripes.append(
                f'<rect x="{MARGIN - 6}" y="{_n(top)}" width="{WIDTH - 2 * MARGIN + 12}" '
                f'height="{ROW}" fill="{COLORS["stripe"]}"/>'
            )
        if span.parent_id in row_of:  # an elbow from the parent's row, in the names' column
            parent_middle = rows_top + ROW * row_of[span.parent_id] + ROW / 2
            guide_x = MARGIN + INDENT * depth_of[span.parent_id] + 4
            guides.append(
                f'<path d="M{_n(guide_x)} {_n(parent_middle + 7)}V{_n(middle)}'
                f'H{_n(MARGIN + INDENT * depth - 3)}" fill="none" '
                f'stroke="{COLORS["guide"]}" stroke-width="1"/>'
            )

        row: list[str] = []
        tip = (
            f"{span.name} · {span.process} · {span.kind.lower()} · "
            f"{duration_label(span.end_ns - span.start_ns)} · status {span.status}"
        )
        for key in sorted(span.attributes):
            tip += f"\n{key} = {span.attributes[key]}"
        row.append(f"<title>{_esc(tip)}</title>")

        # The name, cut short if the column is too narrow, and the kind's tag after it.
        name_x = MARGIN + INDENT * depth
        tag = _tag(span.kind)
        tag_width = _sans(tag, TAG_SIZE) + 8 if tag else 0
        room = label_width - INDENT * depth - (tag_width + 8 if tag else 0)
        name = _fit(span.name, room, NAME_SIZE)
        row.append(
            f'<text class="span-name" x="{_n(name_x)}" y="{_n(middle + 4.3)}" '
            f'font-size="{NAME_SIZE}" fill="{COLORS["text"]}">{_esc(name)}</text>'
        )
        if tag:
            tag_x = name_x + _sans(name, NAME_SIZE) + 8
            row.append(
                f'<rect class="kind" x="{_n(tag_x)}" y="{_n(middle - 6.5)}" '
                f'width="{_n(tag_width)}" height="13" rx="6.5" fill="{COLORS["tag_fill"]}" '
                f'stroke="{COLORS["tag_stroke"]}" stroke-width="0.8"/>'
            )
            row.append(
                f'<text class="kind" x="{_n(tag_x + tag_width / 2)}" y="{_n(middle + 3.3)}" '
                f'text-anchor="middle" font-size="{TAG_SIZE}" '
                f'fill="{COLORS["tag_text"]}">{tag}</text>'
            )

        # The bar, and its duration inside it when it fits, else beside it.
        bar_x = chart_left + (span.start_ns - t0) * scale
        bar_width = max((span.end_ns - span.start_ns) * scale, 2.0)
        error = span.status == "ERROR"
        outline = f' stroke="{COLORS["error"]}" stroke-width="2"' if error else ""
        row.append(
            f'<rect class="bar" data-span-id="{span.span_id}" x="{_n(bar_x)}" '
            f'y="{_n(middle - BAR / 2)}" width="{_n(bar_width)}" height="{BAR}" rx="2" '
            f'fill="{color[span.process]}"{outline}/>'
        )
        duration = duration_label(span.end_ns - span.start_ns)
        need = _mono(duration, DURATION_SIZE)
        text_y = middle + 3.8
        if need + 10 <= bar_width:
            text_x, anchor, fill = bar_x + bar_width - 5, "end", COLORS["on_bar"]
        elif bar_x + bar_width + 5 + need <= WIDTH - MARGIN:
            text_x, anchor, fill = bar_x + bar_width + 5, "start", COLORS["text"]
        else:
            text_x, anchor, fill = bar_x - 5, "end", COLORS["text"]
        row.append(
            f'<text class="duration" x="{_n(text_x)}" y="{_n(text_y)}" text-anchor="{anchor}" '
            f'font-family="{MONO}" font-size="{DURATION_SIZE}" fill="{fill}">'
            f"{_esc(duration)}</text>"
        )
        body.append("<g>\n    " + "\n    ".join(row) + "\n  </g>")

    height = round(rows_bottom + MARGIN)
    name = title or f"Trace {trace_ids[0]}"
    described = (
        f"A waterfall of trace {trace_ids[0]}: {len(rows)} spans recorded by "
        f"{len(processes)} {'process' if len(processes) == 1 else 'processes'} "
        f"({', '.join(processes)}), over {duration_label(round(total_ms * 1e6))}. Each span "
        "is followed by the spans it started: "
        + "; ".join(
            f"{span.name} ({span.kind.lower()}, {span.process}, "
            f"{duration_label(span.end_ns - span.start_ns)}"
            f"{', error' if span.status == 'ERROR' else ''})"
            for span, _ in rows
        )
        + "."
    )
    content = "\n  ".join([*stripes, *grid, *guides, *parts, *body])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="{SANS}" role="img" '
        f'aria-labelledby="trace-title trace-desc">\n'
        f'  <title id="trace-title">{_esc(name)}</title>\n'
        f'  <desc id="trace-desc">{_esc(described)}</desc>\n'
        f'  <rect x="0" y="0" width="{WIDTH}" height="{height}" '
        f'fill="{COLORS["background"]}"/>\n'
        f"  {content}\n"
        "</svg>\n"
    )


# --- the docs' trace --------------------------------------------------------------------------


def redis_url() -> str:
    """The Redis server the docs' trace is recorded over: ``ANYBUS_REDIS_URL``, or the default."""
    return os.environ.get("ANYBUS_REDIS_URL") or DEFAULT_REDIS_URL


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether anything accepts a TCP connection at the Redis URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout
        ):
            return True
    except (OSError, ValueError):  # ValueError: a port that is not a number
        return False


def record(redis_url: str) -> list[SpanRecord]:
    """Run examples/otel_trace.py over ``redis_url`` and return the one trace it records.

    The example runs in a new process (with this interpreter), which starts the worker as
    another; both are killed if it takes longer than :data:`RECORD_TIMEOUT` seconds.

    Raises:
        RuntimeError: The example failed or timed out; the message has its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="anybus-trace-") as directory:
        out = Path(directory) / "spans.json"
        command = [sys.executable, str(EXAMPLE), "--redis-url", redis_url, "--spans-out", str(out)]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the worker it starts is in its group, killed with it
        )
        try:
            _, stderr = process.communicate(timeout=RECORD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
            raise RuntimeError(
                f"{EXAMPLE.name} did not record a trace over {redis_url} within "
                f"{RECORD_TIMEOUT:g} s; its stderr:\n{stderr.strip()}"
            ) from None
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"{EXAMPLE.name} failed to record a trace over {redis_url} (exit status "
                f"{process.returncode}); its stderr:\n{stderr.strip()}"
            )
        return [SpanRecord.from_json(item) for item in json.loads(out.read_text())]


def load(path: Path | None = None) -> list[SpanRecord]:
    """The spans in a JSON file (by default the committed recording) written by :func:`save` or
    examples/otel_trace.py."""
    path = RECORDING if path is None else path
    return [SpanRecord.from_json(item) for item in json.loads(path.read_text())]


def save(spans: Sequence[SpanRecord], path: Path | None = None) -> None:
    """Write spans as a JSON list of :class:`SpanRecord` dicts (by default into the committed
    recording), read back by :func:`load`."""
    path = RECORDING if path is None else path
    path.write_text(json.dumps([span.to_json() for span in spans], indent=1) + "\n")


def labelled(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    """The spans, each message's producer or consumer span named by the message's type.

    ``send anybus-trace-1a2b3c4d`` becomes ``send BusJobRequestMessage``: the channel is the
    same on every such span (and random), the type of message says what happened. Spans of
    other kinds, or without an ``anybus.message.type`` attribute, keep their names.
    """
    named: list[SpanRecord] = []
    for span in spans:
        message_type = span.attributes.get("anybus.message.type")
        if span.kind in ("PRODUCER", "CONSUMER") and isinstance(message_type, str):
            operation = span.name.split(" ", 1)[0]
            span = replace(span, name=f"{operation} {message_type}")
        named.append(span)
    return named


def draw(spans: Sequence[SpanRecord]) -> str:
    """The docs' picture of a recording of the example's trace."""
    return render(labelled(spans), title=TITLE)


def build_spans() -> list[SpanRecord]:
    """The trace a docs build draws: recorded now, or the committed one when no Redis answers.

    Raises:
        RuntimeError: A Redis server answers but the example failed to record over it.
    """
    url = redis_url()
    if answers(url):
        return record(url)
    log.info(
        "docs/img/trace.svg: drawn from the committed recording (%s) because no Redis answered "
        "at %s",
        _shown(RECORDING),
        url,
    )
    return load()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs hook: put a fresh picture of the trace in the site, over any committed copy."""
    from mkdocs.structure.files import File

    svg = draw(build_spans())
    committed = files.get_file_from_path(PICTURE)
    if committed is not None:
        files.remove(committed)
    files.append(File.generated(config, PICTURE, content=svg))
    return files


def _shown(path: Path) -> str:
    """A path as a message shows it: relative to the repository, if it is in it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _write(path: Path, text: str) -> None:
    state = "up to date" if path.exists() and path.read_text() == text else "written"
    if state == "written":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.stdout.write(f"{_shown(path)}: {state}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Record and draw the docs' trace, redraw it, or draw a file of spans.

    ``--record``: record the trace (Redis needed) into docs/_ext/trace-spans.json and draw it
    into docs/img/trace.svg. No arguments: redraw docs/img/trace.svg from the committed
    recording. ``SPANS.json OUT.svg [--title TITLE]``: draw the spans in a file as they are.
    """
    parser = argparse.ArgumentParser(description="Draw one trace's spans as an SVG waterfall.")
    parser.add_argument("spans", type=Path, nargs="?", help="a JSON list of SpanRecord dicts")
    parser.add_argument("out", type=Path, nargs="?", help="the SVG file to write")
    parser.add_argument("--title", help="a heading for the picture")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the docs' trace into docs/_ext/trace-spans.json and docs/img/trace.svg",
    )
    parser.add_argument(
        "--redis-url",
        help=f"with --record: the Redis server (default: $ANYBUS_REDIS_URL or "
        f"{DEFAULT_REDIS_URL})",
    )
    args = parser.parse_args(argv)
    if args.spans is not None:
        if args.out is None or args.record:
            parser.error("draw a file of spans with SPANS.json OUT.svg, without --record")
        records = load(args.spans)
        args.out.write_text(render(records, title=args.title))
        sys.stdout.write(f"{args.out}: {len(records)} spans drawn\n")
        return 0
    if args.title is not None:
        parser.error("--title is for drawing a file of spans (SPANS.json OUT.svg)")
    if args.record:
        url = args.redis_url or redis_url()
        if not answers(url):
            parser.error(f"no Redis answers at {url}: recording the trace needs one")
        spans = record(url)
        save(spans)
        sys.stdout.write(f"{_shown(RECORDING)}: {len(spans)} spans recorded over {url}\n")
    elif args.redis_url is not None:
        parser.error("--redis-url is for --record")
    else:
        spans = load()
    _write(DOCS / PICTURE, draw(spans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
