"""W8's floor: the same work as PostgresBus, written directly on psycopg 3, no anybus.

Usage::

    python benchmarks/pg_floor.py --workload W8-single --schema w8_0123456789ab
    python benchmarks/pg_floor.py --workload W8-latency --schema w8_0123456789ab

Plain blocking code on psycopg's sync API (the fastest honest floor: no event loop, no
thread hop per statement), each connection in autocommit mode, statements in binary format:

* a **queue** is a table ``(id bigint identity primary key, body bytea)`` and a notification
  channel; **sending** is one statement, one transaction: insert the message and
  ``pg_notify`` the channel (``WITH m AS (INSERT ... RETURNING id) SELECT pg_notify(...)``);
  the sending connection commits durably (``synchronous_commit`` on), as anybus's writer does.
* **receiving**: a connection that ``LISTEN``s on the channel, waits for a notification
  (``Connection.notifies()``), then fetches and deletes what is queued, oldest first, up to
  ``FETCH_BATCH`` messages a statement (``DELETE ... WHERE id IN (SELECT ... ORDER BY id
  LIMIT n) RETURNING id, body``), until less than a batch comes back. It commits with
  ``synchronous_commit=off``, as anybus's reader acknowledges.

W8-fanout / W8-single: in one process, as W6 runs two buses in one: a receiver thread (its
connection, calling every subscriber's trivial handler for each message) and the sender on
the main thread, sending back to back. W8-latency: two processes (this script again, as
``--role ponger``), each with a sending and a receiving connection, one queue each way.
Prints one JSON result line, of the shape of anybus's W6 and W7 workers.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

import psycopg
from pg_common import (
    FETCH_BATCH,
    READY_LINE,
    READY_TIMEOUT,
    ROUND_TRIP_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    Result,
    drop_schema,
    latency_result,
    network_throughput_result,
    worker_args,
)
from psycopg import sql

from anybus._bench._common import Tally, emit

IMPL = "floor"
#: W8-latency's payloads: a kind byte (ping, pong, stop), the round trip's number, padding.
PING, PONG, STOP = b"i", b"o", b"s"
#: Seconds a ponger waits for the next ping before it gives up (its pinger died).
PONGER_TIMEOUT = 60.0

Conn = psycopg.Connection[Any]


class Queue:
    """One queue of the run's schema: its table, its channel, and the two statements."""

    def __init__(self, schema: str, name: str) -> None:
        table = sql.Identifier(schema, name)
        self.channel = f"{schema}_{name}"
        self.create = sql.SQL(
            "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " body bytea NOT NULL)"
        ).format(table)
        self.send_query = sql.SQL(
            "WITH m AS (INSERT INTO {} (body) VALUES (%s) RETURNING id)"
            " SELECT pg_notify({}, '') FROM m"
        ).format(table, sql.Literal(self.channel))
        self.take_query = sql.SQL(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} ORDER BY id LIMIT {n})"
            " RETURNING id, body"
        ).format(t=table, n=sql.Literal(FETCH_BATCH))

    def send(self, conn: Conn, body: bytes) -> None:
        """Store ``body`` and notify, in one statement (one transaction, one round trip)."""
        conn.execute(self.send_query, (body,), binary=True)

    def listen(self, conn: Conn) -> None:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    def take(self, conn: Conn) -> list[bytes]:
        """Fetch and delete up to a batch, oldest first."""
        rows = conn.execute(self.take_query, binary=True).fetchall()
        rows.sort()
        return [body for _, body in rows]

    def receive(
        self, conn: Conn, handle: Callable[[bytes], object], timeout: float | None = None
    ) -> int:
        """Wait for a notification (for ``timeout`` seconds at most), then take and handle
        everything queued; return how many messages were handled."""
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass
        handled = 0
        while True:
            bodies = self.take(conn)
            for body in bodies:
                handle(body)
            handled += len(bodies)
            if len(bodies) < FETCH_BATCH:
                return handled


def connect(dsn: str, *, durable: bool) -> Conn:
    options = "" if durable else "-c synchronous_commit=off"
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10, options=options)


