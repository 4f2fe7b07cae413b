"""Benchmark harness: anybus against pipecat's AsyncQueueBus and the raw-primitive ceiling.

Usage::

    python benchmarks/run.py [--runs 5] [--workloads W1,W2,W3,W5] [--backends asyncio,trio]
                             [--w4-messages 1000000] [--w6-messages N]
                             [--redis-url redis://127.0.0.1:6379] [--json FILE] [--no-pipecat]

W4 (slow-subscriber memory, about 30 s a round) and the network workloads W6 and W7 (a Redis
server; see ``network_report.py``) run only when asked for: ``--workloads W4``,
``--workloads W6,W7`` or ``--workloads W1,W2,W3,W4,W5``.

Run it with the Python environment where anybus, anyio and trio are installed; the pipecat
reference runs with the Python of its own virtual environment (``PIPECAT_VENV``, by default
``benchmarks/.venv-pipecat``, created by ``benchmarks/setup_pipecat.sh``).

Every measurement runs in a fresh subprocess that prints one JSON line. The runs go in rounds:
each round measures every (implementation, backend, workload) once, workload by workload, with
the order of the implementations rotated from round to round, so that noise on a shared machine
falls on all of them alike. See ``benchmarks/README.md`` for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import network_report
from _common import (
    W4_BLOCK_WINDOW,
    W4_MAX_BUFFER,
    W4_MESSAGES,
    W4_POLICIES,
    W5_CYCLES,
    W5_MESSAGES_PER_CYCLE,
    W5_RESTARTS,
)
from _network_common import DEFAULT_REDIS_URL
from network_report import NETWORK_IMPLS, NETWORK_WORKLOADS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUS_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
#: W6 (network throughput, two workloads) and W7 (cross-process latency) need a Redis server.
WORKLOADS = (*BUS_WORKLOADS, "W6", "W7")
#: W4 takes about 30 s a round (seven cells of 2-5 s each), W6 about a minute and W7 about
#: 20 s a round, and they need a Redis server: only when asked for.
DEFAULT_WORKLOADS = ("W1", "W2", "W3", "W5")
BACKENDS = ("asyncio", "trio")
DEFAULT_PIPECAT_VENV = HERE / ".venv-pipecat"
WORKER_TIMEOUT = 300.0

#: Each target: (workload, anybus backend, minimum anybus/pipecat ratio). The reference is
#: always pipecat on asyncio, pipecat's only backend.
RATIO_TARGETS = (
    ("W1", "asyncio", 5.0),
    ("W1", "trio", 4.0),
    ("W2", "asyncio", 3.0),
    ("W2", "trio", 3.0),
)
#: W3: anybus's p99 latency must stay under this many milliseconds, on every backend.
W3_P99_TARGET_MS = 1.0
#: W4: with a bounded inbox, anybus's peak RSS growth must stay under this many MB.
W4_GROWTH_TARGET_MB = 50.0


def description(workload: str, w4_messages: int) -> str:
    """The heading of a workload's table."""
    if workload == "W1":
        return "W1 fan-out: 20,000 data messages x 10 subscribers; deliveries/s"
    if workload == "W2":
        return "W2 single: 100,000 data messages x 1 subscriber; deliveries/s"
    if workload == "W3":
        return (
            "W3 priority latency: send(system) -> its handler starts, behind 1,000 queued data\n"
            "   messages and a data handler sleeping 0.5 ms each; p50/p99 of 200 repetitions"
        )
    if workload == "W4":
        return (
            f"W4 slow subscriber: {w4_messages:,} data messages sent back to back (created as"
            " sent) to 1 subscriber\n"
            "   whose handler sleeps 1 ms; anybus inbox bounded to"
            f" max_buffer={W4_MAX_BUFFER:,} (block: the publisher runs\n"
            f"   {W4_BLOCK_WINDOW:g} s instead), pipecat's unbounded; counts at the last send;"
            " RSS growth from the first send\n"
            "   to the last (MB = 10^6 bytes)"
        )
    if workload == "W5":
        return (
            f"W5 churn: {W5_CYCLES:,} x (subscribe -> send {W5_MESSAGES_PER_CYCLE} -> wait until"
            f" handled -> unsubscribe),\n   then {W5_RESTARTS} x (stop -> start -> send 1 -> wait)"
            " with one subscriber; wall time"
        )
    raise ValueError(workload)


