"""The harness's side of W6 (network throughput) and W7 (cross-process round trips).

``run.py`` imports this module for the cells these workloads add, their tables and their
targets; it runs the workers (``network.py``, ``pipecat_network.py``) like every other. It works
on run.py's ``Outcome`` objects through the small protocol below, without importing run.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from _network_common import (
    W6_SIZES,
    W6_WORKLOADS,
    W7_ROUND_TRIPS,
    W7_WARMUP,
    redis_address,
)

__all__ = [
    "NETWORK_IMPLS",
    "NETWORK_WORKLOADS",
    "TRIO_TARGET",
    "W6_TARGET",
    "ImplSpec",
    "check_targets",
    "expand",
    "fmt_value",
    "pipecat_network_ready",
    "preflight",
    "print_section",
    "redis_reachable",
    "worker_args",
]

#: The workload ids the harness runs for ``--workloads W6,W7``: W6 is two workloads.
NETWORK_WORKLOADS = (*W6_WORKLOADS, "W7")
BACKENDS = ("asyncio", "trio")
#: W7's cells: pinger's backend + ponger's backend.
PAIRS = tuple(f"{a}+{b}" for a in BACKENDS for b in BACKENDS)

#: W6: anybus's RedisBus on asyncio against pipecat's RedisBus (WORKLOADS.md).
W6_TARGET = 2.0
#: W6: anybus on trio at least this fraction of anybus on asyncio ("within 20%").
TRIO_TARGET = 0.8


class ImplSpec(NamedTuple):
    """The fields of run.py's ``Impl``, in its order."""

    key: str
    label: str
    script: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    extra_args: tuple[str, ...] = ()
    venv: str = "anybus"


NETWORK_IMPLS = (
    ImplSpec(
        "anybus-redis", "anybus RedisBus", "network.py", BACKENDS, W6_WORKLOADS, ("--impl=redis",)
    ),
    ImplSpec(
        "anybus-stream",
        "anybus RedisStreamBus",
        "network.py",
        BACKENDS,
        W6_WORKLOADS,
        ("--impl=stream",),
    ),
    ImplSpec(
        "pipecat-redis",
        "pipecat RedisBus",
        "pipecat_network.py",
        ("asyncio",),
        W6_WORKLOADS,
        ("--impl=redis",),
        "pipecat",
    ),
    # The clients alone, no bus: their rate does not depend on the subscribers, so they run
    # once, with W6-single, and both W6 tables compare with them.
    ImplSpec(
        "raw-glide",
        "raw glide client",
        "network.py",
        BACKENDS,
        ("W6-single",),
        ("--impl=raw-glide",),
    ),
    ImplSpec(
        "raw-redis-py",
        "raw redis-py client",
        "pipecat_network.py",
        ("asyncio",),
        ("W6-single",),
        ("--impl=raw-redis-py",),
        "pipecat",
    ),
    ImplSpec("anybus-redis", "anybus RedisBus", "network.py", PAIRS, ("W7",), ("--impl=redis",)),
    ImplSpec(
        "anybus-stream", "anybus RedisStreamBus", "network.py", PAIRS, ("W7",), ("--impl=stream",)
    ),
    ImplSpec(
        "pipecat-redis",
        "pipecat RedisBus",
        "pipecat_network.py",
        ("asyncio+asyncio",),
        ("W7",),
        ("--impl=redis",),
        "pipecat",
    ),
)
LABELS = {spec.key: spec.label for spec in NETWORK_IMPLS}
#: Which raw client each implementation's messages go through.
RAW_CLIENT = {
    "anybus-redis": "raw-glide",
    "anybus-stream": "raw-glide",
    "pipecat-redis": "raw-redis-py",
}


class OutcomeLike(Protocol):
    """What this module reads of run.py's ``Outcome``: every run of one cell."""

    results: list[dict[str, object] | None]

    def values(self, field: str = "value") -> list[float]: ...

    def median(self, field: str = "value") -> float | None: ...

    def by_round(self, field: str = "value") -> list[float | None]: ...


Outcomes = Mapping[tuple[str, str, str], OutcomeLike]


# --- planning -------------------------------------------------------------------------------


def expand(workloads: Sequence[str]) -> list[str]:
    """The workload ids to run: ``W6`` stands for its two workloads."""
    expanded: list[str] = []
    for workload in workloads:
        expanded.extend(W6_WORKLOADS if workload == "W6" else [workload])
    return expanded


def worker_args(redis_url: str, w6_messages: int | None) -> dict[str, list[str]]:
    """The extra command-line arguments of the network workers, per workload."""
    common = [f"--redis-url={redis_url}"]
    w6 = common if w6_messages is None else [*common, f"--messages={w6_messages}"]
    return {**dict.fromkeys(W6_WORKLOADS, w6), "W7": common}


def redis_reachable(url: str) -> bool:
    """Whether a TCP connection to the Redis server of ``url`` opens."""
    try:
        with socket.create_connection(redis_address(url), timeout=2.0):
            return True
    except OSError:
        return False


