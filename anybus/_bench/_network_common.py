"""What the network workers share (W6, W7): sizes, key names, the command line, results.

Standard library only, like ``_common.py``: the repository's reference network worker imports it
by path from its own virtual environment, where anybus and anyio are not installed.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from time import perf_counter

try:
    from ._common import FULL, QUICK, Result, percentile, throughput_result
except ImportError:  # imported by path (a reference worker): this directory is on sys.path
    from _common import (  # type: ignore[import-not-found,no-redef]
        FULL,
        QUICK,
        Result,
        percentile,
        throughput_result,
    )

__all__ = [
    "DEFAULT_REDIS_URL",
    "STALL_TIMEOUT",
    "W6_SIZES",
    "PING_TARGET",
    "PONG_TARGET",
    "RAW_PAYLOAD_BYTES",
    "READY_LINE",
    "READY_TIMEOUT",
    "ROUND_TRIP_TIMEOUT",
    "STOP_TARGET",
    "W6_IDS",
    "W7_ROUND_TRIPS",
    "W7_WARMUP",
    "CpuClock",
    "backend_pair",
    "network_args",
    "network_throughput_result",
    "redis_address",
    "round_trip_result",
    "unique_key",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

#: W6's two workloads, W1 and W2 through Redis: workload id -> (data messages sent,
#: subscribers on the receiving bus). W1's 20,000 messages x 10 subscribers as they are; W2's
#: 100,000 messages scaled down to 10,000 (a bus that awaits one Redis round trip per send goes
#: at 2,000-4,000 messages a second here, so 100,000 would take 25-50 s a run).
W6_SIZES = {
    "W6-fanout": (FULL.w6_fanout_messages, 10),
    "W6-single": (FULL.w6_single_messages, 1),
}
W6_IDS = tuple(W6_SIZES)
#: The raw-client ceiling publishes payloads of this many bytes (an anybus data message is
#: about 150 bytes on the wire with the JSON serializer).
RAW_PAYLOAD_BYTES = 128

#: W7: round trips measured, after this many unmeasured ones.
W7_ROUND_TRIPS = FULL.w7_round_trips
W7_WARMUP = FULL.w7_warmup
#: W7's messages are plain data messages told apart by their target: the pinger sends pings to
#: ``PING_TARGET``; the ponger answers each with a pong to ``PONG_TARGET`` whose ``source`` is
#: the ping's id, and ends when it gets a message to ``STOP_TARGET``.
PING_TARGET = "w7-ponger"
PONG_TARGET = "w7-pinger"
STOP_TARGET = "w7-stop"
#: The line the ponger prints once its bus is up and subscribed.
READY_LINE = "ready"

#: Seconds to wait for the ponger to be ready, for one round trip, and, in a W6 run, for the
#: next delivery: a run where none arrives for that long lost messages, and fails instead of
#: measuring. (Nothing waits on these otherwise; they only bound a wait that would hang.)
READY_TIMEOUT = 30.0
ROUND_TRIP_TIMEOUT = 10.0
STALL_TIMEOUT = 5.0


def unique_key(workload: str) -> str:
    """A channel or stream name no other run uses (the Redis server is shared)."""
    return f"anybus-bench:{workload}:{uuid.uuid4().hex}"


def redis_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``redis://`` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def backend_pair(backend: str) -> tuple[str, str]:
    """W7's backend cell ``"asyncio+trio"``: the pinger's backend, then the ponger's."""
    pinger, _, ponger = backend.partition("+")
    return pinger, ponger or pinger


class CpuClock:
    """CPU time over the measurement: the whole process (every thread, the Redis client's own
    included) and the main thread, where the event loop runs."""

    def __init__(self) -> None:
        self._wall = self._process = self._thread = 0.0

    def start(self) -> None:
        self._process = time.process_time()
        self._thread = time.thread_time()
        self._wall = perf_counter()

    def stop(self) -> dict[str, object]:
        wall = perf_counter() - self._wall
        thread = time.thread_time() - self._thread
        return {
            "cpu_process_s": time.process_time() - self._process,
            "cpu_loop_thread_s": thread,
            # The share of the wall time the event loop's thread spent on the CPU: near 1, the
            # run is bound by Python work; well below 1, it mostly waits (on Redis's replies).
            "loop_thread_busy": thread / wall if wall > 0 else None,
        }


def network_throughput_result(
    impl: str,
    backend: str,
    workload: str,
    *,
    messages: int,
    subscribers: int,
    seconds: float,
    send_seconds: float,
    payload_bytes: int,
    cpu: dict[str, object],
    extra: dict[str, object] | None = None,
) -> Result:
    """Build the result line of a W6 run (``value``: deliveries per second)."""
    result = throughput_result(
        impl, backend, workload, messages=messages, subscribers=subscribers, seconds=seconds
    )
    result.update(
        {
            "messages_per_s": messages / seconds,
            "send_seconds": send_seconds,
            "payload_bytes": payload_bytes,
            **cpu,
            **(extra or {}),
        }
    )
    return result


def round_trip_result(
    impl: str,
    backend: str,
    samples: Sequence[float],
    *,
    warmup: int,
    mismatched: int,
    extra: dict[str, object] | None = None,
) -> Result:
    """Build the result line of a W7 run from its round trips, in seconds (``value``: p50)."""
    p50 = percentile(samples, 50) * 1e3
    return {
        "impl": impl,
        "backend": backend,
        "workload": "W7",
        "metric": "round_trip_p50_ms",
        "value": p50,
        "p50_ms": p50,
        "p90_ms": percentile(samples, 90) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "max_ms": max(samples) * 1e3,
        "mean_ms": sum(samples) / len(samples) * 1e3,
        "round_trips": len(samples),
        "warmup": warmup,
        "mismatched": mismatched,
        **(extra or {}),
    }


def network_args(
    description: str,
    *,
    impls: Sequence[str],
    backends: Sequence[str],
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a network worker's command line.

    ``--workload W6-fanout|W6-single|W7 --impl IMPL --backend B [--redis-url URL] [--quick]
    [--messages N] [--subscribers N]``; for W7 ``--backend`` is the pair ``pinger+ponger``
    (``asyncio+trio``). ``--role ponger --channel KEY`` is how a W7 pinger starts its peer.
    ``args.sizes`` is the :class:`Sizes` to measure; ``args.messages`` and
    ``args.subscribers`` are set for W6.
    """
    pairs = [f"{a}+{b}" for a in backends for b in backends]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=[*W6_IDS, "W7"])
    parser.add_argument("--impl", default=impls[0], choices=list(impls))
    parser.add_argument("--backend", default=backends[0], choices=[*backends, *pairs])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--quick", action="store_true", help="the QUICK sizes (smoke runs)")
    parser.add_argument("--messages", type=int, help="W6: data messages to send")
    parser.add_argument("--subscribers", type=int, help="W6: subscribers on the receiving bus")
    parser.add_argument("--role", default="pinger", choices=["pinger", "ponger"], help="W7")
    parser.add_argument("--channel", help="W7 ponger: the channel or stream of its pinger")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for option in ("messages", "subscribers"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1, not {value!r}")
    if args.role == "ponger" and not args.channel:
        parser.error("--role ponger needs --channel")
    if args.workload != "W7" and "+" in args.backend:
        parser.error(f"{args.workload} runs on one backend, not {args.backend!r}")
    args.sizes = QUICK if args.quick else FULL
    if args.workload in W6_SIZES:
        args.messages = args.messages or args.sizes.messages(args.workload)
        args.subscribers = args.subscribers or W6_SIZES[args.workload][1]
    return args
