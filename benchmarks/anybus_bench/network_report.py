"""The text report of the network workloads: W6 (throughput through Redis) and W7 (round
trips between two processes), as lines for ``harness.py`` to print."""

from __future__ import annotations

from collections.abc import Mapping

from anybus._bench._cells import Outcome, Outcomes, base_workload, fmt_spread, fmt_value
from anybus._bench._common import Sizes
from anybus._bench._network_common import W6_SIZES

from .references import LABELS, NETWORK_IMPLS

__all__ = ["network_section"]

#: Which raw client each implementation's messages go through.
RAW_CLIENT = {
    "anybus-redis": "raw-glide",
    "anybus-stream": "raw-glide",
    "anybus-stream-queued": "raw-glide",
    "pipecat-redis": "raw-redis-py",
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _failed(outcome: Outcome) -> str:
    failed = outcome.failed()
    return f"  ({failed} failed)" if failed else ""


def _cells(workload: str, outcomes: Outcomes) -> list[tuple[str, str, Outcome]]:
    """``(impl key, backend, outcome)`` of the workload's cells, in the table's order."""
    order: dict[str, int] = {}
    for i, spec in enumerate(NETWORK_IMPLS):
        order.setdefault(spec.key, i)
    cells = [
        (key, backend, outcome)
        for (key, backend, cell_workload), outcome in outcomes.items()
        if cell_workload == workload
    ]
    return sorted(cells, key=lambda cell: (order.get(cell[0], len(order)), cell[1]))


def network_section(
    workload: str, outcomes: Outcomes, sizes: Sizes, messages: Mapping[str, int]
) -> list[str]:
    """The heading and the table of a network workload (``workload`` may be ``W6-fanout@5``)."""
    if workload == "W7":
        heading = (
            f"W7 cross-process latency: ping-pong between two processes through Redis,"
            f" {sizes.w7_round_trips:,} round trips after\n   {sizes.w7_warmup} unmeasured; from"
            " just before send(ping) to the pinger's pong handler; backends: pinger+ponger;\n"
            "   'vs pipecat': pipecat's p50 / this p50 (above 1 = faster); 'vs raw': this p50 /"
            " the bare client's p50\n   (its own ping-pong, no bus: glide for anybus, redis-py"
            " for pipecat; same backends)"
        )
        return [heading, *_latency_table(outcomes)]
    name, sweep = base_workload(workload)
    n_messages = messages.get(name, sizes.messages(name))
    subscribers = sweep or W6_SIZES[name][1]
    base = "W1" if name == "W6-fanout" else "W2"
    heading = (
        f"{name} ({base} through Redis): {n_messages:,} data messages sent back to back to"
        f" {subscribers} subscriber{'s' if subscribers > 1 else ''}\n"
        "   on a second bus instance in the same process; deliveries/s; msgs/s: messages"
        " through Redis per second;\n"
        "   'vs pipecat': against pipecat RedisBus; 'of raw': msgs/s over the bare client's"
        " msgs/s (glide for anybus,\n"
        "   redis-py for pipecat; same backend; measured with W6-single); 'loop busy': CPU"
        " share of the event loop's thread"
    )
    return [heading, *_throughput_table(workload, outcomes)]


def _throughput_table(workload: str, outcomes: Outcomes) -> list[str]:
    lines: list[str] = []
    pipecat = outcomes.get(("pipecat-redis", "asyncio", workload))
    lines.append(
        f"  {'implementation':<29} {'backend':<8} {'deliveries/s':>12}  {'min - max':<17}"
        f" {'msgs/s':>7} {'vs pipecat':>10} {'of raw':>7} {'loop busy':>9} {'bytes':>6}"
    )
    for key, backend, outcome in _cells(workload, outcomes):
        vs_pipecat = (
            None
            if key == "pipecat-redis" or key.startswith("raw-")
            else _ratio(outcome.median(), None if pipecat is None else pipecat.median())
        )
        raw = outcomes.get((RAW_CLIENT.get(key, ""), backend, "W6-single"))
        of_raw = _ratio(
            outcome.median("messages_per_s"), None if raw is None else raw.median("messages_per_s")
        )
        busy = outcome.median("loop_thread_busy")
        size = outcome.median("payload_bytes")
        rate = outcome.median("messages_per_s")
        lines.append(
            f"  {LABELS.get(key, key):<29} {backend:<8}"
            f" {fmt_value(workload, outcome.median()):>12}"
            f"  {fmt_spread(workload, outcome.values()):<17}"
            f" {fmt_value(workload, rate):>7}"
            f" {_fmt_ratio(vs_pipecat):>10}"
            f" {'-' if of_raw is None else f'{of_raw:.0%}':>7}"
            f" {'-' if busy is None else f'{busy:.0%}':>9}"
            f" {'-' if size is None else f'{size:.0f}':>6}" + _failed(outcome)
        )
    return lines


def _latency_table(outcomes: Outcomes) -> list[str]:
    lines: list[str] = []
    pipecat = outcomes.get(("pipecat-redis", "asyncio+asyncio", "W7"))
    pipecat_p50 = None if pipecat is None else pipecat.median("p50_ms")
    lines.append(
        f"  {'implementation':<29} {'backends':<16} {'p50':>9} {'p99':>9}  {'p99 min - max':<14}"
        f" {'max (worst run)':>15} {'vs pipecat':>10} {'vs raw':>7}"
    )
    for key, backend, outcome in _cells("W7", outcomes):
        p50 = outcome.median("p50_ms")
        worst = max(outcome.values("max_ms"), default=None)
        bare = key.startswith("raw-")
        vs_pipecat = None if key == "pipecat-redis" or bare else _ratio(pipecat_p50, p50)
        raw = outcomes.get((RAW_CLIENT.get(key, ""), backend, "W7"))
        vs_raw = _ratio(p50, None if raw is None else raw.median("p50_ms"))
        lines.append(
            f"  {LABELS.get(key, key):<29} {backend:<16} {fmt_value('W7', p50):>9}"
            f" {fmt_value('W7', outcome.median('p99_ms')):>9}"
            f"  {fmt_spread('W7', outcome.values('p99_ms')):<14}"
            f" {fmt_value('W7', worst):>15} {_fmt_ratio(vs_pipecat):>10}"
            f" {_fmt_ratio(vs_raw):>7}" + _failed(outcome)
        )
    return lines