def create(dsn: str, schema: str, *queues: Queue) -> None:
    with connect(dsn, durable=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for queue in queues:
            conn.execute(queue.create)


def payload(kind: bytes, number: int, size: int) -> bytes:
    head = kind + number.to_bytes(8, "big")
    return head + b"\0" * max(0, size - len(head))


# --- W8-fanout, W8-single -----------------------------------------------------------------


def throughput(
    dsn: str, schema: str, workload: str, n: int, subscribers: int, size: int
) -> Result:
    """Send ``n`` messages back to back; the receiver thread calls ``subscribers`` handlers
    per message. Time from just before the first send to the last delivery (after a primer
    message went through)."""
    queue = Queue(schema, "queue")
    create(dsn, schema, queue)
    bodies = [payload(PING, i, size) for i in range(n)]
    tally = Tally(subscribers, lambda: None)
    handlers = [tally.hit] * subscribers
    listening = threading.Event()
    done = threading.Event()
    stopping = threading.Event()
    failure: list[BaseException] = []

    def deliver(_: bytes) -> None:
        for handler in handlers:
            handler()

    def receiver() -> None:
        try:
            with connect(dsn, durable=False) as conn:
                queue.listen(conn)
                listening.set()
                while not stopping.is_set():
                    queue.receive(conn, deliver)
        except BaseException as exc:
            failure.append(exc)
            listening.set()

    thread = threading.Thread(target=receiver, name="floor receiver", daemon=True)
    thread.start()
    with connect(dsn, durable=True) as conn:
        if not listening.wait(READY_TIMEOUT) or failure:
            raise RuntimeError(f"the receiver did not start: {failure}")
        tally.on_done = done.set
        queue.send(conn, payload(PONG, 0, size))  # the primer
        wait_done(done, tally, failure)
        done.clear()
        tally.remaining = n * subscribers
        gc.collect()

        cpu = CpuClock()
        cpu.start()
        started_at = perf_counter()
        for body in bodies:
            queue.send(conn, body)
        sent_at = perf_counter()
        wait_done(done, tally, failure)
        cpu_used = cpu.stop()
        stopping.set()
        queue.send(conn, payload(STOP, 0, size))  # wakes the receiver, which ends
    thread.join(READY_TIMEOUT)
    return network_throughput_result(
        IMPL,
        "sync",
        workload,
        messages=n,
        subscribers=subscribers,
        seconds=tally.finished_at - started_at,
        send_seconds=sent_at - started_at,
        payload_bytes=size,
        cpu=cpu_used,
    )


def wait_done(done: threading.Event, tally: Tally, failure: list[BaseException]) -> None:
    """Wait until every delivery arrived; fail if none arrives for ``STALL_TIMEOUT``."""
    while True:
        remaining = tally.remaining
        if done.wait(STALL_TIMEOUT):
            return
        if failure or tally.remaining == remaining:
            raise RuntimeError(
                f"{tally.remaining:,} deliveries still missing, none for {STALL_TIMEOUT:g} s"
                f" (receiver: {failure or 'running'})"
            )


# --- W8-latency ---------------------------------------------------------------------------


def pinger(dsn: str, schema: str, round_trips: int, warmup: int, size: int) -> Result:
    """Ping-pong with the ponger process: each sample runs from just before the ping is
    sent to the moment the pinger has fetched its pong."""
    to_ponger, to_pinger = Queue(schema, "to_ponger"), Queue(schema, "to_pinger")
    create(dsn, schema, to_ponger, to_pinger)
    command = [sys.executable, __file__, "--workload=W8-latency", "--role=ponger"]
    command += [f"--schema={schema}", f"--dsn={dsn}", f"--payload-bytes={size}"]
    pings = [payload(PING, i, size) for i in range(warmup + round_trips)]
    samples: list[float] = []
    got: list[int] = []

    def note(body: bytes) -> None:
        if body[:1] == PONG:
            got.append(int.from_bytes(body[1:9], "big"))

    with (
        connect(dsn, durable=True) as sender,
        connect(dsn, durable=False) as receiver,
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as ponger,
    ):
        assert ponger.stdout is not None
        to_pinger.listen(receiver)
        ready = ponger.stdout.readline().decode().strip()
        if ready != READY_LINE:
            raise RuntimeError(f"the ponger said {ready!r} instead of {READY_LINE!r}")
        gc.collect()
        for i, ping in enumerate(pings):
            sent_at = perf_counter()
            to_ponger.send(sender, ping)
            while i not in got:
                if perf_counter() - sent_at > ROUND_TRIP_TIMEOUT:
                    raise RuntimeError(f"no pong to ping {i} within {ROUND_TRIP_TIMEOUT} s")
                to_pinger.receive(receiver, note, timeout=ROUND_TRIP_TIMEOUT)
            if i >= warmup:
                samples.append(perf_counter() - sent_at)
            got.clear()
        to_ponger.send(sender, payload(STOP, 0, size))
        peer: dict[str, object] = json.loads(ponger.stdout.readline())
        ponger.wait(READY_TIMEOUT)
    return latency_result(IMPL, "sync+sync", samples, warmup=warmup, answered=peer.get("answered"))


def ponger(dsn: str, schema: str, size: int) -> Result:
    """Answer every ping with a pong carrying its number, until told to stop."""
    to_ponger, to_pinger = Queue(schema, "to_ponger"), Queue(schema, "to_pinger")
    answered = 0
    stop = False
    with connect(dsn, durable=True) as sender, connect(dsn, durable=False) as receiver:

        def answer(body: bytes) -> None:
            nonlocal answered, stop
            if body[:1] == STOP:
                stop = True
            else:
                to_pinger.send(sender, payload(PONG, int.from_bytes(body[1:9], "big"), size))
                answered += 1

        to_ponger.listen(receiver)
        sys.stdout.write(READY_LINE + "\n")
        sys.stdout.flush()
        last = perf_counter()
        while not stop:
            if to_ponger.receive(receiver, answer, timeout=PONGER_TIMEOUT):
                last = perf_counter()
            elif perf_counter() - last > PONGER_TIMEOUT:
                raise RuntimeError(f"no message from the pinger for {PONGER_TIMEOUT:g} s")
    return {"impl": IMPL, "workload": "W8-latency", "role": "ponger", "answered": answered}


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    args = worker_args(__doc__ or "", ("sync",))
    if args.role == "ponger":
        emit(ponger(args.dsn, args.schema, args.payload_bytes))
        return
    try:
        if args.workload == "W8-latency":
            result = pinger(
                args.dsn, args.schema, args.round_trips, args.warmup, args.payload_bytes
            )
        else:
            result = throughput(
                args.dsn,
                args.schema,
                args.workload,
                args.messages,
                args.subscribers,
                args.payload_bytes,
            )
    finally:
        drop_schema(args.dsn, args.schema)
    emit(result)


if __name__ == "__main__":
    main()
