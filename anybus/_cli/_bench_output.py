"""What ``anybus bench`` shows: rich tables of the results and the targets, ratios, the plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .._bench._cells import Outcome, Outcomes, base_workload
from .._bench._common import SUBSCRIBERS, W3_QUEUED, W4_MAX_BUFFER, Sizes
from .._bench._network_common import W6_SIZES
from .._bench._plot import plot_subscribers, series
from .._bench._report import fmt_spread, fmt_value
from .._bench._targets import Verdict

__all__ = ["ratios", "render", "write_plot"]

#: Workloads whose figure is better when lower: their ratio is pipecat's figure over this one.
LOWER_IS_BETTER = ("W3", "W5", "W7")
#: Which bare client each network implementation's messages go through.
RAW_CLIENT = {
    "anybus-redis": "raw-glide",
    "anybus-stream": "raw-glide",
    "pipecat-redis": "raw-redis-py",
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def vs_pipecat(outcome: Outcome, outcomes: Outcomes) -> float | None:
    """The cell against pipecat's on the same workload (above 1: anybus is better), or
    ``None`` where there is no such comparison (pipecat itself, raw clients, W4)."""
    job = outcome.job
    base, _ = base_workload(job.workload)
    if (
        job.impl.venv == "pipecat"
        or base == "W4"
        or (job.impl.key.startswith("raw-") and base in W6_SIZES)
    ):
        return None
    if base == "W7":
        reference = outcomes.get(("pipecat-redis", "asyncio+asyncio", job.workload))
    elif base in W6_SIZES:
        reference = outcomes.get(("pipecat-redis", "asyncio", job.workload))
    else:
        reference = outcomes.get(("pipecat", "asyncio", job.workload))
    if reference is None:
        return None
    if base in LOWER_IS_BETTER:
        return _ratio(reference.median(), outcome.median())
    return _ratio(outcome.median(), reference.median())


def of_raw(outcome: Outcome, outcomes: Outcomes) -> float | None:
    """The cell as a fraction of the raw primitive on the same backend: the anyio memory
    stream (W1, W2), the bare Redis client's messages per second (W6)."""
    job = outcome.job
    base, _ = base_workload(job.workload)
    if base in ("W1", "W2") and job.impl.key != "raw-anyio":
        raw = outcomes.get(("raw-anyio", job.backend, job.workload))
        return None if raw is None else _ratio(outcome.median(), raw.median())
    if base in W6_SIZES and job.impl.key in RAW_CLIENT:
        raw = outcomes.get((RAW_CLIENT[job.impl.key], job.backend, "W6-single"))
        rate = "messages_per_s"
        return None if raw is None else _ratio(outcome.median(rate), raw.median(rate))
    return None


def ratios(outcomes: Outcomes) -> list[dict[str, object]]:
    """Every cell's ratios, for ``--json``."""
    return [
        {
            "impl": outcome.job.impl.key,
            "backend": outcome.job.backend,
            "workload": outcome.job.workload,
            "vs_pipecat": vs_pipecat(outcome, outcomes),
            "of_raw": of_raw(outcome, outcomes),
        }
        for outcome in outcomes.values()
    ]


def title(workloads: Sequence[str], sizes: Sizes, messages: Mapping[str, int]) -> str:
    """A table's title: the workload (one, or a fan-out at several numbers of subscribers),
    its sizes, and its figure."""
    base, _ = base_workload(workloads[0])
    if base in SUBSCRIBERS:
        n = messages.get(base, sizes.messages(base))
        counts = [base_workload(w)[1] or SUBSCRIBERS[base] for w in workloads]
        subscribers = counts[-1]
        names = {
            "W1": "W1 fan-out",
            "W2": "W2 single",
            "W6-fanout": "W6-fanout (W1 through Redis)",
            "W6-single": "W6-single (W2 through Redis)",
        }
        return (
            f"{names[base]}: {n:,} messages x {', '.join(map(str, counts))} subscriber"
            f"{'s' if subscribers > 1 else ''} - deliveries/s"
        )
    if base == "W3":
        return (
            f"W3 priority latency: a system message behind {W3_QUEUED:,} queued data messages"
            f" - p99 and p50 of {sizes.w3_repetitions} repetitions"
        )
    if base == "W4":
        return (
            f"W4 slow subscriber: {messages.get('W4', sizes.w4_messages):,} messages to a 1 ms"
            f" handler, inbox bounded to {W4_MAX_BUFFER:,} - peak RSS growth"
        )
    if base == "W5":
        return (
            f"W5 churn: {sizes.w5_cycles:,} subscribe/send/unsubscribe cycles and"
            f" {sizes.w5_restarts} restarts - wall time"
        )
    return (
        f"W7 round trips between two processes (pinger+ponger backends) - p50 and p99 of"
        f" {sizes.w7_round_trips:,}"
    )


def _fmt_ratio(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}x"


