"""What every benchmark worker shares: workload sizes, the delivery tally, the result line.

The sizes are those of the workloads defined in ``docs/benchmarks.md``. Standard library only:
the reference workers of the repository's ``benchmarks/`` run in a virtual environment of their
own, where anybus and anyio are not installed, and import this module by path, as a top-level
module from this directory (so do ``_rss.py`` and ``_network_common.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter

__all__ = [
    "W1_MESSAGES",
    "W1_SUBSCRIBERS",
    "W2_MESSAGES",
    "W2_SUBSCRIBERS",
    "W3_HANDLER_SLEEP",
    "W3_QUEUED",
    "W3_REPETITIONS",
    "W4_BLOCK_WINDOW",
    "W4_HANDLER_SLEEP",
    "W4_MAX_BUFFER",
    "W4_MESSAGES",
    "W4_POLICIES",
    "W5_CYCLES",
    "W5_MESSAGES_PER_CYCLE",
    "W5_RESTARTS",
    "FULL",
    "QUICK",
    "SUBSCRIBERS",
    "THROUGHPUT_SIZES",
    "YIELD_INTERVAL",
    "Result",
    "Sizes",
    "Tally",
    "churn_result",
    "emit",
    "gc_objects",
    "latency_result",
    "percentile",
    "slow_subscriber_result",
    "throughput_result",
    "worker_args",
]

#: W1 fan-out: data messages sent back to back, and the number of subscribers.
W1_MESSAGES = 20_000
W1_SUBSCRIBERS = 10
#: W2 single: data messages, one subscriber.
W2_MESSAGES = 100_000
W2_SUBSCRIBERS = 1
#: W3 priority latency: data messages queued before each system message, how long the data
#: handler sleeps per message (seconds), and how many system messages are measured.
W3_QUEUED = 1_000
W3_HANDLER_SLEEP = 0.0005
W3_REPETITIONS = 200
#: W4 slow-subscriber memory: data messages sent, how long the one subscriber's data handler
#: sleeps per message (seconds: it handles about one message per millisecond), the bound on
#: anybus's inbox, the overflow policies measured, and how long (seconds) the publisher runs
#: under ``block``, where it can only go at the subscriber's pace (1,000,000 messages would
#: take some 17 minutes).
W4_MESSAGES = 1_000_000
W4_HANDLER_SLEEP = 0.001
W4_MAX_BUFFER = 1_000
W4_POLICIES = ("drop_oldest", "drop_newest", "block")
W4_BLOCK_WINDOW = 3.0
#: W5 churn: subscribe -> send -> wait until handled -> unsubscribe cycles, the data messages
#: sent in each, and the bus stop/start cycles that follow.
W5_CYCLES = 1_000
W5_MESSAGES_PER_CYCLE = 10
W5_RESTARTS = 100
#: The raw-primitive producer and consumers yield to the scheduler once every this many
#: messages (anybus's ``send()`` and its workers do the same).
YIELD_INTERVAL = 64

THROUGHPUT_SIZES = {
    "W1": (W1_MESSAGES, W1_SUBSCRIBERS),
    "W2": (W2_MESSAGES, W2_SUBSCRIBERS),
}


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: ``FULL`` (the sizes of ``docs/benchmarks.md``) or ``QUICK``.

    ``QUICK`` is for smoke runs (tests, ``anybus bench --quick``): every workload takes a
    fraction of a second, and its figures are not the ones the targets speak of.
    """

    w1_messages: int = W1_MESSAGES
    w2_messages: int = W2_MESSAGES
    w3_repetitions: int = W3_REPETITIONS
    w4_messages: int = W4_MESSAGES
    w4_block_window: float = W4_BLOCK_WINDOW
    w5_cycles: int = W5_CYCLES
    w5_restarts: int = W5_RESTARTS
    #: W6 (W1 and W2 through Redis; see ``_network_common.W6_SIZES``) and W7.
    w6_fanout_messages: int = 20_000
    w6_single_messages: int = 10_000
    w7_round_trips: int = 1_000
    w7_warmup: int = 100

    def messages(self, workload: str) -> int:
        """The data messages a throughput workload (W1, W2, W4, W6-*) sends."""
        return {
            "W1": self.w1_messages,
            "W2": self.w2_messages,
            "W4": self.w4_messages,
            "W6-fanout": self.w6_fanout_messages,
            "W6-single": self.w6_single_messages,
        }[workload]


FULL = Sizes()
QUICK = Sizes(
    w1_messages=2_000,
    w2_messages=10_000,
    w3_repetitions=20,
    w4_messages=20_000,
    w4_block_window=0.3,
    w5_cycles=50,
    w5_restarts=10,
    w6_fanout_messages=500,
    w6_single_messages=500,
    w7_round_trips=50,
    w7_warmup=10,
)
#: The subscribers of each throughput workload, unless a run asks for another number.
SUBSCRIBERS = {"W1": W1_SUBSCRIBERS, "W2": W2_SUBSCRIBERS, "W6-fanout": 10, "W6-single": 1}


#: One JSON object, printed as one line by every worker.
Result = dict[str, object]


class Tally:
    """Counts deliveries; on the last one it notes the time and calls ``on_done``.

    This is the whole work of a trivial handler: count, and signal on the last message.
    """

    __slots__ = ("finished_at", "on_done", "remaining")

    def __init__(self, expected: int, on_done: Callable[[], object]) -> None:
        self.remaining = expected
        self.on_done = on_done
        self.finished_at = math.nan

    def hit(self) -> None:
        """Count one delivery."""
        self.remaining -= 1
        if not self.remaining:
            self.finished_at = perf_counter()
            self.on_done()


