"""What W8's workers share: the sizes, the schema of a run, the command line, the result lines.

W8 is W6 and W7 on :class:`~anybus.postgres.PostgresBus`, beside the bare floor (plain
psycopg, no anybus): see ``postgres_w8.py``, which runs both, and ``docs/benchmarks.md``.
Every run works in a Postgres schema of its own (``w8_`` and 12 hex digits), which the worker
creates and drops, and the harness drops again in case a worker died.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anybus._bench._common import Result
from anybus._bench._network_common import (
    READY_LINE,
    READY_TIMEOUT,
    ROUND_TRIP_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    backend_pair,
    network_throughput_result,
    round_trip_result,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_DSN",
    "FETCH_BATCH",
    "PAIRS",
    "READY_LINE",
    "READY_TIMEOUT",
    "ROUND_TRIP_TIMEOUT",
    "STALL_TIMEOUT",
    "THROUGHPUT",
    "W8_QUICK",
    "W8_ROUND_TRIPS",
    "W8_WARMUP",
    "WORKLOADS",
    "CpuClock",
    "Result",
    "backend_pair",
    "drop_schema",
    "latency_result",
    "network_throughput_result",
    "new_schema",
    "worker_args",
]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("asyncio", "trio")
PAIRS = tuple(f"{a}+{b}" for a in BACKENDS for b in BACKENDS)

#: W8's throughput workloads, W6's through Postgres: workload -> (data messages sent,
#: subscribers on the receiving side). The sizes of W6 (20,000 x 10 and 10,000 x 1).
THROUGHPUT = {"W8-fanout": (20_000, 10), "W8-single": (10_000, 1)}
#: W8-latency (W7 through Postgres): round trips measured, after this many unmeasured.
W8_ROUND_TRIPS = 1_000
W8_WARMUP = 100
WORKLOADS = (*THROUGHPUT, "W8-latency")
#: The quick sizes, for smoke runs: (fan-out messages, single messages, round trips, warm-up).
W8_QUICK = (200, 200, 20, 5)

#: The floor fetches (and deletes) up to this many messages a statement: anybus's
#: ``read_batch`` default.
FETCH_BATCH = 100


def new_schema() -> str:
    """A schema name no other run uses (the server is shared). Short: anybus's notification
    channel is the schema's name and a 32-digit hash, and a channel has at most 63 bytes."""
    return f"w8_{secrets.token_hex(6)}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def latency_result(impl: str, backend: str, samples: Sequence[float], **extra: object) -> Result:
    """The result line of a W8-latency run (``value``: the p50 in ms)."""
    result = round_trip_result(impl, backend, samples, warmup=0, mismatched=0)
    result.update(workload="W8-latency", **extra)
    return result


def worker_args(description: str, backends: Sequence[str]) -> argparse.Namespace:
    """The command line of a W8 worker.

    ``--workload W8-fanout|W8-single|W8-latency --schema S [--dsn DSN] [--backend B]
    [--messages N] [--subscribers N] [--round-trips N] [--warmup N] [--payload-bytes N]``;
    ``--role ponger`` is how a W8-latency pinger starts its peer (on its schema).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--schema", required=True, help="the run's own schema (new_schema())")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", default=backends[0], choices=list(backends))
    parser.add_argument("--messages", type=int, help="throughput: data messages to send")
    parser.add_argument("--subscribers", type=int, help="throughput: subscribers")
    parser.add_argument("--round-trips", type=int, default=W8_ROUND_TRIPS)
    parser.add_argument("--warmup", type=int, default=W8_WARMUP)
    parser.add_argument("--payload-bytes", type=int, default=166, help="the floor's payloads")
    parser.add_argument("--role", default="pinger", choices=["pinger", "ponger"])
    parser.add_argument(
        "--durability", default="stored", choices=["stored", "queued"], help="anybus's sends"
    )
    parser.add_argument(
        "--no-carry-messages",
        action="store_true",
        help="anybus: PostgresBus(carry_messages=False) (the default carries)",
    )
    args = parser.parse_args()
    if args.workload in THROUGHPUT:
        messages, subscribers = THROUGHPUT[args.workload]
        args.messages = args.messages or messages
        args.subscribers = args.subscribers or subscribers
    for option in ("messages", "subscribers", "round_trips", "payload_bytes"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, not {value!r}")
    if args.warmup < 0:
        parser.error(f"--warmup cannot be negative, not {args.warmup!r}")
    return args
