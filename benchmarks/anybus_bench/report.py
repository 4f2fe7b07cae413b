"""The text report of the memory workloads (W1-W5): headings, figures and tables.

Each table is returned as lines of text; ``harness.py`` prints them. The figures are formatted
as ``anybus bench``'s tables do (``fmt_value``, ``fmt_spread``).
"""

from __future__ import annotations

from collections.abc import Mapping

from anybus._bench._cells import Outcome, Outcomes, base_workload, fmt_spread, fmt_value, number
from anybus._bench._common import SUBSCRIBERS, W4_MAX_BUFFER, W5_MESSAGES_PER_CYCLE, Sizes

from .references import PIPECAT, RAW_ANYIO

__all__ = [
    "churn_table",
    "description",
    "fmt_count",
    "fmt_spread",
    "fmt_value",
    "latency_table",
    "memory_table",
    "optional_median",
    "ratio_of_medians",
    "throughput_table",
]


def description(workload: str, sizes: Sizes, messages: Mapping[str, int]) -> str:
    """The heading of a workload's table (``workload`` may be a sweep's ``W1@5``)."""
    base, subscribers = base_workload(workload)
    w4_messages = messages.get("W4", sizes.w4_messages)
    if base in ("W1", "W2"):
        n_messages = messages.get(base, sizes.messages(base))
        n_subscribers = subscribers or SUBSCRIBERS[base]
        plural = "s" if n_subscribers > 1 else ""
        kind = "fan-out" if base == "W1" else "single"
        return (
            f"{base} {kind}: {n_messages:,} data messages x {n_subscribers} subscriber{plural};"
            " deliveries/s"
        )
    if workload == "W3":
        return (
            "W3 priority latency: send(system) -> its handler starts, behind 1,000 queued data\n"
            "   messages and a data handler sleeping 0.5 ms each; p50/p99 of"
            f" {sizes.w3_repetitions} repetitions"
        )
    if workload == "W4":
        return (
            f"W4 slow subscriber: {w4_messages:,} data messages sent back to back (created as"
            " sent) to 1 subscriber\n"
            "   whose handler sleeps 1 ms; anybus inbox bounded to"
            f" max_buffer={W4_MAX_BUFFER:,} (block: the publisher runs\n"
            f"   {sizes.w4_block_window:g} s instead), pipecat's unbounded; counts at the last"
            " send; RSS growth from the first send\n"
            "   to the last (MB = 10^6 bytes)"
        )
    if workload == "W5":
        return (
            f"W5 churn: {sizes.w5_cycles:,} x (subscribe -> send {W5_MESSAGES_PER_CYCLE} -> wait"
            f" until handled -> unsubscribe),\n   then {sizes.w5_restarts} x (stop -> start ->"
            " send 1 -> wait)"
            " with one subscriber; wall time"
        )
    raise ValueError(workload)


def fmt_count(value: float | None) -> str:
    """A count with thousands separators, or ``-``."""
    return "-" if value is None else f"{value:,.0f}"


def optional_median(outcome: Outcome, field: str) -> float | None:
    """The median of ``field`` over the runs where it is set (``None`` if it never is)."""
    return outcome.median(field)


def ratio_of_medians(numerator: Outcome | None, denominator: Outcome | None) -> float | None:
    """The ratio of two cells' medians, or ``None`` if either is missing."""
    if numerator is None or denominator is None:
        return None
    a, b = numerator.median(), denominator.median()
    return None if a is None or b is None else a / b


def throughput_table(workload: str, outcomes: Outcomes) -> list[str]:
    """W1/W2: median, min - max, against pipecat and against the raw ceiling."""
    lines: list[str] = []
    pipecat = outcomes.get(("pipecat", "asyncio", workload))
    header = (
        f"  {'implementation':<22} {'backend':<8} {'median':>12}  {'min - max':<22}"
        f" {'vs pipecat':>10} {'of raw':>7}"
    )
    lines.append(header)
    for (_, backend, cell_workload), outcome in outcomes.items():
        if cell_workload != workload:
            continue
        impl = outcome.job.impl
        raw = outcomes.get(("raw-anyio", backend, workload))
        vs_pipecat = None if impl is PIPECAT else ratio_of_medians(outcome, pipecat)
        of_raw = None if impl is RAW_ANYIO else ratio_of_medians(outcome, raw)
        failed = sum(r is None for r in outcome.results)
        lines.append(
            f"  {impl.label:<22} {backend:<8} {fmt_value(workload, outcome.median()):>12}"
            f"  {fmt_spread(workload, outcome.values()):<22}"
            f" {'-' if vs_pipecat is None else f'{vs_pipecat:.2f}x':>10}"
            f" {'-' if of_raw is None else f'{of_raw:.0%}':>7}"
            + (f"  ({failed} failed)" if failed else "")
        )
    return lines


def latency_table(outcomes: Outcomes) -> list[str]:
    """W3: p50, p99, the spread of the p99s and the worst sample."""
    lines: list[str] = []
    lines.append(
        f"  {'implementation':<22} {'backend':<8} {'p50':>10} {'p99':>10}  {'p99 min - max':<16}"
        f" {'max (worst run)':>15}"
    )
    for (_, backend, workload), outcome in outcomes.items():
        if workload != "W3":
            continue
        worst = max(outcome.values("max_ms"), default=None)
        failed = sum(r is None for r in outcome.results)
        lines.append(
            f"  {outcome.job.impl.label:<22} {backend:<8}"
            f" {fmt_value('W3', outcome.median('p50_ms')):>10}"
            f" {fmt_value('W3', outcome.median('p99_ms')):>10}"
            f"  {fmt_spread('W3', outcome.values('p99_ms')):<16}"
            f" {fmt_value('W3', worst):>15}" + (f"  ({failed} failed)" if failed else "")
        )
    return lines


def memory_table(outcomes: Outcomes) -> list[str]:
    """W4: one row per (implementation or policy, backend); every figure a median over runs."""
    lines: list[str] = []
    lines.append(
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
        lines.append(
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
    return lines


def churn_table(outcomes: Outcomes) -> list[str]:
    """W5: wall time, its two parts, the speed against pipecat, and what was left behind."""
    lines: list[str] = []
    pipecat = outcomes.get(("pipecat", "asyncio", "W5"))
    lines.append(
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
        lines.append(
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
    return lines
