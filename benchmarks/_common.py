"""What every benchmark worker shares: workload sizes, the delivery tally, the result line.

Standard library only: the pipecat reference imports this module from its own virtual
environment, where anybus and anyio are not guaranteed to be installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
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
    "YIELD_INTERVAL",
    "PeakRss",
    "Result",
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


def _proc_status_kb(*fields: str) -> dict[str, int] | None:
    """Read ``fields`` (``VmRSS``, ``VmHWM``; kB) of ``/proc/self/status``, or ``None``."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            found[key] = int(value.split()[0])
    return found if len(found) == len(fields) else None


def _ru_maxrss_kb() -> int:
    """The process's lifetime peak RSS from ``getrusage`` (kB; macOS reports bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class PeakRss:
    """The growth of the process's resident set size over a window: peak and at the end.

    ``start()`` takes the baseline right before the clock; ``stop()`` reads the peak since.
    The peak is the kernel's own high-water mark, not a sample, so no short spike is missed
    and nothing has to run during the measurement (pipecat's ``send()`` never yields to the
    event loop, so an in-loop sampler would not run at all while its publisher does):

    * ``vmhwm`` (Linux): ``start()`` resets the high-water mark to the current RSS by writing
      ``5`` to ``/proc/self/clear_refs`` and reads it back (``VmHWM``) as the baseline;
      ``stop()`` reads ``VmHWM`` again, the highest RSS since the reset. ``ru_maxrss`` reads
      the same kernel counter (and is reset with it). The kernel's RSS counters are per-CPU
      and approximate: ``VmRSS`` and ``VmHWM`` read at the same moment can differ by a few
      dozen pages, so growths below ~0.3 MB are noise; reading both ends from ``VmHWM``
      keeps the same counter on both sides. The kernel moves the mark up before any path
      that unmaps or discards pages (``munmap``, ``madvise``, ``brk``), so a peak that is
      freed again before ``stop()`` still counts.
    * ``ru_maxrss`` (elsewhere, or if the reset is refused): the growth of the lifetime peak,
      ``ru_maxrss`` at the end minus ``ru_maxrss`` at the start. That is exact when the
      process's earlier peak was its RSS at the start (true of a fresh worker process, whose
      RSS only grew while it imported and set up), and a lower bound otherwise.
    """

    def __init__(self) -> None:
        self.method = "ru_maxrss"
        self.before_kb = 0

    def start(self) -> None:
        """Take the baseline (call it last, right before the clock starts)."""
        status = _proc_status_kb("VmRSS", "VmHWM") if _reset_peak_rss() else None
        if status is not None:
            self.method = "vmhwm"
            self.before_kb = status["VmHWM"]
        else:
            self.method = "ru_maxrss"
            self.before_kb = _ru_maxrss_kb()

    def stop(self) -> dict[str, object]:
        """Read the peak since :meth:`start` and the current RSS, in MB (10^6 bytes)."""
        status = _proc_status_kb("VmRSS", "VmHWM")
        peak_kb = status["VmHWM"] if self.method == "vmhwm" and status else _ru_maxrss_kb()
        now_kb = status["VmRSS"] if status else peak_kb
        return {
            "rss_method": self.method,
            "rss_before_mb": self.before_kb * 1024 / 1e6,
            "rss_peak_mb": peak_kb * 1024 / 1e6,
            "rss_end_mb": now_kb * 1024 / 1e6,
            "rss_peak_growth_mb": (peak_kb - self.before_kb) * 1024 / 1e6,
            "rss_end_growth_mb": (now_kb - self.before_kb) * 1024 / 1e6,
        }


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
        "cycles": W5_CYCLES,
        "messages_per_cycle": W5_MESSAGES_PER_CYCLE,
        "restarts": W5_RESTARTS,
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
    """Print ``result`` as the worker's one JSON line on stdout."""
    result["python"] = platform.python_version()
    print(json.dumps(result), flush=True)


def worker_args(
    description: str,
    *,
    workloads: Sequence[str],
    backends: Sequence[str],
    policies: Sequence[str] = (),
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a worker's command line: ``--workload W1 --backend asyncio``.

    W4 also takes ``--messages N`` (default 1,000,000) and, if ``policies`` are given,
    ``--policy``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=list(workloads))
    parser.add_argument("--backend", default=backends[0], choices=list(backends))
    parser.add_argument(
        "--messages",
        type=int,
        default=W4_MESSAGES,
        help=f"W4: data messages to send (default: {W4_MESSAGES:,})",
    )
    if policies:
        parser.add_argument(
            "--policy",
            default=policies[0],
            choices=list(policies),
            help=f"W4: overflow policy of the bounded inbox (default: {policies[0]})",
        )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.messages < 1:
        parser.error(f"--messages must be at least 1, not {args.messages!r}")
    return args
