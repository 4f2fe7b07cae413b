"""W8 on anybus: :class:`~anybus.postgres.PostgresBus` on W6's and W7's workloads.

Usage::

    python benchmarks/pg_anybus.py --workload W8-single --backend trio --schema w8_0123456789ab
    python benchmarks/pg_anybus.py --workload W8-latency --backend asyncio+trio --schema ...

The steps are those of anybus's W6 and W7 workers (``anybus/_bench/network.py``), with
``PostgresBus(dsn, channel=..., name=..., schema=...)`` at its defaults (``--durability
queued``: the sender's sends queued): W8-fanout and
W8-single run a sender bus and a receiver bus (with the subscribers) in one process, on one
event loop; W8-latency runs a pinger and a ponger (this script again, ``--role ponger``) in two
processes. The bus creates the run's schema on first use; the worker drops it at the end.
Prints one JSON result line.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from functools import partial
from time import perf_counter

import anyio
from anyio.abc import ByteReceiveStream
from pg_common import (
    PAIRS,
    READY_LINE,
    READY_TIMEOUT,
    ROUND_TRIP_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    Result,
    backend_pair,
    drop_schema,
    latency_result,
    network_throughput_result,
    worker_args,
)

from anybus import BusDataMessage, BusMessage, BusSubscriber, WireCodec
from anybus._bench._common import Tally, emit
from anybus.postgres import PostgresBus
from anybus.postgres._bus import Durability

IMPL = "anybus"
CHANNEL = "w8"
#: W8-latency's messages are data messages told apart by their target (as in W7).
PING_TARGET, PONG_TARGET, STOP_TARGET = "w8-ponger", "w8-pinger", "w8-stop"


def _noop() -> None:
    pass


#: Small messages travel in their notification (the default), but with ``--no-carry-messages``.
CARRY = True


def make_bus(dsn: str, schema: str, name: str, durability: Durability = "stored") -> PostgresBus:
    return PostgresBus(
        dsn,
        channel=CHANNEL,
        name=name,
        schema=schema,
        durability=durability,
        carry_messages=CARRY,
    )


async def wait_done(done: anyio.Event, tally: Tally, receiver: PostgresBus) -> None:
    """Wait until every delivery arrived; fail if none arrives for ``STALL_TIMEOUT``."""
    while True:
        remaining = tally.remaining
        with anyio.move_on_after(STALL_TIMEOUT):
            await done.wait()
            return
        if tally.remaining == remaining:
            break
    raise RuntimeError(
        f"{tally.remaining:,} deliveries still missing, none for {STALL_TIMEOUT:g} s;"
        f" receiver: {receiver.transport_statistics()}"
    )


# --- W8-fanout, W8-single -----------------------------------------------------------------


class CountingSubscriber(BusSubscriber):
    """The trivial handler: count the delivery."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tally = Tally(0, _noop)

    async def on_bus_message(self, message: BusMessage) -> None:
        self.tally.hit()


async def throughput(
    dsn: str,
    schema: str,
    workload: str,
    backend: str,
    n_messages: int,
    n_subscribers: int,
    durability: Durability = "stored",
) -> Result:
    """W6's steps: the receiver bus (with the subscribers) first, then the sender (its sends
    ``durability`` as given); one primer message through Postgres; then the clock, from just
    before the first send to the last delivery."""
    messages = [BusDataMessage(source="bench") for _ in range(n_messages)]
    subscribers = [CountingSubscriber(f"subscriber-{i}") for i in range(n_subscribers)]
    payload_bytes = len(WireCodec().encode(messages[0], sender=f"w8-sender/{'0' * 8}", seq=1))
    async with (
        make_bus(dsn, schema, "w8-receiver") as receiver,
        make_bus(dsn, schema, "w8-sender", durability) as sender,
    ):
        for subscriber in subscribers:
            await receiver.subscribe(subscriber)

        primed = anyio.Event()
        primer = Tally(n_subscribers, primed.set)
        for subscriber in subscribers:
            subscriber.tally = primer
        await sender.send(BusDataMessage(source="primer"))
        await wait_done(primed, primer, receiver)

        done = anyio.Event()
        tally = Tally(n_messages * n_subscribers, done.set)
        for subscriber in subscribers:
            subscriber.tally = tally
        gc.collect()

        cpu = CpuClock()
        cpu.start()
        started_at = perf_counter()
        for message in messages:
            await sender.send(message)
        sent_at = perf_counter()
        await wait_done(done, tally, receiver)
        cpu_used = cpu.stop()
        stats = receiver.transport_statistics()
    return network_throughput_result(
        IMPL if durability == "stored" else f"{IMPL}-{durability}",
        backend,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=tally.finished_at - started_at,
        send_seconds=sent_at - started_at,
        payload_bytes=payload_bytes,
        cpu=cpu_used,
        extra={"received": stats.received, "gaps": stats.gaps, "missed": stats.missed},
    )


