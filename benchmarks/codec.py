"""The wire codec, before and after msgspec: encode and decode, per message, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/codec.py              # both messages, JSON and msgpack
    .venv/bin/python benchmarks/codec.py --baseline 502443c --number 20000

The codec before msgspec (``anybus/_fields.py``, ``_hints.py``, ``_serializers.py`` and
``_wire.py`` as they were at ``--baseline``, by default the commit before msgspec came in) is
read from git with ``git show`` into a temporary package beside this checkout's anybus, whose
message classes, registry and exceptions it shares: both codecs encode the same objects with
the same registry. The two must write the same bytes (checked before timing).

Two messages: a typical job request (a few strings and a small payload) and a data message
with a nested payload (dicts, lists, a datetime and 1 KB of text). Each figure is the best of
``--repeat`` rounds of ``--number`` calls, in microseconds per message.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import timeit
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anybus  # noqa: E402 - this checkout's, whatever is installed
from anybus import (  # noqa: E402
    BusDataMessage,
    BusJobRequestMessage,
    BusMessage,
    MsgpackSerializer,
    WireCodec,
)

#: The modules of the codec before msgspec; the others are shared with this checkout.
OLD_MODULES = ("_hints", "_fields", "_serializers", "_wire")
SHARED = ("_exceptions", "_messages", "_message_types")


@dataclass(kw_only=True)
class Document(BusDataMessage):
    """A data message with a nested payload."""

    payload: dict[str, Any] = field(default_factory=dict)


def messages() -> dict[str, BusMessage]:
    """The two messages, by name."""
    job = BusJobRequestMessage(
        source="caller-1",
        target="worker-1",
        job_id="job-0001-4f3c9a",
        job_name="transcribe",
        payload={
            "file": "audio/clip-0001.wav",
            "language": "en",
            "options": {"beam": 5, "timestamps": True},
            "priority": 2,
        },
    )
    document = Document(
        source="indexer",
        payload={
            "title": "quarterly report",
            "created": datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            "tags": ["finance", "q2", "draft"],
            "stats": {
                "words": 180,
                "ratio": 0.25,
                "sections": [{"n": n, "ok": n % 2 == 0, "title": f"part {n}"} for n in range(5)],
            },
            "text": ("lorem ipsum dolor sit amet " * 40)[:1024],
        },
    )
    return {"job request": job, "nested data": document}


def baseline_revision() -> str:
    """The commit before msgspec came in: the parent of the commit that added _plain.py."""
    added = git("log", "--diff-filter=A", "--format=%H", "--", "anybus/_plain.py").split()
    if not added:
        raise SystemExit("cannot find the msgspec commit in git; give --baseline REV")
    return f"{added[-1]}^"


def git(*args: str) -> str:
    """The output of a git command in this checkout."""
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def load_old_codec(revision: str, directory: Path) -> ModuleType:
    """The ``_wire`` module of ``revision``, in a package ``anybus_before`` whose shared
    modules are this checkout's."""
    package = directory / "anybus_before"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in OLD_MODULES:
        source = git("show", f"{revision}:anybus/{name}.py")
        (package / f"{name}.py").write_text(source)
    for name in SHARED:
        (package / f"{name}.py").write_text(f"from anybus.{name} import *  # noqa: F403\n")
        # names that are not in __all__ (a module's private helpers the old code imported)
        module = importlib.import_module(f"anybus.{name}")
        extra = [n for n in vars(module) if not n.startswith("__")]
        with (package / f"{name}.py").open("a") as out:
            out.write(f"from anybus.{name} import {', '.join(extra)}  # noqa: F401\n")
    sys.path.insert(0, str(directory))
    return importlib.import_module("anybus_before._wire")


def best(function: Any, number: int, repeat: int) -> float:
    """The best of ``repeat`` rounds, in microseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    """Measure, print the table, and say whether the target (3x the round trip) is met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git revision of the codec before msgspec")
    parser.add_argument("--number", type=int, default=5000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best is kept")
    options = parser.parse_args()
    revision = options.baseline or baseline_revision()
    registry = anybus.default_registry.copy()
    registry.register(Document, "bench.Document")
    with tempfile.TemporaryDirectory() as directory:
        old_wire = load_old_codec(revision, Path(directory))
        old_msgpack = importlib.import_module("anybus_before._serializers").MsgpackSerializer
        codecs = {
            "json": (old_wire.WireCodec(registry=registry), WireCodec(registry=registry)),
            "msgpack": (
                old_wire.WireCodec(old_msgpack(), registry),
                WireCodec(MsgpackSerializer(), registry),
            ),
        }
        print(f"anybus codec: before msgspec ({git('rev-parse', '--short', revision).strip()})")
        print(f"against this checkout; best of {options.repeat} x {options.number} calls")
        print(f"python {sys.version.split()[0]}, microseconds per message\n")
        header = (
            f"{'message':<13} {'format':<8} {'bytes':>6}   {'encode':>15}   {'decode':>15}"
            f"   {'round trip':>15}   {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        ratios = []
        for label, message in messages().items():
            for name, (old, new) in codecs.items():
                ratios.append(compare(label, name, message, old, new, options))
        worst = min(ratios)
        verdict = "MET" if worst >= 3 else "NOT MET"
        print(f"\ntarget: round trip at least 3x faster; worst {worst:.1f}x: {verdict}")


def compare(label: str, name: str, message: BusMessage, old: Any, new: Any, options: Any) -> float:
    """Time one message with one serializer on both codecs; print a row; return the ratio."""
    old_data = old.encode(message, sender="bus-1", seq=1)
    new_data = new.encode(message, sender="bus-1", seq=1)
    if old_data != new_data:
        raise SystemExit(f"{label} ({name}): the two codecs wrote different bytes")
    if old.decode(new_data).message != message or new.decode(old_data).message != message:
        raise SystemExit(f"{label} ({name}): a codec did not read the other's bytes back")
    times = {}
    for which, codec in (("old", old), ("new", new)):
        encode = best(lambda c=codec: c.encode(message, sender="bus-1", seq=1), **timing(options))
        decode = best(lambda c=codec: c.decode(new_data), **timing(options))
        times[which] = (encode, decode, encode + decode)
    (oe, od, ort), (ne, nd, nrt) = times["old"], times["new"]
    print(
        f"{label:<13} {name:<8} {len(new_data):>6}   {oe:>6.1f} -> {ne:>5.1f}   "
        f"{od:>6.1f} -> {nd:>5.1f}   {ort:>6.1f} -> {nrt:>5.1f}   {ort / nrt:>5.1f}x"
    )
    return ort / nrt


def timing(options: Any) -> dict[str, int]:
    """The ``number`` and ``repeat`` of :func:`best`."""
    return {"number": options.number, "repeat": options.repeat}


if __name__ == "__main__":
    main()
