"""W8: PostgresBus against the bare psycopg floor, measured in one run.

Usage::

    .venv/bin/python benchmarks/postgres_w8.py --runs 3
    .venv/bin/python benchmarks/postgres_w8.py --runs 5 --workloads W8-latency --json w8.json
    .venv/bin/python benchmarks/postgres_w8.py --quick --runs 1           # a smoke run

The workloads (defined in ``docs/benchmarks.md``):

* ``W8-fanout`` and ``W8-single`` — W6's W1 and W2 shapes (20,000 messages x 10 subscribers,
  10,000 x 1) through Postgres: anybus's ``PostgresBus`` on asyncio and on trio
  (``pg_anybus.py``), and the floor (``pg_floor.py``): the same work on plain psycopg, sync,
  one insert + notify per message in its own transaction, a receiver that ``LISTEN``s and
  fetches + deletes. anybus runs twice: with its default sends (each waits for its commit) and
  with ``durability="queued"`` (a send returns once queued; the writer stores batches), on
  which the throughput target is checked. Figure: deliveries per second.
* ``W8-latency`` — W7's ping-pong between two processes (pinger+ponger backends:
  asyncio+trio, trio+asyncio, asyncio+asyncio, trio+trio) and the floor's own ping-pong (two
  plain psycopg processes); anybus with its defaults (small messages carried in their
  notifications) and with ``carry_messages=False`` (``carry off``). Figure: p50 and p99 of
  1,000 round trips after 100 unmeasured.

Every measurement is a fresh process (two for W8-latency) in a Postgres schema of its own
(``w8_`` + 12 hex digits), dropped afterwards. The runs go in rounds: a round measures every
cell once, in an order rotated from round to round, so that the machine's noise hits every
cell alike; the ratios against the floor are given on the medians and per round (the cells of
a round run seconds apart). Targets: anybus at least 0.8x the floor's deliveries/s, and its
p50 within 1.3x the floor's. Exits with status 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from pg_common import (
    BACKENDS,
    DEFAULT_DSN,
    PAIRS,
    THROUGHPUT,
    W8_QUICK,
    W8_ROUND_TRIPS,
    W8_WARMUP,
    WORKLOADS,
    Result,
    drop_schema,
    new_schema,
)

from anybus import BusDataMessage, WireCodec

HERE = Path(__file__).resolve().parent
WORKERS = {
    "anybus": HERE / "pg_anybus.py",
    "anybus-queued": HERE / "pg_anybus.py",
    "anybus-uncarried": HERE / "pg_anybus.py",
    "floor": HERE / "pg_floor.py",
}
LABELS = {
    "anybus": "anybus PostgresBus",
    "anybus-queued": "anybus PostgresBus queued",
    "anybus-uncarried": "anybus PostgresBus carry off",
    "floor": "bare psycopg (floor)",
}
#: Targets (docs/benchmarks.md): anybus's deliveries/s at least this share of the floor's,
#: and its round trip p50 at most this multiple of the floor's.
THROUGHPUT_TARGET = 0.8
LATENCY_TARGET = 1.3
WORKER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Cell:
    """One implementation on one backend (or pair) on one workload."""

    impl: str
    backend: str
    workload: str


@dataclass
class Outcome:
    """Every run of one cell: its result lines by round, and its failures."""

    results: dict[int, Result] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def values(self, key: str = "value") -> list[float]:
        return [float(str(r[key])) for r in self.results.values()]

    def median(self, key: str = "value") -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None


def plan(workloads: Sequence[str], backends: Sequence[str]) -> list[Cell]:
    """The cells of one round."""
    cells: list[Cell] = []
    for workload in workloads:
        if workload == "W8-latency":
            pairs = [p for p in PAIRS if set(p.split("+")) <= set(backends)]
            cells.append(Cell("floor", "sync+sync", workload))
            cells += [Cell("anybus", pair, workload) for pair in pairs]
            cells += [Cell("anybus-uncarried", pair, workload) for pair in pairs]
        else:
            cells.append(Cell("floor", "sync", workload))
            cells += [Cell("anybus", backend, workload) for backend in backends]
            cells += [Cell("anybus-queued", backend, workload) for backend in backends]
    return cells


def worker_command(cell: Cell, args: argparse.Namespace, schema: str) -> list[str]:
    command = [sys.executable, str(WORKERS[cell.impl]), f"--workload={cell.workload}"]
    command += [f"--schema={schema}", f"--dsn={args.dsn}", f"--payload-bytes={args.payload}"]
    if cell.impl != "floor":
        command.append(f"--backend={cell.backend}")
    if cell.impl == "anybus-queued":
        command.append("--durability=queued")
    if cell.impl == "anybus-uncarried":
        command.append("--no-carry-messages")
    if cell.workload == "W8-latency":
        command += [f"--round-trips={args.round_trips}", f"--warmup={args.warmup}"]
    else:
        command.append(f"--messages={args.messages[cell.workload]}")
    return command


def measure(cell: Cell, args: argparse.Namespace) -> Result:
    """Run ``cell`` once in a fresh process; return its result line."""
    schema = new_schema()
    try:
        proc = subprocess.run(
            worker_command(cell, args, schema),
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
    finally:
        drop_schema(args.dsn, schema)  # the worker drops it; this is in case it died
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"exit status {proc.returncode}: {tail}")
    result: Result = json.loads(lines[-1])
    return result


def run_rounds(args: argparse.Namespace) -> dict[Cell, Outcome]:
    cells = plan(args.workloads, args.backends)
    outcomes = {cell: Outcome() for cell in cells}
    for round_ in range(args.runs):
        for workload in args.workloads:
            these = [cell for cell in cells if cell.workload == workload]
            shift = round_ % len(these)
            for cell in these[shift:] + these[:shift]:
                label = f"{cell.workload} {cell.impl} {cell.backend}"
                print(f"  round {round_ + 1}/{args.runs}: {label}", file=sys.stderr, flush=True)
                try:
                    outcomes[cell].results[round_] = measure(cell, args)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    outcomes[cell].errors.append(f"round {round_ + 1}: {exc}")
                    print(f"    failed: {exc}", file=sys.stderr, flush=True)
    return outcomes


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A target, checked on the medians and per round."""

    target: str
    ratio: float | None
    per_round: list[float]
    held: int
    met: bool | None  # None: shown beside a target, with no target of its own
    note: str = ""

    def line(self) -> str:
        if self.ratio is None:
            return f"  {self.target:58s}  not measured"
        if self.met is None:
            return f"  {self.target:58s} {self.ratio:5.2f}x  ({self.note})"
        spread = (
            f"per round {min(self.per_round):.2f}x - {max(self.per_round):.2f}x, "
            f"held in {self.held}/{len(self.per_round)}"
            if self.per_round
            else "no complete round"
        )
        verdict = "MET" if self.met else "MISSED"
        return f"  {self.target:58s} {self.ratio:5.2f}x  ({spread})  {verdict}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _per_round(cell: Outcome, floor: Outcome, key: str) -> list[float]:
    return [
        float(str(result[key])) / float(str(floor.results[round_][key]))
        for round_, result in cell.results.items()
        if round_ in floor.results
    ]


