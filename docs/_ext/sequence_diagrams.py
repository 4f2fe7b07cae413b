"""Sequence diagrams drawn as static SVG: no JavaScript, no CDN, nothing downloaded.

Each ``docs/_ext/<name>.mmd`` file describes one diagram in a small part of Mermaid's
sequence-diagram syntax (``participant X as label``, ``A->>B: text`` for a message,
``A-->>B: text`` for an answer, drawn dashed, ``Note over A[,B]: text``, ``Note left of A``,
``Note right of A``, ``autonumber``, ``title``, ``%%`` comments, ``<br/>`` for a line break);
text between backticks is set in monospace. It is drawn as ``docs/img/<name>.svg``.

Used two ways:

* as an MkDocs hook (``hooks:`` in mkdocs.yml): every build draws each diagram afresh into the
  site, so the site never shows a stale picture;
* as a script, ``python docs/_ext/sequence_diagrams.py``, which writes the drawings into
  docs/img/, where GitHub shows them to readers of the unbuilt pages. tests/test_docs.py
  fails if a committed drawing differs from what its description draws.

Text is measured with Helvetica's character widths, widened to allow for the broader
fallback fonts (DejaVu Sans), so that labels fit whichever sans-serif font the viewer has.
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

EXT = Path(__file__).resolve().parent
DOCS = EXT.parent

FONT_SIZE = 13
LINE = 17
SANS = "Helvetica, Arial, 'DejaVu Sans', sans-serif"
MONO = "Menlo, Consolas, 'DejaVu Sans Mono', monospace"

# Helvetica's advance widths (1/1000 em) for printable ASCII, from its AFM metrics.
_ASCII = "".join(map(chr, range(32, 127)))
_WIDTHS = """
    278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278
    556 556 556 556 556 556 556 556 556 556 278 278 584 584 584 556
    1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778
    667 778 722 667 611 722 667 944 667 667 611 278 278 278 469 556
    333 556 556 500 556 556 278 556 556 222 222 500 222 833 556 556
    556 556 333 500 278 556 500 722 500 500 500 334 260 334 584