def pipecat_network_ready(python: Path) -> bool:
    """Whether the pipecat venv can import pipecat's ``RedisBus`` (it needs redis-py)."""
    probe = subprocess.run(
        [str(python), "-c", "import pipecat.bus.network.redis"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def preflight(
    workloads: list[str], redis_url: str, pipecat_python: Path | None
) -> tuple[list[str], bool]:
    """Drop W6/W7 if there is no Redis server; say whether pipecat's RedisBus can run."""
    if not set(workloads) & set(NETWORK_WORKLOADS):
        return workloads, True
    if not redis_reachable(redis_url):
        print(
            f"W6/W7: no Redis server answers at {redis_url} (--redis-url): skipping them\n",
            file=sys.stderr,
        )
        return [w for w in workloads if w not in NETWORK_WORKLOADS], True
    if pipecat_python is not None and not pipecat_network_ready(pipecat_python):
        print(
            f"pipecat network reference: {pipecat_python} cannot import pipecat's RedisBus"
            " (it needs redis-py).\n  install it with:  bash benchmarks/setup_pipecat.sh\n"
            "  continuing W6/W7 without pipecat\n",
            file=sys.stderr,
        )
        return workloads, False
    return workloads, True


# --- formatting -----------------------------------------------------------------------------


def fmt_value(workload: str, value: float | None) -> str:
    """A cell's figure: deliveries/s (W6), the p50 round trip in ms (W7)."""
    if value is None:
        return "-"
    if workload == "W7":
        return f"{value:.3f} ms"
    return f"{value:,.0f}/s"


def _spread(workload: str, values: Sequence[float]) -> str:
    if not values:
        return "-"
    if workload == "W7":
        return f"{min(values):.3f} - {max(values):.3f}"
    return f"{min(values):,.0f} - {max(values):,.0f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _paired(numerator: OutcomeLike, denominator: OutcomeLike) -> list[float]:
    """Ratios of the runs of the same round (they ran seconds apart)."""
    return [
        a / b
        for a, b in zip(numerator.by_round(), denominator.by_round(), strict=True)
        if a is not None and b is not None and b != 0
    ]


def _failed(outcome: OutcomeLike) -> str:
    failed = sum(r is None for r in outcome.results)
    return f"  ({failed} failed)" if failed else ""


def _cells(workload: str, outcomes: Outcomes) -> list[tuple[str, str, OutcomeLike]]:
    """``(impl key, backend, outcome)`` of the workload's cells, in the table's order."""
    order = {spec.key: i for i, spec in enumerate(NETWORK_IMPLS)}
    cells = [
        (key, backend, outcome)
        for (key, backend, cell_workload), outcome in outcomes.items()
        if cell_workload == workload
    ]
    return sorted(cells, key=lambda cell: (order.get(cell[0], len(order)), cell[1]))


def print_section(workload: str, outcomes: Outcomes, w6_messages: int | None) -> None:
    """Print the heading and the table of a network workload."""
    if workload == "W7":
        print(
            f"W7 cross-process latency: ping-pong between two processes through Redis,"
            f" {W7_ROUND_TRIPS:,} round trips after\n   {W7_WARMUP} unmeasured; from just"
            " before send(ping) to the pinger's pong handler; backends: pinger+ponger;\n"
            "   'vs pipecat': pipecat's p50 / this p50 (above 1 = faster)"
        )
        _print_latency_table(outcomes)
        return
    messages, subscribers = W6_SIZES[workload]
    messages = w6_messages or messages
    base = "W1" if workload == "W6-fanout" else "W2"
    print(
        f"{workload} ({base} through Redis): {messages:,} data messages sent back to back to"
        f" {subscribers} subscriber{'s' if subscribers > 1 else ''}\n"
        "   on a second bus instance in the same process; deliveries/s; msgs/s: messages"
        " through Redis per second;\n"
        "   'vs pipecat': against pipecat RedisBus; 'of raw': msgs/s over the bare client's"
        " msgs/s (glide for anybus,\n"
        "   redis-py for pipecat; same backend; measured with W6-single); 'loop busy': CPU"
        " share of the event loop's thread"
    )
    _print_throughput_table(workload, outcomes)


def _print_throughput_table(workload: str, outcomes: Outcomes) -> None:
    pipecat = outcomes.get(("pipecat-redis", "asyncio", workload))
    print(
        f"  {'implementation':<22} {'backend':<8} {'deliveries/s':>12}  {'min - max':<17}"
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
        print(
            f"  {LABELS.get(key, key):<22} {backend:<8}"
            f" {fmt_value(workload, outcome.median()):>12}"
            f"  {_spread(workload, outcome.values()):<17}"
            f" {fmt_value(workload, rate):>7}"
            f" {_fmt_ratio(vs_pipecat):>10}"
            f" {'-' if of_raw is None else f'{of_raw:.0%}':>7}"
            f" {'-' if busy is None else f'{busy:.0%}':>9}"
            f" {'-' if size is None else f'{size:.0f}':>6}" + _failed(outcome)
        )


def _print_latency_table(outcomes: Outcomes) -> None:
    pipecat = outcomes.get(("pipecat-redis", "asyncio+asyncio", "W7"))
    pipecat_p50 = None if pipecat is None else pipecat.median("p50_ms")
    print(
        f"  {'implementation':<22} {'backends':<16} {'p50':>9} {'p99':>9}  {'p99 min - max':<14}"
        f" {'max (worst run)':>15} {'vs pipecat':>10}"
    )
    for key, backend, outcome in _cells("W7", outcomes):
        p50 = outcome.median("p50_ms")
        worst = max(outcome.values("max_ms"), default=None)
        vs_pipecat = None if key == "pipecat-redis" else _ratio(pipecat_p50, p50)
        print(
            f"  {LABELS.get(key, key):<22} {backend:<16} {fmt_value('W7', p50):>9}"
            f" {fmt_value('W7', outcome.median('p99_ms')):>9}"
            f"  {_spread('W7', outcome.values('p99_ms')):<14}"
            f" {fmt_value('W7', worst):>15} {_fmt_ratio(vs_pipecat):>10}" + _failed(outcome)
        )


# --- targets --------------------------------------------------------------------------------


def _verdict(
    name: str, ratio: float, paired: list[float], minimum: float, **fields: object
) -> dict[str, object]:
    held = sum(r >= minimum for r in paired)
    met = ratio >= minimum
    spread = f"per round {min(paired):.2f}x - {max(paired):.2f}x, " if paired else ""
    print(
        f"  {name:<50} {ratio:5.2f}x  ({spread}held in {held}/{len(paired)})"
        f"  {'MET' if met else 'MISSED'}"
    )
    return {
        "target": name,
        "minimum_ratio": minimum,
        "ratio_of_medians": ratio,
        "per_round_ratios": paired,
        "met": met,
        **fields,
    }


def check_targets(outcomes: Outcomes, workloads: Sequence[str]) -> list[dict[str, object]]:
    """W6's targets (WORKLOADS.md), on medians: anybus's RedisBus on asyncio at least 2x
    pipecat's RedisBus; anybus on trio within 20% of asyncio (RedisBus and RedisStreamBus).

    W7 has no target; its ratios are printed for reference.
    """
    verdicts: list[dict[str, object]] = []
    for workload in W6_WORKLOADS:
        if workload not in workloads:
            continue
        pipecat = outcomes.get(("pipecat-redis", "asyncio", workload))
        anybus = outcomes.get(("anybus-redis", "asyncio", workload))
        name = f"{workload} anybus RedisBus >= {W6_TARGET:g}x pipecat RedisBus"
        ratio = _ratio(
            None if anybus is None else anybus.median(),
            None if pipecat is None else pipecat.median(),
        )
        if anybus is None or pipecat is None or ratio is None:
            print(f"  {name:<50} not measured")
        else:
            verdicts.append(
                _verdict(
                    name,
                    ratio,
                    _paired(anybus, pipecat),
                    W6_TARGET,
                    workload=workload,
                    backend="asyncio",
                )
            )
        for key in ("anybus-redis", "anybus-stream"):
            on_trio = outcomes.get((key, "trio", workload))
            on_asyncio = outcomes.get((key, "asyncio", workload))
            name = f"{workload} {LABELS[key][7:]} trio >= {TRIO_TARGET:.0%} of asyncio"
            ratio = _ratio(
                None if on_trio is None else on_trio.median(),
                None if on_asyncio is None else on_asyncio.median(),
            )
            if on_trio is None or on_asyncio is None or ratio is None:
                print(f"  {name:<50} not measured")
                continue
            verdicts.append(
                _verdict(
                    name,
                    ratio,
                    _paired(on_trio, on_asyncio),
                    TRIO_TARGET,
                    workload=workload,
                    backend="trio",
                )
            )
        stream = outcomes.get(("anybus-stream", "asyncio", workload))
        ratio = _ratio(
            None if stream is None else stream.median(),
            None if pipecat is None else pipecat.median(),
        )
        if ratio is not None:
            print(
                f"  {'(no target) ' + workload + ' RedisStreamBus vs pipecat':<50} {ratio:5.2f}x"
                "  (durable streams against pub/sub)"
            )
    if "W7" in workloads:
        _print_latency_reference(outcomes)
    return verdicts


def _print_latency_reference(outcomes: Outcomes) -> None:
    """W7 has no target: print anybus RedisBus's p50 with a trio peer against pipecat's."""
    pipecat = outcomes.get(("pipecat-redis", "asyncio+asyncio", "W7"))
    pipecat_p50 = None if pipecat is None else pipecat.median("p50_ms")
    for backend in ("asyncio+trio", "trio+asyncio"):
        anybus = outcomes.get(("anybus-redis", backend, "W7"))
        p50 = None if anybus is None else anybus.median("p50_ms")
        if p50 is None or pipecat_p50 is None:
            continue
        print(
            f"  {'(no target) W7 anybus RedisBus ' + backend + ' p50':<50} {p50:.3f} ms"
            f" vs pipecat RedisBus asyncio+asyncio {pipecat_p50:.3f} ms"
        )