def verdicts(outcomes: dict[Cell, Outcome]) -> list[Verdict]:
    found: list[Verdict] = []
    for cell, outcome in outcomes.items():
        if cell.impl == "floor":
            continue
        latency = cell.workload == "W8-latency"
        floor = outcomes[Cell("floor", "sync+sync" if latency else "sync", cell.workload)]
        ratio = _ratio(outcome.median(), floor.median())
        rounds = _per_round(outcome, floor, "value")
        if latency:
            kind = "carry off " if cell.impl == "anybus-uncarried" else ""
            target = (
                f"{cell.workload} anybus {kind}{cell.backend} p50 within {LATENCY_TARGET}x floor"
            )
            ok = [r <= LATENCY_TARGET for r in rounds]
            met = ratio is not None and ratio <= LATENCY_TARGET
        elif cell.impl == "anybus":
            target = f"(no target) {cell.workload} anybus stored {cell.backend} vs floor"
            note = "each send waits for its own commit"
            found.append(Verdict(target, ratio, rounds, 0, None, note))
            continue
        else:
            target = f"{cell.workload} anybus queued {cell.backend} >= {THROUGHPUT_TARGET}x floor"
            ok = [r >= THROUGHPUT_TARGET for r in rounds]
            met = ratio is not None and ratio >= THROUGHPUT_TARGET
        found.append(Verdict(target, ratio, rounds, sum(ok), met))
    return found


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} ms" if unit == "ms" else f"{value:,.0f}/s"


def _spread(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.3f} - {high:.3f}" if unit == "ms" else f"{low:,.0f} - {high:,.0f}"