@dataclass(frozen=True)
class Impl:
    """One implementation under test and the worker script that measures it."""

    key: str
    label: str
    script: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    extra_args: tuple[str, ...] = ()
    #: The Python that runs the worker: anybus's (this one) or the pipecat venv's.
    venv: str = "anybus"


ANYBUS = Impl("anybus", "anybus MemoryBus", "workloads.py", BACKENDS, ("W1", "W2", "W3", "W5"))
#: W4 measures anybus once per overflow policy.
ANYBUS_W4 = tuple(
    Impl(
        f"anybus-{policy}",
        f"anybus {policy}",
        "workloads.py",
        BACKENDS,
        ("W4",),
        ("--policy", policy),
    )
    for policy in W4_POLICIES
)
PIPECAT = Impl(
    "pipecat",
    "pipecat AsyncQueueBus",
    "pipecat_reference.py",
    ("asyncio",),
    BUS_WORKLOADS,
    venv="pipecat",
)
RAW_ANYIO = Impl(
    "raw-anyio", "raw anyio stream", "raw.py", BACKENDS, ("W1", "W2"), ("--primitive", "anyio")
)
RAW_QUEUE = Impl(
    "raw-asyncio-queue",
    "raw asyncio.Queue",
    "raw.py",
    ("asyncio",),
    ("W1", "W2"),
    ("--primitive", "asyncio-queue"),
)
IMPLS = (
    ANYBUS,
    *ANYBUS_W4,
    PIPECAT,
    RAW_ANYIO,
    RAW_QUEUE,
    *(Impl(*spec) for spec in NETWORK_IMPLS),
)


@dataclass(frozen=True)
class Job:
    """One (implementation, backend, workload) cell of the results table."""

    impl: Impl
    backend: str
    workload: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.impl.key, self.backend, self.workload)

    def describe(self) -> str:
        return f"{self.workload} {self.impl.label} on {self.backend}"


def number(value: object) -> float:
    """Read a number from a worker's JSON result line."""
    if not isinstance(value, int | float):
        raise TypeError(f"worker result field is not a number: {value!r}")
    return float(value)


@dataclass
class Outcome:
    """Every run of one job, in round order (``None`` where a run failed)."""

    job: Job
    results: list[dict[str, object] | None]

    def values(self, field: str = "value") -> list[float]:
        return [number(r[field]) for r in self.results if r is not None]

    def median(self, field: str = "value") -> float | None:
        values = self.values(field)
        return statistics.median(values) if values else None

    def by_round(self, field: str = "value") -> list[float | None]:
        return [None if r is None else number(r[field]) for r in self.results]

    def succeeded(self) -> list[dict[str, object]]:
        return [r for r in self.results if r is not None]

    def failed(self) -> int:
        return sum(r is None for r in self.results)


# --- running workers ------------------------------------------------------------------------


def find_pipecat_python(venv: Path) -> Path | None:
    """Return the pipecat venv's Python if it can import pipecat's bus, else ``None``."""
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import pipecat.bus.local.async_queue"],
        capture_output=True,
        check=False,
    )
    return python if probe.returncode == 0 else None


