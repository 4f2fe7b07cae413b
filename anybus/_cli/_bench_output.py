"""What ``anybus bench`` shows: rich tables of the results, and the plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .._bench._cells import Outcomes, base_workload, fmt_spread, fmt_value
from .._bench._common import SUBSCRIBERS, W3_QUEUED, W4_MAX_BUFFER, Sizes
from .._bench._plot import plot_subscribers, series

__all__ = ["COMPARISON", "render", "write_plot"]

#: Where the comparison with other buses, the raw primitive and the bare clients is run from.
COMPARISON = "python benchmarks/run.py in a checkout of the anybus repository (docs/benchmarks.md)"


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
            f" {sizes.w5_restarts} restarts - wall time, and the runs whose live tasks came"
            " back to the baseline"
        )
    return (
        f"W7 round trips between two processes (pinger+ponger backends) - p50 and p99 of"
        f" {sizes.w7_round_trips:,}"
    )


def _table(workloads: Sequence[str], outcomes: Outcomes, caption: str) -> Table:
    """One workload's table; a fan-out at several numbers of subscribers is one table with a
    section per number."""
    base, _ = base_workload(workloads[0])
    sweep = len(workloads) > 1
    second = {"W3": ("p50", "p50_ms"), "W7": ("p99", "p99_ms")}.get(base)
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
    if base == "W5":
        table.add_column("tasks back", justify="right")
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
            if base == "W5":
                runs = outcome.succeeded()
                back = sum(run.get("tasks_back_to_baseline") is True for run in runs)
                row.append(f"{back}/{len(runs)}")
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


def render(
    console: Console,
    outcomes: Outcomes,
    meta: Mapping[str, Any],
    sizes: Sizes,
    messages: Mapping[str, int],
) -> None:
    """Print the results of a run: a table per workload, and how to read them."""
    console.print(
        f"anybus bench on {meta['bus']}: median and min - max of {meta['runs']} run(s) per"
        f" cell, each in a fresh process; python {meta['python']}, {meta['cpus']} CPUs,"
        f" anybus {meta['anybus_revision']}" + (" (quick sizes)" if meta["quick"] else ""),
        markup=False,
    )
    for group in _groups(meta["workloads"]):
        console.print()
        console.print(_table(group, outcomes, title(group, sizes, messages)))
    console.print()
    notes = [
        "figures are relative: compare cells of the same run, not machines (shared machines"
        " are noisy)",
        f"against pipecat, the raw primitive and the bare Redis clients, and the targets:"
        f" {COMPARISON}",
    ]
    for note in notes:
        console.print(note, markup=False, style="dim")


def write_plot(outcomes: Outcomes, family: str, path: Path, meta: Mapping[str, Any]) -> None:
    """``--plot``: deliveries/s against subscribers on ``family`` (W1 or W6-fanout)."""
    where = "MemoryBus (W1)" if family == "W1" else "the Redis buses (W6-fanout)"
    note = (
        f"median of {meta['runs']} run(s), min-max shaded; {meta['cpus']} CPUs, python"
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