def table(workload: str, outcomes: dict[Cell, Outcome], args: argparse.Namespace) -> list[str]:
    cells = [(cell, o) for cell, o in outcomes.items() if cell.workload == workload]
    latency = workload == "W8-latency"
    floor = outcomes[Cell("floor", "sync+sync" if latency else "sync", workload)]
    lines: list[str] = []
    if latency:
        lines.append(
            f"W8-latency (W7 through Postgres): ping-pong between two processes,"
            f" {args.round_trips:,} round trips after {args.warmup} unmeasured;\n"
            "   backends: pinger+ponger; 'vs floor': this p50 / the floor's p50 (below 1 ="
            " faster); per round: the same ratio, round by round"
        )
        lines.append(
            f"  {'implementation':26s} {'backends':16s} {'p50':>9s} {'p50 min - max':>15s}"
            f" {'p99':>9s} {'p99 min - max':>15s} {'vs floor':>9s} {'per round':>14s}"
        )
    else:
        messages, subscribers = args.messages[workload], THROUGHPUT[workload][1]
        lines.append(
            f"{workload} (W6's {'W1' if subscribers > 1 else 'W2'} through Postgres):"
            f" {messages:,} data messages sent back to back to {subscribers} subscriber"
            f"{'s' if subscribers > 1 else ''};\n"
            "   deliveries/s; msgs/s: messages through Postgres per second; 'vs floor': this"
            " median / the floor's (above 1 = faster); per round: the same ratio, round by round"
        )
        lines.append(
            f"  {'implementation':26s} {'backend':8s} {'deliveries/s':>13s} {'min - max':>17s}"
            f" {'msgs/s':>9s} {'vs floor':>9s} {'per round':>14s} {'loop busy':>9s}"
        )
    for cell, outcome in cells:
        ratio = _ratio(outcome.median(), floor.median())
        rounds = _per_round(outcome, floor, "value") if cell.impl != "floor" else []
        per_round = f"{min(rounds):.2f} - {max(rounds):.2f}" if rounds else "-"
        vs = "-" if cell.impl == "floor" or ratio is None else f"{ratio:.2f}x"
        failed = f"  ({len(outcome.errors)} failed)" if outcome.errors else ""
        if latency:
            lines.append(
                f"  {LABELS[cell.impl]:26s} {cell.backend:16s}"
                f" {_fmt(outcome.median(), 'ms'):>9s} {_spread(outcome.values(), 'ms'):>15s}"
                f" {_fmt(outcome.median('p99_ms'), 'ms'):>9s}"
                f" {_spread(outcome.values('p99_ms'), 'ms'):>15s} {vs:>9s} {per_round:>14s}"
                f"{failed}"
            )
        else:
            busy = outcome.median("loop_thread_busy")
            lines.append(
                f"  {LABELS[cell.impl]:26s} {cell.backend:8s}"
                f" {_fmt(outcome.median(), '/s'):>13s} {_spread(outcome.values(), '/s'):>17s}"
                f" {_fmt(outcome.median('messages_per_s'), '/s'):>9s} {vs:>9s} {per_round:>14s}"
                f" {'-' if busy is None else f'{busy:.0%}':>9s}{failed}"
            )
    return lines


def revision() -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return proc.stdout.strip()


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"the server (default {DEFAULT_DSN})")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--fanout-messages", type=int, help="W8-fanout's messages (20,000)")
    parser.add_argument("--single-messages", type=int, help="W8-single's messages (10,000)")
    parser.add_argument("--round-trips", type=int, help=f"W8-latency ({W8_ROUND_TRIPS:,})")
    parser.add_argument("--warmup", type=int, help=f"W8-latency, unmeasured ({W8_WARMUP})")
    parser.add_argument("--timeout", type=float, default=WORKER_TIMEOUT, help="per run, s")
    parser.add_argument("--json", type=Path, help="also write every run and the verdicts here")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for workload in args.workloads:
        if workload not in WORKLOADS:
            parser.error(f"--workloads: {workload!r} is not one of {', '.join(WORKLOADS)}")
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"--backends: {backend!r} is not one of {', '.join(BACKENDS)}")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs!r}")
    fanout, single, round_trips, warmup = (
        W8_QUICK
        if args.quick
        else (*(m for m, _ in THROUGHPUT.values()), W8_ROUND_TRIPS, W8_WARMUP)
    )
    args.messages = {
        "W8-fanout": args.fanout_messages or fanout,
        "W8-single": args.single_messages or single,
    }
    args.round_trips = args.round_trips or round_trips
    args.warmup = warmup if args.warmup is None else args.warmup
    # The floor's payloads are as long as anybus's encoded data message.
    message = BusDataMessage(source="bench")
    args.payload = len(WireCodec().encode(message, sender=f"w8-sender/{'0' * 8}", seq=1))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds, print the tables and the targets; 1 if a measurement failed."""
    args = parse_args(argv)
    try:
        version = server_version(args.dsn)
    except psycopg.Error as exc:
        print(f"postgres at {args.dsn} does not answer: {exc}", file=sys.stderr)
        return 1
    started = datetime.now(UTC)
    outcomes = run_rounds(args)
    head = (
        f"W8 on {started:%Y-%m-%d %H:%M} UTC at {revision()}: Python {platform.python_version()},"
        f" psycopg {psycopg.__version__}, PostgreSQL {version}, {args.runs} run(s) a cell,"
        f" median and min - max"
    )
    print(head)
    for workload in args.workloads:
        print()
        print("\n".join(table(workload, outcomes, args)))
    found = verdicts(outcomes)
    print()
    print("Targets (docs/benchmarks.md), on medians:")
    for verdict in found:
        print(verdict.line())
    errors = [(cell, e) for cell, o in outcomes.items() for e in o.errors]
    for cell, error in errors:
        print(f"FAILED {cell.workload} {cell.impl} {cell.backend}: {error}", file=sys.stderr)
    if args.json is not None:
        document = {
            "started": started.isoformat(),
            "revision": revision(),
            "server_version": version,
            "runs": args.runs,
            "cells": [
                {
                    "impl": cell.impl,
                    "backend": cell.backend,
                    "workload": cell.workload,
                    "median": outcome.median(),
                    "runs": list(outcome.results.values()),
                    "errors": outcome.errors,
                }
                for cell, outcome in outcomes.items()
            ],
            "targets": [
                {
                    "target": v.target,
                    "ratio_of_medians": v.ratio,
                    "per_round": v.per_round,
                    "held": v.held,
                    "met": v.met,
                }
                for v in found
            ],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