def worker_env() -> dict[str, str]:
    """The environment of the anybus and raw workers: the working tree's anybus comes first."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) if not path else os.pathsep.join([str(REPO), path])
    return env


def run_worker(
    job: Job, python: Path, env: dict[str, str] | None, extra_args: Sequence[str] = ()
) -> tuple[dict[str, object] | None, str]:
    """Run one measurement in a fresh process; return its result line, or ``None`` and why."""
    command = [
        str(python),
        str(HERE / job.impl.script),
        "--workload",
        job.workload,
        "--backend",
        job.backend,
        *job.impl.extra_args,
        *extra_args,
    ]
    try:
        proc = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {WORKER_TIMEOUT:.0f} s"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return None, f"exit status {proc.returncode}\n{tail}"
    result: dict[str, object] = json.loads(lines[-1])
    return result, ""


def plan(
    workloads: Sequence[str], backends: Sequence[str], with_pipecat: bool
) -> dict[str, list[Job]]:
    """The jobs of one round, grouped by workload, in a fixed base order."""
    jobs: dict[str, list[Job]] = {}
    for workload in workloads:
        cells: list[Job] = []
        for impl in IMPLS:
            if impl.venv == "pipecat" and not with_pipecat:
                continue
            if workload not in impl.workloads:
                continue
            for backend in impl.backends:
                # pipecat runs on asyncio only; it is the reference for every anybus backend.
                # (W7's backends are pairs, "asyncio+trio": both must be selected.)
                if impl.venv == "pipecat" or set(backend.split("+")) <= set(backends):
                    cells.append(Job(impl, backend, workload))
        jobs[workload] = cells
    return jobs


# --- formatting -----------------------------------------------------------------------------


def fmt_value(workload: str, value: float | None) -> str:
    if workload in NETWORK_WORKLOADS:
        return network_report.fmt_value(workload, value)
    if value is None:
        return "-"
    if workload == "W3":
        return f"{value:.3f} ms"
    if workload == "W4":
        return f"{value:,.1f} MB"
    if workload == "W5":
        return f"{value * 1e3:,.0f} ms"
    return f"{value / 1e3:,.0f}k/s"


def fmt_spread(workload: str, values: Sequence[float]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    if workload == "W3":
        return f"{low:.3f} - {high:.3f}"
    if workload == "W4":
        return f"{low:,.1f} - {high:,.1f}"
    if workload == "W5":
        return f"{low * 1e3:,.0f} - {high * 1e3:,.0f}"
    return f"{low / 1e3:,.0f}k - {high / 1e3:,.0f}k"


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def optional_median(outcome: Outcome, field: str) -> float | None:
    """The median of ``field`` over the runs where it is set (``None`` if it never is)."""
    values = [number(r[field]) for r in outcome.succeeded() if r.get(field) is not None]
    return statistics.median(values) if values else None


def paired_ratios(numerator: Outcome, denominator: Outcome) -> list[float]:
    """Ratios of the runs of the same round (they ran a few seconds apart)."""
    return [
        a / b
        for a, b in zip(numerator.by_round(), denominator.by_round(), strict=True)
        if a is not None and b is not None
    ]


def ratio_of_medians(numerator: Outcome | None, denominator: Outcome | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    a, b = numerator.median(), denominator.median()
    return None if a is None or b is None else a / b


def print_throughput_table(workload: str, outcomes: dict[tuple[str, str, str], Outcome]) -> None:
    pipecat = outcomes.get(("pipecat", "asyncio", workload))
    header = (
        f"  {'implementation':<22} {'backend':<8} {'median':>12}  {'min - max':<22}"
        f" {'vs pipecat':>10} {'of raw':>7}"
    )
    print(header)
    for (_, backend, cell_workload), outcome in outcomes.items():
        if cell_workload != workload:
            continue
        impl = outcome.job.impl
        raw = outcomes.get(("raw-anyio", backend, workload))
        vs_pipecat = None if impl is PIPECAT else ratio_of_medians(outcome, pipecat)
        of_raw = None if impl is RAW_ANYIO else ratio_of_medians(outcome, raw)
        failed = sum(r is None for r in outcome.results)
        print(
            f"  {impl.label:<22} {backend:<8} {fmt_value(workload, outcome.median()):>12}"
            f"  {fmt_spread(workload, outcome.values()):<22}"
            f" {'-' if vs_pipecat is None else f'{vs_pipecat:.2f}x':>10}"
            f" {'-' if of_raw is None else f'{of_raw:.0%}':>7}"
            + (f"  ({failed} failed)" if failed else "")
        )


def print_latency_table(outcomes: dict[tuple[str, str, str], Outcome]) -> None:
    print(
        f"  {'implementation':<22} {'backend':<8} {'p50':>10} {'p99':>10}  {'p99 min - max':<16}"
        f" {'max (worst run)':>15}"
    )
    for (_, backend, workload), outcome in outcomes.items():
        if workload != "W3":
            continue
        worst = max(outcome.values("max_ms"), default=None)
        failed = sum(r is None for r in outcome.results)
        print(
            f"  {outcome.job.impl.label:<22} {backend:<8}"
            f" {fmt_value('W3', outcome.median('p50_ms')):>10}"
            f" {fmt_value('W3', outcome.median('p99_ms')):>10}"
            f"  {fmt_spread('W3', outcome.values('p99_ms')):<16}"
            f" {fmt_value('W3', worst):>15}" + (f"  ({failed} failed)" if failed else "")
        )


def print_memory_table(outcomes: dict[tuple[str, str, str], Outcome]) -> None:
    """W4: one row per (implementation or policy, backend); every figure a median over runs."""
    print(
        f"  {'implementation':<22} {'backend':<8} {'sent':>9} {'handled':>8} {'handled/s':>9}"
        f" {'dropped':>9} {'queued':>9} {'publisher':>9} {'in send()':>9}"
        f" {'RSS peak growth':>15}  {'min - max':<15} {'at end':>8}"
    )
    for (_, backend, workload), outcome in outcomes.items():
        if workload != "W4":
            continue
        in_send = optional_median(outcome, "in_send_fraction")
        publisher = optional_median(outcome, "publisher_seconds")
        unaccounted = sum(number(r["unaccounted"]) != 0 for r in outcome.succeeded())
        failed = outcome.failed()
        print(
            f"  {outcome.job.impl.label:<22} {backend:<8}"
            f" {fmt_count(optional_median(outcome, 'sent')):>9}"
            f" {fmt_count(optional_median(outcome, 'handled')):>8}"
            f" {fmt_count(optional_median(outcome, 'handled_per_s')):>9}"
            f" {fmt_count(optional_median(outcome, 'dropped')):>9}"
            f" {fmt_count(optional_median(outcome, 'queued')):>9}"
            f" {'-' if publisher is None else f'{publisher:.2f} s':>9}"
            f" {'-' if in_send is None else f'{in_send:.1%}':>9}"
            f" {fmt_value('W4', outcome.median()):>15}"
            f"  {fmt_spread('W4', outcome.values()):<15}"
            f" {fmt_value('W4', optional_median(outcome, 'rss_end_growth_mb')):>8}"
            + (f"  ({failed} failed)" if failed else "")
            + (
                f"  ({unaccounted} run(s) where sent != handled + dropped + queued)"
                if unaccounted
                else ""
            )
        )


def print_churn_table(outcomes: dict[tuple[str, str, str], Outcome]) -> None:
    """W5: wall time, its two parts, the speed against pipecat, and what was left behind."""
    pipecat = outcomes.get(("pipecat", "asyncio", "W5"))
    print(
        f"  {'implementation':<22} {'backend':<8} {'median':>8}  {'min - max':<11}"
        f" {'cycles':>7} {'restarts':>8} {'vs pipecat':>10}  {'tasks b/o/s/a/c':<15}"
        f" {'back':>5} {'objects':>7} {'alive':>5} {'RSS end':>8} {'peak':>7}"
    )
    for (_, backend, workload), outcome in outcomes.items():
        if workload != "W5":
            continue
        runs = outcome.succeeded()
        # pipecat's time over this cell's: above 1 means faster than pipecat.
        speed = None if outcome.job.impl is PIPECAT else ratio_of_medians(pipecat, outcome)
        task_counts = sorted(
            {
                "/".join(
                    str(r[f"tasks_{when}"])
                    for when in ("before", "open", "subscribed", "after_cycles", "closed")
                )
                for r in runs
            }
        )
        back = sum(r["tasks_back_to_baseline"] is True for r in runs)
        objects = max((number(r["objects_growth"]) for r in runs), default=None)
        alive = max((number(r["subscribers_alive"]) for r in runs), default=None)
        cycles = optional_median(outcome, "cycles_seconds")
        restarts = optional_median(outcome, "restarts_seconds")
        failed = outcome.failed()
        print(
            f"  {outcome.job.impl.label:<22} {backend:<8}"
            f" {fmt_value('W5', outcome.median()):>8}  {fmt_spread('W5', outcome.values()):<11}"
            f" {fmt_value('W5', cycles):>7} {fmt_value('W5', restarts):>8}"
            f" {'-' if speed is None else f'{speed:.2f}x':>10}"
            f"  {' or '.join(task_counts) or '-':<15}"
            f" {f'{back}/{len(runs)}':>5} {fmt_count(objects):>7} {fmt_count(alive):>5}"
            f" {fmt_value('W4', optional_median(outcome, 'rss_end_growth_mb')):>8}"
            f" {fmt_value('W4', optional_median(outcome, 'rss_peak_growth_mb')):>7}"
            + (f"  ({failed} failed)" if failed else "")
        )


def check_targets(
    outcomes: dict[tuple[str, str, str], Outcome], workloads: Sequence[str]
) -> list[dict[str, object]]:
    """Check the WORKLOADS.md targets of ``workloads``; print and return the verdicts."""
    verdicts: list[dict[str, object]] = []
    for workload, backend, minimum in RATIO_TARGETS:
        if workload not in workloads:
            continue
        anybus = outcomes.get(("anybus", backend, workload))
        pipecat = outcomes.get(("pipecat", "asyncio", workload))
        name = f"{workload} anybus on {backend} >= {minimum:g}x pipecat on asyncio"
        ratio = ratio_of_medians(anybus, pipecat)
        if anybus is None or pipecat is None or ratio is None:
            print(f"  {name:<50} not measured")
            continue
        paired = paired_ratios(anybus, pipecat)
        held = sum(r >= minimum for r in paired)
        met = ratio >= minimum
        print(
            f"  {name:<50} {ratio:5.2f}x  (per round {min(paired):.2f}x - {max(paired):.2f}x,"
            f" held in {held}/{len(paired)})  {'MET' if met else 'MISSED'}"
        )
        verdicts.append(
            {
                "target": name,
                "workload": workload,
                "backend": backend,
                "minimum_ratio": minimum,
                "ratio_of_medians": ratio,
                "per_round_ratios": paired,
                "met": met,
            }
        )
    for backend in BACKENDS if "W3" in workloads else ():
        anybus = outcomes.get(("anybus", backend, "W3"))
        name = f"W3 anybus on {backend} p99 < {W3_P99_TARGET_MS:g} ms"
        p99 = None if anybus is None else anybus.median("p99_ms")
        if anybus is None or p99 is None:
            print(f"  {name:<50} not measured")
            continue
        runs = anybus.values("p99_ms")
        held = sum(v < W3_P99_TARGET_MS for v in runs)
        met = p99 < W3_P99_TARGET_MS
        print(
            f"  {name:<50} {p99:.3f} ms  (per run {min(runs):.3f} - {max(runs):.3f},"
            f" held in {held}/{len(runs)})  {'MET' if met else 'MISSED'}"
        )
        verdicts.append(
            {
                "target": name,
                "workload": "W3",
                "backend": backend,
                "maximum_p99_ms": W3_P99_TARGET_MS,
                "median_p99_ms": p99,
                "per_run_p99_ms": runs,
                "met": met,
            }
        )
    if "W4" in workloads:
        verdicts.extend(check_memory_targets(outcomes))
    if "W5" in workloads:
        verdicts.extend(check_churn_targets(outcomes))
    verdicts.extend(network_report.check_targets(outcomes, workloads))
    return verdicts


def check_memory_targets(
    outcomes: dict[tuple[str, str, str], Outcome],
) -> list[dict[str, object]]:
    """W4: anybus's peak RSS growth under each overflow policy stays under the target."""
    verdicts: list[dict[str, object]] = []
    for impl in ANYBUS_W4:
        for backend in BACKENDS:
            outcome = outcomes.get((impl.key, backend, "W4"))
            name = f"W4 {impl.label} on {backend} growth < {W4_GROWTH_TARGET_MB:g} MB"
            growth = None if outcome is None else outcome.median()
            if outcome is None or growth is None:
                print(f"  {name:<50} not measured")
                continue
            runs = outcome.values()
            held = sum(v < W4_GROWTH_TARGET_MB for v in runs)
            met = growth < W4_GROWTH_TARGET_MB
            print(
                f"  {name:<50} {growth:.1f} MB  (per run {min(runs):.1f} - {max(runs):.1f},"
                f" held in {held}/{len(runs)})  {'MET' if met else 'MISSED'}"
            )
            verdicts.append(
                {
                    "target": name,
                    "workload": "W4",
                    "backend": backend,
                    "policy": impl.extra_args[-1],
                    "maximum_growth_mb": W4_GROWTH_TARGET_MB,
                    "median_growth_mb": growth,
                    "per_run_growth_mb": runs,
                    "met": met,
                }
            )
    pipecat = outcomes.get(("pipecat", "asyncio", "W4"))
    if pipecat is not None and pipecat.median() is not None:
        growth = pipecat.median()
        queued = optional_median(pipecat, "queued")
        per_message = (
            f", ~{growth * 1e6 / queued:,.0f} bytes per queued message"
            if growth is not None and queued
            else ""
        )
        print(
            f"  {'(for reference) W4 pipecat, unbounded':<50} grew {fmt_value('W4', growth)}"
            f" with {fmt_count(queued)} messages queued{per_message}"
        )
    return verdicts