def _table(workloads: Sequence[str], outcomes: Outcomes, caption: str, compare: bool) -> Table:
    """One workload's table; a fan-out at several numbers of subscribers is one table with a
    section per number."""
    base, _ = base_workload(workloads[0])
    sweep = len(workloads) > 1
    second = {"W3": ("p50", "p50_ms"), "W7": ("p99", "p99_ms")}.get(base)
    raw = base in ("W1", "W2", *W6_SIZES)
    table = Table(title=caption, title_justify="left", title_style="bold")
    if sweep:
        table.add_column("subs", justify="right")
    table.add_column("implementation")
    table.add_column("backend")
    table.add_column(
        "p99" if base == "W3" else "p50" if base == "W7" else "median", justify="right"
    )
    table.add_column("min - max", justify="right")
    if second:
        table.add_column(second[0], justify="right")
    if compare and base != "W4":
        table.add_column("vs pipecat", justify="right")
    if raw:
        table.add_column("of raw", justify="right")
    for workload in workloads:
        cells = [o for (_, _, w), o in outcomes.items() if w == workload]
        subscribers = str(base_workload(workload)[1] or SUBSCRIBERS.get(base, 0))
        for index, outcome in enumerate(cells):
            row = [
                outcome.job.impl.label,
                outcome.job.backend,
                fmt_value(workload, outcome.median()),
                fmt_spread(workload, outcome.values()),
            ]
            if sweep:
                row.insert(0, subscribers if index == 0 else "")
            if second:
                row.append(fmt_value(base, outcome.median(second[1])))
            if compare and base != "W4":
                row.append(_fmt_ratio(vs_pipecat(outcome, outcomes)))
            if raw:
                row.append(_fmt_ratio(of_raw(outcome, outcomes), percent=True))
            if outcome.failed():
                row[1 if sweep else 0] += f" ({outcome.failed()} failed)"
            table.add_row(*row, end_section=sweep and index == len(cells) - 1)
    return table


def _groups(workloads: Sequence[str]) -> list[list[str]]:
    """The workload ids, a fan-out's subscriber counts grouped into one table."""
    groups: dict[str, list[str]] = {}
    for workload in workloads:
        groups.setdefault(base_workload(workload)[0], []).append(workload)
    return list(groups.values())


def _targets_table(verdicts: list[Verdict], quick: bool) -> Table | None:
    shown = [v for v in verdicts if v["summary"] != "not measured"]
    if not shown:
        return None
    caption = "Targets (WORKLOADS.md), on medians" + (
        " - quick sizes: indicative only" if quick else ""
    )
    table = Table(title=caption, title_justify="left", title_style="bold")
    for name in ("target", "figure", "held in", ""):
        table.add_column(name)
    for verdict in shown:
        met = verdict["met"]
        mark = "" if met is None else "[green]MET[/]" if met else "[red]MISSED[/]"
        table.add_row(
            str(verdict["target"]), str(verdict["figure"]).strip(), str(verdict["held"]), mark
        )
    return table


def render(
    console: Console,
    outcomes: Outcomes,
    verdicts: list[Verdict],
    meta: Mapping[str, Any],
    sizes: Sizes,
    messages: Mapping[str, int],
) -> None:
    """Print the results of a run: a table per workload, the targets, and how to read them."""
    compare = meta["compare"] is not None
    console.print(
        f"anybus bench on {meta['bus']}: median and min - max of {meta['runs']} run(s) per"
        f" cell, each in a fresh process; python {meta['python']}, {meta['cpus']} CPUs,"
        f" anybus {meta['anybus_revision']}" + (" (quick sizes)" if meta["quick"] else ""),
        markup=False,
    )
    for group in _groups(meta["workloads"]):
        console.print()
        console.print(_table(group, outcomes, title(group, sizes, messages), compare))
    targets = _targets_table(verdicts, bool(meta["quick"]))
    if targets is not None:
        console.print()
        console.print(targets)
    console.print()
    notes = [
        "of raw: the figure as a fraction of the raw primitive on the same backend (one anyio"
        " memory stream per subscriber; for Redis, the bare client's messages/s)",
    ]
    if compare:
        notes.append(
            "vs pipecat: against pipecat on asyncio (its only backend); above 1 = anybus is"
            " faster (for latencies and times: pipecat's figure over this one)"
        )
    else:
        notes.append("ratios against pipecat and the targets that need them: --compare pipecat")
    notes.append(
        "figures are relative: compare cells of the same run, not machines (shared machines"
        " are noisy)"
    )
    for note in notes:
        console.print(note, markup=False, style="dim")


def write_plot(outcomes: Outcomes, family: str, path: Path, meta: Mapping[str, Any]) -> None:
    """``--plot``: deliveries/s against subscribers on ``family`` (W1 or W6-fanout)."""
    where = "MemoryBus (W1)" if family == "W1" else "the Redis buses (W6-fanout)"
    note = (
        f"median of {meta['runs']} run(s), anybus's min-max shaded; {meta['cpus']} CPUs, python"
        f" {meta['python']}, anybus {meta['anybus_revision']}, {meta['date'][:10]}\n"
        "relative figures: compare the lines, not machines"
    )
    plot_subscribers(
        series(outcomes, family),
        path,
        title=f"anybus bench: fan-out throughput on {where}",
        note=note,
        ylabel="deliveries/s",
    )