def gc_objects() -> int:
    """Collect garbage, then count the objects the garbage collector tracks."""
    gc.collect()
    return len(gc.get_objects())


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the nearest-rank ``q``-th percentile (0 < q <= 100) of ``samples``."""
    if not samples:
        raise ValueError("samples cannot be empty")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def throughput_result(
    impl: str, backend: str, workload: str, *, messages: int, subscribers: int, seconds: float
) -> Result:
    """Build the result line of a W1/W2 run."""
    deliveries = messages * subscribers
    return {
        "impl": impl,
        "backend": backend,
        "workload": workload,
        "metric": "deliveries_per_s",
        "value": deliveries / seconds,
        "seconds": seconds,
        "messages": messages,
        "subscribers": subscribers,
        "deliveries": deliveries,
    }


def latency_result(impl: str, backend: str, workload: str, samples: Sequence[float]) -> Result:
    """Build the result line of a W3 run from its latencies, in seconds."""
    p50 = percentile(samples, 50) * 1e3
    p99 = percentile(samples, 99) * 1e3
    return {
        "impl": impl,
        "backend": backend,
        "workload": workload,
        "metric": "p99_ms",
        "value": p99,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max(samples) * 1e3,
        "mean_ms": sum(samples) / len(samples) * 1e3,
        "repetitions": len(samples),
        "queued": W3_QUEUED,
        "handler_sleep_ms": W3_HANDLER_SLEEP * 1e3,
    }


def slow_subscriber_result(
    impl: str,
    backend: str,
    *,
    policy: str,
    max_buffer: int | None,
    sent: int,
    seconds: float,
    in_send_seconds: float | None,
    handled: int,
    dropped: int | None,
    queued: int,
    high_water_mark: int | None,
    memory: dict[str, object],
) -> Result:
    """Build the result line of a W4 run; ``value`` is the peak RSS growth in MB."""
    return {
        "impl": impl,
        "backend": backend,
        "workload": "W4",
        "metric": "rss_peak_growth_mb",
        "value": memory["rss_peak_growth_mb"],
        "policy": policy,
        "max_buffer": max_buffer,
        "sent": sent,
        "publisher_seconds": seconds,
        "sent_per_s": sent / seconds,
        "in_send_seconds": in_send_seconds,
        "in_send_fraction": None if in_send_seconds is None else in_send_seconds / seconds,
        "handled": handled,
        "handled_per_s": handled / seconds,
        "dropped": dropped,
        "queued": queued,
        # Every message sent is handled (or being handled), dropped or still queued.
        "unaccounted": sent - handled - (dropped or 0) - queued,
        "high_water_mark": high_water_mark,
        "handler_sleep_ms": W4_HANDLER_SLEEP * 1e3,
        **memory,
    }


def churn_result(
    impl: str,
    backend: str,
    *,
    cycles: int,
    restarts: int,
    cycles_seconds: float,
    restarts_seconds: float,
    tasks: dict[str, int],
    objects_growth: int,
    subscribers_alive: int,
    memory: dict[str, object],
) -> Result:
    """Build the result line of a W5 run; ``value`` is the wall time in seconds."""
    return {
        "impl": impl,
        "backend": backend,
        "workload": "W5",
        "metric": "seconds",
        "value": cycles_seconds + restarts_seconds,
        "cycles": cycles,
        "messages_per_cycle": W5_MESSAGES_PER_CYCLE,
        "restarts": restarts,
        "cycles_seconds": cycles_seconds,
        "restarts_seconds": restarts_seconds,
        **{f"tasks_{when}": count for when, count in tasks.items()},
        "tasks_back_to_baseline": (
            tasks["after_cycles"] == tasks["open"] and tasks["closed"] == tasks["before"]
        ),
        "objects_growth": objects_growth,
        "subscribers_alive": subscribers_alive,
        **memory,
    }


def emit(result: Result) -> None:
    """Write ``result`` as the worker's one JSON line on stdout."""
    result["python"] = platform.python_version()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def worker_args(
    description: str,
    *,
    workloads: Sequence[str],
    backends: Sequence[str],
    policies: Sequence[str] = (),
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a worker's command line: ``--workload W1 --backend asyncio [--quick]``.

    ``--quick`` measures the ``QUICK`` sizes; ``--messages N`` sets the data messages of W1,
    W2 and W4, ``--subscribers N`` the subscribers of W1 and W2; W4 also takes ``--policy``
    if ``policies`` are given. ``args.sizes`` is the :class:`Sizes` to measure.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=list(workloads))
    parser.add_argument("--backend", default=backends[0], choices=list(backends))
    parser.add_argument("--quick", action="store_true", help="the QUICK sizes (smoke runs)")
    parser.add_argument("--messages", type=int, help="W1, W2, W4: data messages to send")
    parser.add_argument("--subscribers", type=int, help="W1, W2: subscribers")
    if policies:
        parser.add_argument(
            "--policy",
            default=policies[0],
            choices=list(policies),
            help=f"W4: overflow policy of the bounded inbox (default: {policies[0]})",
        )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for option in ("messages", "subscribers"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1, not {value!r}")
    args.sizes = QUICK if args.quick else FULL
    if args.workload in ("W1", "W2", "W4"):
        args.messages = args.messages or args.sizes.messages(args.workload)
    if args.workload in SUBSCRIBERS:
        args.subscribers = args.subscribers or SUBSCRIBERS[args.workload]
    return args