def check_churn_targets(
    outcomes: dict[tuple[str, str, str], Outcome],
) -> list[dict[str, object]]:
    """W5: after the churn, anybus is back to its live tasks, with no subscriber left alive.

    Checked on every run, not on a median: a task left behind once is a leak.
    """
    verdicts: list[dict[str, object]] = []
    for backend in BACKENDS:
        outcome = outcomes.get(("anybus", backend, "W5"))
        name = f"W5 anybus on {backend} nothing left behind"
        runs = [] if outcome is None else outcome.succeeded()
        if not runs:
            print(f"  {name:<50} not measured")
            continue
        tasks_held = sum(r["tasks_back_to_baseline"] is True for r in runs)
        alive_held = sum(number(r["subscribers_alive"]) == 0 for r in runs)
        met = tasks_held == alive_held == len(runs)
        retained = [number(r["rss_end_growth_mb"]) for r in runs]
        print(
            f"  {name:<50} tasks back to baseline in {tasks_held}/{len(runs)},"
            f" no subscriber alive in {alive_held}/{len(runs)}"
            f" (RSS at end {min(retained):+.1f} - {max(retained):+.1f} MB)"
            f"  {'MET' if met else 'MISSED'}"
        )
        verdicts.append(
            {
                "target": name,
                "workload": "W5",
                "backend": backend,
                "runs": len(runs),
                "tasks_back_to_baseline": tasks_held,
                "no_subscriber_alive": alive_held,
                "rss_end_growth_mb": retained,
                "met": met,
            }
        )
    return verdicts