"""
_HELVETICA = dict(zip(_ASCII, map(int, _WIDTHS.split()), strict=True))
#: How much wider than Helvetica the widest likely fallback (DejaVu Sans) sets text.
_SANS_SLACK = 1.12
#: A monospace character's advance, in em.
_MONO_EM = 0.61
#: How much wider bold text is.
_BOLD = 1.1
#: A white outline drawn under a label, so that a lifeline crossing it does not cut it.
_HALO = ' stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'

COLORS = {
    "text": "#1a1a1a",
    "box_fill": "#eaf2fb",
    "box_stroke": "#1f77b4",
    "lifeline": "#b4bec8",
    "message": "#333333",
    "answer": "#1f77b4",
    "note_fill": "#fff6c2",
    "note_stroke": "#d4b94a",
    "number": "#333333",
}


@dataclass
class Participant:
    id: str
    label: str


@dataclass
class Message:
    source: str
    target: str
    text: list[str]
    answer: bool


@dataclass
class Note:
    placement: str  # "over", "left of", "right of"
    participants: list[str]
    text: list[str]


@dataclass
class Diagram:
    title: str = ""
    autonumber: bool = False
    participants: list[Participant] = field(default_factory=list)
    steps: list[Message | Note] = field(default_factory=list)


_PARTICIPANT = re.compile(r"participant\s+(?P<id>\w+)(?:\s+as\s+(?P<label>.+))?")
_MESSAGE = re.compile(
    r"(?P<source>\w+)\s*(?P<arrow>-->>|->>)\s*(?P<target>\w+)\s*:\s*(?P<text>.*)"
)
_NOTE = re.compile(
    r"note\s+(?P<placement>over|left of|right of)\s+(?P<who>\w+(?:\s*,\s*\w+)?)"
    r"\s*:\s*(?P<text>.*)",
    re.IGNORECASE,
)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def parse(source: str) -> Diagram:
    """Read a diagram description; raise ``ValueError`` naming the line it cannot read."""
    diagram = Diagram()
    known: dict[str, Participant] = {}

    def participant(name: str) -> str:
        if name not in known:  # as in Mermaid, a message may introduce a participant
            known[name] = Participant(name, name)
            diagram.participants.append(known[name])
        return name

    for number, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%%") or line == "sequenceDiagram":
            continue
        if line == "autonumber":
            diagram.autonumber = True
        elif line.startswith("title"):
            diagram.title = line[len("title") :].lstrip(" :")
        elif match := _PARTICIPANT.fullmatch(line):
            name = match["id"]
            if name in known:
                raise ValueError(f"line {number}: participant {name!r} is declared twice")
            known[name] = Participant(name, (match["label"] or name).strip())
            diagram.participants.append(known[name])
        elif match := _MESSAGE.fullmatch(line):
            diagram.steps.append(
                Message(
                    participant(match["source"]),
                    participant(match["target"]),
                    _BREAK.split(match["text"].strip()),
                    answer=match["arrow"] == "-->>",
                )
            )
        elif match := _NOTE.fullmatch(line):
            who = [participant(name.strip()) for name in match["who"].split(",")]
            diagram.steps.append(
                Note(match["placement"].lower(), who, _BREAK.split(match["text"].strip()))
            )
        else:
            raise ValueError(
                f"line {number}: cannot read {line!r}: write a participant, a message "
                "(A->>B: text, A-->>B: text), a note (Note over A: text), title or autonumber"
            )
    return diagram


def segments(text: str) -> list[tuple[str, bool]]:
    """``text`` split into (part, is_code) pieces at its backticks."""
    return [(part, index % 2 == 1) for index, part in enumerate(text.split("`")) if part]


def width(text: str, size: float = FONT_SIZE) -> float:
    """The width ``text`` is likely to take, in pixels, at ``size``."""
    total = 0.0
    for part, code in segments(text):
        if code:
            total += len(part) * _MONO_EM * size
        else:
            total += sum(_HELVETICA.get(char, 667) for char in part) / 1000 * size * _SANS_SLACK
    return total


def _text(x: float, y: float, text: str, *, anchor: str = "middle", extra: str = "") -> str:
    spans = []
    for part, code in segments(text):
        escaped = html.escape(part, quote=False)
        spans.append(f'<tspan font-family="{MONO}">{escaped}</tspan>' if code else escaped)
    return f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}"{extra}>{"".join(spans)}</text>'


def render(source: str) -> str:
    """The SVG drawing of a diagram description."""
    diagram = parse(source)
    ids = [p.id for p in diagram.participants]
    column = {name: index for index, name in enumerate(ids)}
    box_width = [max(width(p.label) * _BOLD + 28, 110) for p in diagram.participants]
    box_height = 36

    # Horizontal layout: gaps between lifelines wide enough for the boxes and for every label
    # of a message between them (its number at the start, a margin at each end).
    gaps = [(box_width[i] + box_width[i + 1]) / 2 + 30 for i in range(len(ids) - 1)]
    for step in diagram.steps:
        if not isinstance(step, Message):
            continue
        low, high = sorted((column[step.source], column[step.target]))
        if low == high:
            raise ValueError(f"a message from {step.source!r} to itself is not drawn: omit it")
        need = max(width(line) for line in step.text) + (64 if diagram.autonumber else 40)
        have = sum(gaps[low:high])
        if have < need:
            for index in range(low, high):
                gaps[index] += (need - have) / (high - low)
    xs = [0.0]
    for gap in gaps:
        xs.append(xs[-1] + gap)
    x = {name: xs[column[name]] for name in ids}

    # The extent of everything drawn, to place the picture with an even margin.
    extents = [(xs[i] - box_width[i] / 2, xs[i] + box_width[i] / 2) for i in range(len(ids))]
    note_boxes: list[tuple[float, float]] = []
    for step in diagram.steps:
        if isinstance(step, Note):
            text_width = max(width(line) for line in step.text) + 24
            first, last = x[step.participants[0]], x[step.participants[-1]]
            if step.placement == "left of":
                left, right = first - 12 - text_width, first - 12
            elif step.placement == "right of":
                left, right = last + 12, last + 12 + text_width
            else:
                middle = (first + last) / 2
                half = max(text_width, abs(last - first) + 40) / 2
                left, right = middle - half, middle + half
            note_boxes.append((left, right))
            extents.append((left, right))
    margin = 16
    shift = margin - min(left for left, _ in extents)
    canvas_width = max(right for _, right in extents) + shift + margin

    parts: list[str] = []
    y = margin + box_height  # below the top boxes
    y += 20
    numbers = 0
    note_index = 0
    for step in diagram.steps:
        if isinstance(step, Message):
            lines = step.text
            label_top = y
            arrow_y = label_top + LINE * len(lines) + 6
            x1, x2 = x[step.source] + shift, x[step.target] + shift
            direction = 1 if x2 > x1 else -1
            color = COLORS["answer"] if step.answer else COLORS["message"]
            dash = ' stroke-dasharray="6,4"' if step.answer else ""
            start = x1 + direction * (12 if diagram.autonumber else 0)
            tip = x2 - direction * 1
            parts.append(
                f'<line x1="{start:g}" y1="{arrow_y:g}" x2="{tip - direction * 9:g}" '
                f'y2="{arrow_y:g}" stroke="{color}" stroke-width="1.5"{dash}/>'
            )
            parts.append(
                f'<polygon points="{tip:g},{arrow_y:g} {tip - direction * 11:g},{arrow_y - 5:g} '
                f'{tip - direction * 11:g},{arrow_y + 5:g}" fill="{color}"/>'
            )
            middle = (x1 + x2) / 2 + direction * (6 if diagram.autonumber else 0)
            for index, line in enumerate(lines):
                parts.append(
                    _text(
                        middle,
                        label_top + LINE * (index + 1) - 4,
                        line,
                        extra=f' fill="{color}"{_HALO}',
                    )
                )
            if diagram.autonumber:
                numbers += 1
                parts.append(
                    f'<circle cx="{x1:g}" cy="{arrow_y:g}" r="9" fill="{COLORS["number"]}"/>'
                )
                parts.append(
                    _text(
                        x1,
                        arrow_y + 4,
                        str(numbers),
                        extra=' fill="#ffffff" font-size="11" font-weight="bold"',
                    )
                )
            y = arrow_y + 18
        else:
            left, right = note_boxes[note_index]
            note_index += 1
            height = LINE * len(step.text) + 12
            parts.append(
                f'<rect x="{left + shift:g}" y="{y:g}" width="{right - left:g}" '
                f'height="{height:g}" rx="3" fill="{COLORS["note_fill"]}" '
                f'stroke="{COLORS["note_stroke"]}"/>'
            )
            for index, line in enumerate(step.text):
                parts.append(
                    _text(
                        (left + right) / 2 + shift,
                        y + 6 + LINE * (index + 1) - 4,
                        line,
                        extra=f' fill="{COLORS["text"]}"',
                    )
                )
            y += height + 14
    bottom_boxes_top = y + 6
    canvas_height = bottom_boxes_top + box_height + margin

    lifelines = [
        f'<line x1="{x[name] + shift:g}" y1="{margin + box_height:g}" x2="{x[name] + shift:g}" '
        f'y2="{bottom_boxes_top:g}" stroke="{COLORS["lifeline"]}" stroke-width="1.5"/>'
        for name in ids
    ]
    boxes = []
    for participant, box in zip(diagram.participants, box_width, strict=True):
        centre = x[participant.id] + shift
        for top in (margin, bottom_boxes_top):
            boxes.append(
                f'<rect x="{centre - box / 2:g}" y="{top:g}" width="{box:g}" '
                f'height="{box_height}" rx="4" fill="{COLORS["box_fill"]}" '
                f'stroke="{COLORS["box_stroke"]}" stroke-width="1.5"/>'
            )
            boxes.append(
                _text(
                    centre,
                    top + box_height / 2 + 4.5,
                    participant.label,
                    extra=f' fill="{COLORS["text"]}" font-weight="bold"',
                )
            )

    canvas_width, canvas_height = round(canvas_width), round(canvas_height)
    title = html.escape(diagram.title or "A sequence diagram", quote=False)
    body = "\n  ".join([*lifelines, *boxes, *parts])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {canvas_width} {canvas_height}" '
        f'width="{canvas_width}" height="{canvas_height}" font-family="{SANS}" '
        f'font-size="{FONT_SIZE}">\n'
        f"  <title>{title}</title>\n"
        f'  <rect x="0" y="0" width="{canvas_width}" height="{canvas_height}" fill="#ffffff"/>\n'
        f"  {body}\n"
        "</svg>\n"
    )


def diagrams() -> dict[str, str]:
    """Each drawing's path under docs/ (``img/<name>.svg``) and its SVG."""
    return {f"img/{path.stem}.svg": render(path.read_text()) for path in sorted(EXT.glob("*.mmd"))}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs hook: put a fresh drawing of each diagram in the site, over any committed copy."""
    from mkdocs.structure.files import File

    for uri, svg in diagrams().items():
        committed = files.get_file_from_path(uri)
        if committed is not None:
            files.remove(committed)
        files.append(File.generated(config, uri, content=svg))
    return files


def main() -> int:
    """Write each drawing into docs/img/, saying which changed."""
    for uri, svg in diagrams().items():
        path = DOCS / uri
        if path.exists() and path.read_text() == svg:
            sys.stdout.write(f"{path.relative_to(DOCS.parent)}: up to date\n")
            continue
        path.write_text(svg)
        sys.stdout.write(f"{path.relative_to(DOCS.parent)}: written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