# --- W8-latency ---------------------------------------------------------------------------


class PongCatcher(BusSubscriber):
    """The pinger's subscriber: notes when the pong to the ping in flight arrives."""

    def __init__(self) -> None:
        self.name = "pinger"
        self.expected = ""
        self.arrived = anyio.Event()
        self.arrived_at = 0.0
        self.mismatched = 0

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target != PONG_TARGET:
            return  # its own pings, which the bus delivers to its own subscribers too
        if message.source != self.expected:
            self.mismatched += 1
            return
        self.arrived_at = perf_counter()
        self.arrived.set()


class Responder(BusSubscriber):
    """The ponger's subscriber: answers every ping from inside its handler."""

    def __init__(self, bus: PostgresBus) -> None:
        self.name = "ponger"
        self.bus = bus
        self.answered = 0
        self.stop = anyio.Event()

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target == PING_TARGET:
            await self.bus.send(BusDataMessage(source=message.id, target=PONG_TARGET))
            self.answered += 1
        elif message.target == STOP_TARGET:
            self.stop.set()


class Lines:
    """Reads a child process's stdout line by line."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()


async def pinger(dsn: str, schema: str, backend: str, round_trips: int, warmup: int) -> Result:
    """W7's steps: the pinger's bus first (it creates the schema), then the ponger's process
    on the other backend; each sample from just before ``send(ping)`` to the first line of
    the pinger's pong handler."""
    _, pong_backend = backend_pair(backend)
    pings = [
        BusDataMessage(source="pinger", target=PING_TARGET) for _ in range(warmup + round_trips)
    ]
    catcher = PongCatcher()
    samples: list[float] = []
    command = [sys.executable, __file__, "--workload=W8-latency", "--role=ponger"]
    command += [f"--backend={pong_backend}", f"--schema={schema}", f"--dsn={dsn}"]
    command += [] if CARRY else ["--no-carry-messages"]
    async with make_bus(dsn, schema, "w8-pinger") as bus:
        await bus.subscribe(catcher)
        async with await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stderr=None
        ) as process:
            assert process.stdout is not None
            lines = Lines(process.stdout)
            with anyio.fail_after(READY_TIMEOUT):
                ready = await lines.next()
            if ready != READY_LINE:
                raise RuntimeError(f"the ponger said {ready!r} instead of {READY_LINE!r}")
            gc.collect()
            for i, ping in enumerate(pings):
                catcher.expected = ping.id
                catcher.arrived = arrived = anyio.Event()
                sent_at = perf_counter()
                await bus.send(ping)
                with anyio.fail_after(ROUND_TRIP_TIMEOUT):
                    await arrived.wait()
                if i >= warmup:
                    samples.append(catcher.arrived_at - sent_at)
            await bus.send(BusDataMessage(source="pinger", target=STOP_TARGET))
            with anyio.fail_after(READY_TIMEOUT):
                peer: dict[str, object] = json.loads(await lines.next())
                await process.wait()
        stats = bus.transport_statistics()
    return latency_result(
        IMPL,
        backend,
        samples,
        warmup=warmup,
        mismatched=catcher.mismatched,
        answered=peer.get("answered"),
        gaps=stats.gaps + int(str(peer.get("gaps", 0))),
    )


async def ponger(dsn: str, schema: str, backend: str) -> Result:
    """Answer pings until told to stop, then report."""
    async with make_bus(dsn, schema, "w8-ponger") as bus:
        responder = Responder(bus)
        await bus.subscribe(responder)
        sys.stdout.write(READY_LINE + "\n")
        sys.stdout.flush()
        await responder.stop.wait()
        stats = bus.transport_statistics()
    return {
        "impl": IMPL,
        "backend": backend,
        "workload": "W8-latency",
        "role": "ponger",
        "answered": responder.answered,
        "gaps": stats.gaps,
    }


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    args = worker_args(__doc__ or "", ("asyncio", "trio", *PAIRS))
    global CARRY
    CARRY = not args.no_carry_messages
    if args.role == "ponger":
        run = partial(ponger, args.dsn, args.schema, args.backend)
        emit(anyio.run(run, backend=args.backend))
        return
    try:
        if args.workload == "W8-latency":
            backend = args.backend if "+" in args.backend else f"{args.backend}+{args.backend}"
            run = partial(pinger, args.dsn, args.schema, backend, args.round_trips, args.warmup)
            result = anyio.run(run, backend=backend_pair(backend)[0])
        else:
            if "+" in args.backend:
                raise SystemExit(f"{args.workload} runs on one backend, not {args.backend!r}")
            run = partial(
                throughput,
                args.dsn,
                args.schema,
                args.workload,
                args.backend,
                args.messages,
                args.subscribers,
                args.durability,
            )
            result = anyio.run(run, backend=args.backend)
    finally:
        drop_schema(args.dsn, args.schema)
    emit(result)


if __name__ == "__main__":
    main()