# --- main -----------------------------------------------------------------------------------


def parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {item!r}: choose from {', '.join(allowed)}"
            )
    if not items:
        raise argparse.ArgumentTypeError(f"{what}s cannot be empty")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark anybus against pipecat's AsyncQueueBus and raw queues."
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per cell (default: 5)")
    parser.add_argument(
        "--workloads",
        type=lambda v: parse_list(v, WORKLOADS, "workload"),
        default=list(DEFAULT_WORKLOADS),
        help=(
            "comma-separated, from W1,W2,W3,W4,W5,W6,W7 (default: W1,W2,W3,W5; W4 takes about"
            " 30 s a round; W6 and W7 need a Redis server)"
        ),
    )
    parser.add_argument(
        "--backends",
        type=lambda v: parse_list(v, BACKENDS, "backend"),
        default=list(BACKENDS),
        help="anybus backends, comma-separated, from asyncio,trio (default: both)",
    )
    parser.add_argument(
        "--w4-messages",
        type=int,
        default=W4_MESSAGES,
        metavar="N",
        help=f"W4: data messages the publisher sends (default: {W4_MESSAGES:,})",
    )
    parser.add_argument(
        "--w6-messages",
        type=int,
        metavar="N",
        help="W6: data messages sent through Redis (default: W6-fanout 20,000, W6-single 10,000)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"W6/W7: the Redis server (default: {DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument("--no-pipecat", action="store_true", help="skip the pipecat reference")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs!r}")
    if args.w4_messages < 1:
        parser.error(f"--w4-messages must be at least 1, not {args.w4_messages!r}")
    if args.w6_messages is not None and args.w6_messages < 1:
        parser.error(f"--w6-messages must be at least 1, not {args.w6_messages!r}")
    return args


def git_revision() -> str:
    try:
        proc = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    backends: list[str] = args.backends
    if "trio" in backends and find_spec("trio") is None:
        print(
            "trio is not installed in this Python: skipping the trio backend"
            " (install it with: pip install 'anybus[trio]')",
            file=sys.stderr,
        )
        backends = [b for b in backends if b != "trio"]
        if not backends:
            return 1

    pipecat_venv = Path(os.environ.get("PIPECAT_VENV") or DEFAULT_PIPECAT_VENV)
    pipecat_python: Path | None = None
    if not args.no_pipecat:
        pipecat_python = find_pipecat_python(pipecat_venv)
        if pipecat_python is None:
            print(
                f"pipecat reference: no virtual environment at {pipecat_venv} that imports"
                " pipecat's bus.\n"
                "  create it with:  bash benchmarks/setup_pipecat.sh"
                "  (or point PIPECAT_VENV at one)\n"
                "  continuing as with --no-pipecat: no anybus/pipecat ratios, and the W1/W2"
                " targets are not checked\n",
                file=sys.stderr,
            )

    workloads, pipecat_network = network_report.preflight(
        network_report.expand(args.workloads), args.redis_url, pipecat_python
    )
    rounds = plan(workloads, backends, with_pipecat=pipecat_python is not None)
    if not pipecat_network:
        rounds = {
            workload: [job for job in jobs if job.impl.venv != "pipecat"]
            if workload in NETWORK_WORKLOADS
            else jobs
            for workload, jobs in rounds.items()
        }
    rounds = {workload: jobs for workload, jobs in rounds.items() if jobs}
    outcomes: dict[tuple[str, str, str], Outcome] = {
        job.key: Outcome(job, []) for jobs in rounds.values() for job in jobs
    }
    env = worker_env()
    workload_args = {
        "W4": ["--messages", str(args.w4_messages)],
        **network_report.worker_args(args.redis_url, args.w6_messages),
    }
    total = args.runs * len(outcomes)
    done = 0
    for round_index in range(args.runs):
        for workload, jobs in rounds.items():
            shift = round_index % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                done += 1
                extra = workload_args.get(workload, [])
                if job.impl.venv == "pipecat":
                    assert pipecat_python is not None
                    result, error = run_worker(job, pipecat_python, None, extra)
                else:
                    result, error = run_worker(job, Path(sys.executable), env, extra)
                outcomes[job.key].results.append(result)
                shown = (
                    fmt_value(workload, number(result["value"]))
                    if result is not None
                    else f"FAILED: {error}"
                )
                print(
                    f"[{done:>3}/{total}] round {round_index + 1}: {job.describe()}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )

    wall = time.perf_counter() - started
    print()
    print(
        f"anybus benchmarks: median of {args.runs} runs, each in a fresh process;"
        f" python {platform.python_version()}, {platform.system()} {platform.machine()},"
        f" {os.cpu_count()} CPUs, anybus {git_revision()}"
    )
    if set(BUS_WORKLOADS) & set(workloads):
        print("'vs pipecat': against pipecat AsyncQueueBus on asyncio (its only backend);")
    if {"W1", "W2"} & set(workloads):
        print("'of raw': fraction of the raw anyio memory stream ceiling on the same backend.")
    for workload in workloads:
        print()
        if workload in NETWORK_WORKLOADS:
            network_report.print_section(workload, outcomes, args.w6_messages)
            continue
        print(description(workload, args.w4_messages))
        if workload == "W3":
            print_latency_table(outcomes)
        elif workload == "W4":
            print_memory_table(outcomes)
        elif workload == "W5":
            print(
                "   ('vs pipecat': pipecat's time / this time, above 1 = faster; tasks: live"
                " before the bus,\n   once open, with one subscriber, after the cycles, after"
                " closing; back: runs back to baseline;\n   objects: most gc-tracked objects"
                " gained; alive: most churn subscribers not collected)"
            )
            print_churn_table(outcomes)
        else:
            print_throughput_table(workload, outcomes)
    print()
    print("Targets (WORKLOADS.md), on medians:")
    verdicts = check_targets(outcomes, workloads)
    print()
    print(f"harness wall time: {wall:.1f} s for {total} worker processes")

    if args.json is not None:
        report = {
            "meta": {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": [Path(sys.executable).name, *sys.argv],
                "runs": args.runs,
                "workloads": workloads,
                "backends": backends,
                "w4_messages": args.w4_messages,
                "w6_messages": args.w6_messages,
                "redis_url": args.redis_url,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "anybus_revision": git_revision(),
                "pipecat_python": None if pipecat_python is None else str(pipecat_python),
                "wall_seconds": wall,
            },
            "cells": [
                {
                    "impl": outcome.job.impl.key,
                    "label": outcome.job.impl.label,
                    "backend": outcome.job.backend,
                    "workload": outcome.job.workload,
                    "median": outcome.median(),
                    "min": min(outcome.values(), default=None),
                    "max": max(outcome.values(), default=None),
                    "runs": outcome.results,
                }
                for outcome in outcomes.values()
            ],
            "targets": verdicts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    failed = sum(r is None for outcome in outcomes.values() for r in outcome.results)
    return 1 if failed or len(workloads) < len(network_report.expand(args.workloads)) else 0


if __name__ == "__main__":
    sys.exit(main())
