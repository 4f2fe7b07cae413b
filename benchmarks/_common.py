"""What every benchmark worker shares: workload sizes, the delivery tally, the result line.

Standard library only: the pipecat reference imports this module from its own virtual
environment, where anybus and anyio are not guaranteed to be installed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Callable, Sequence
from time import perf_counter

__all__ = [
    "W1_MESSAGES",
    "W1_SUBSCRIBERS",
    "W2_MESSAGES",
    "W2_SUBSCRIBERS",
    "W3_HANDLER_SLEEP",
    "W3_QUEUED",
    "W3_REPETITIONS",
    "YIELD_INTERVAL",
    "Result",
    "Tally",
    "emit",
    "latency_result",
    "percentile",
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
#: The raw-primitive producer and consumers yield to the scheduler once every this many
#: messages (anybus's ``send()`` and its workers do the same).
YIELD_INTERVAL = 64

THROUGHPUT_SIZES = {
    "W1": (W1_MESSAGES, W1_SUBSCRIBERS),
    "W2": (W2_MESSAGES, W2_SUBSCRIBERS),
}

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


def emit(result: Result) -> None:
    """Print ``result`` as the worker's one JSON line on stdout."""
    result["python"] = platform.python_version()
    print(json.dumps(result), flush=True)


def worker_args(
    description: str,
    *,
    workloads: Sequence[str],
    backends: Sequence[str],
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a worker's command line: ``--workload W1 --backend asyncio``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=list(workloads))
    parser.add_argument("--backend", default=backends[0], choices=list(backends))
    return parser.parse_args(sys.argv[1:] if argv is None else argv)
