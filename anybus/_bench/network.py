"""anybus's Redis buses on W6 (throughput through Redis) and W7 (cross-process round trips).

Usage::

    python -m anybus._bench.network --workload W6-fanout --impl redis --backend trio
    python -m anybus._bench.network --workload W7 --impl stream --backend asyncio+trio

``--impl redis`` is :class:`~anybus.redis.RedisBus` (pub/sub), ``stream`` is
:class:`~anybus.redis.RedisStreamBus` (``send()`` returns once Redis stored the message: the
default), ``stream-queued`` the same with ``durability="queued"`` (once it is queued: sends
are pipelined; the clock still stops at the last delivery). ``--redis-url`` (default
``redis://127.0.0.1:6379``) is the server; every run uses a channel or stream of its own and
deletes the keys it created. ``--quick``, ``--messages N`` and ``--subscribers N`` change the
sizes. Prints one JSON result line; ``anybus bench --bus redis://...`` runs it in a fresh
process per measurement. The workloads are defined in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter

import anyio
from anyio.abc import ByteReceiveStream

from .. import BusDataMessage, BusMessage, BusSubscriber, WireCodec
from ..redis import RedisBus, RedisSettings, RedisStreamBus, configure_glide_logging
from ..redis._client import RedisClient
from ._common import Result, Tally, emit
from ._network_common import (
    PING_TARGET,
    PONG_TARGET,
    READY_LINE,
    READY_TIMEOUT,
    ROUND_TRIP_TIMEOUT,
    STALL_TIMEOUT,
    STOP_TARGET,
    CpuClock,
    backend_pair,
    network_args,
    network_throughput_result,
    round_trip_result,
    unique_key,
)

IMPLS = ("redis", "stream", "stream-queued")
BACKENDS = ("asyncio", "trio")
#: The ``impl`` field of the result line, per ``--impl``.
IMPL_NAMES = {
    "redis": "anybus-redis",
    "stream": "anybus-stream",
    "stream-queued": "anybus-stream-queued",
}

#: This module, which a W7 pinger runs again as its ponger.
MODULE = "anybus._bench.network"


NetworkBus = RedisBus | RedisStreamBus


def _noop() -> None:
    pass


async def delete_keys(url: str, *keys: str) -> None:
    """Delete the keys a run created (streams; pub/sub channels leave none)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-bench-cleanup")
        try:
            await client.command("DEL", *keys)
        finally:
            await client.close()


async def wait_done(done: anyio.Event, tally: Tally, receiver: NetworkBus) -> None:
    """Wait until every delivery arrived; fail (not measure) if none arrives for a while.

    The wait wakes up once every ``STALL_TIMEOUT`` seconds at most, to check for progress.
    """
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


def make_bus(
    impl: str, url: str, key: str, name: str, *, inbound_buffer: int | None = None
) -> NetworkBus:
    """A bus of kind ``impl`` on the channel (or stream) ``key``, with default settings but
    ``inbound_buffer`` (``RedisBus`` only), if given."""
    if impl == "redis":
        if inbound_buffer is None:
            return RedisBus(url, channel=key, name=name)
        return RedisBus(url, channel=key, name=name, inbound_buffer=inbound_buffer)
    if impl == "stream":
        return RedisStreamBus(url, stream=key, name=name)
    if impl == "stream-queued":
        return RedisStreamBus(url, stream=key, name=name, durability="queued")
    raise ValueError(f"not a bus: {impl!r}")


# --- W6: throughput through Redis ---------------------------------------------------------


class CountingSubscriber(BusSubscriber):
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tally = Tally(0, _noop)

    async def on_bus_message(self, message: BusMessage) -> None:
        """Count the delivery."""
        self.tally.hit()


async def throughput(
    impl: str, workload: str, backend: str, url: str, n_messages: int, n_subscribers: int
) -> Result:
    """W6: a sender bus with no subscribers sends back to back; the subscribers are on a second
    bus instance (same process, same event loop), so every delivery comes through Redis.

    Time from just before the first send to the last delivery. Before the clock, one primer
    message goes through Redis to every subscriber, so both buses and every worker are up.
    """
    key = unique_key(workload)
    messages = [BusDataMessage(source="bench") for _ in range(n_messages)]
    subscribers = [CountingSubscriber(f"subscriber-{i}") for i in range(n_subscribers)]
    payload_bytes = len(WireCodec().encode(messages[0], sender=f"w6-sender/{'0' * 8}", seq=1))
    try:
        # The receiver first: it is subscribed (pub/sub: its probe came back; stream: its
        # consumer group exists) before the sender exists. RedisBus's inbound buffer (unread
        # messages; beyond it they are dropped) holds the whole run, as an unbounded queue
        # would: the sender's outbox lets it outrun a receiver on the same event loop.
        inbound = n_messages + 16
        async with (
            make_bus(impl, url, key, "w6-receiver", inbound_buffer=inbound) as receiver,
            make_bus(impl, url, key, "w6-sender", inbound_buffer=inbound) as sender,
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
            seconds = tally.finished_at - started_at
            stats = receiver.transport_statistics()
    finally:
        if impl != "redis":
            await delete_keys(url, key)
    return network_throughput_result(
        IMPL_NAMES[impl],
        backend,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
        send_seconds=sent_at - started_at,
        payload_bytes=payload_bytes,
        cpu=cpu_used,
        extra={
            "received": stats.received,
            "inbound_overflow": stats.inbound_overflow,
            "gaps": stats.gaps,
            "missed": stats.missed,
        },
    )


# --- W7: round trips between two processes ------------------------------------------------


class PongCatcher(BusSubscriber):
    """The pinger's subscriber: notes when the pong to the ping in flight arrives."""

    def __init__(self) -> None:
        self.name = "pinger"
        self.expected = ""  # the id of the ping in flight
        self.arrived = anyio.Event()
        self.arrived_at = 0.0
        self.mismatched = 0  # pongs that did not answer the ping in flight (none expected)

    async def on_bus_message(self, message: BusMessage) -> None:
        """Note the time the pong to the ping in flight arrives."""
        if message.target != PONG_TARGET:
            return  # our own pings, which the bus also delivers to its own subscribers
        if message.source != self.expected:
            self.mismatched += 1
            return
        self.arrived_at = perf_counter()
        self.arrived.set()


class Responder(BusSubscriber):
    """The ponger's subscriber: answers every ping with a pong; stops on request."""

    def __init__(self, bus: NetworkBus) -> None:
        self.name = "ponger"
        self.bus = bus
        self.answered = 0
        self.stop = anyio.Event()

    async def on_bus_message(self, message: BusMessage) -> None:
        """Answer a ping with a pong; stop on a message to ``STOP_TARGET``."""
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
        """The next line, without its end."""
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()


async def pinger(impl: str, backend: str, url: str, round_trips: int, warmup: int) -> Result:
    """W7: ping-pong with a ponger in another process, possibly on the other backend.

    The pinger opens its bus, starts the ponger (``--role ponger``) and waits for its
    ``ready`` line (printed once the ponger's bus is subscribed). Each round trip: note the
    time, send a ping, wait for the pong (the ponger's handler sends it on receiving the ping);
    the sample runs from just before ``send(ping)`` to the first line of the pinger's pong
    handler. ``warmup`` round trips (100) are not measured, then ``round_trips`` (1,000) are.
    """
    ping_backend, pong_backend = backend_pair(backend)
    key = unique_key("W7")
    pings = [
        BusDataMessage(source="pinger", target=PING_TARGET) for _ in range(warmup + round_trips)
    ]
    catcher = PongCatcher()
    samples: list[float] = []
    command = [
        sys.executable,
        "-m",
        MODULE,
        "--workload=W7",
        f"--impl={impl}",
        f"--backend={pong_backend}",
        f"--redis-url={url}",
        "--role=ponger",
        f"--channel={key}",
    ]
    try:
        async with make_bus(impl, url, key, "w7-pinger") as bus:
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
    finally:
        if impl != "redis":
            await delete_keys(url, key)
    return round_trip_result(
        IMPL_NAMES[impl],
        backend,
        samples,
        warmup=warmup,
        mismatched=catcher.mismatched,
        extra={
            "pinger_backend": ping_backend,
            "ponger_backend": pong_backend,
            "answered": peer.get("answered"),
            "gaps": stats.gaps + int(str(peer.get("gaps", 0))),
        },
    )


async def ponger(impl: str, backend: str, url: str, key: str) -> Result:
    """W7's other process: answer pings until told to stop, then report."""
    async with make_bus(impl, url, key, "w7-ponger") as bus:
        responder = Responder(bus)
        await bus.subscribe(responder)
        sys.stdout.write(READY_LINE + "\n")
        sys.stdout.flush()
        await responder.stop.wait()
        stats = bus.transport_statistics()
    return {
        "impl": IMPL_NAMES[impl],
        "backend": backend,
        "workload": "W7",
        "role": "ponger",
        "answered": responder.answered,
        "gaps": stats.gaps,
    }


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    configure_glide_logging("off")
    args = network_args(__doc__ or "", impls=IMPLS, backends=BACKENDS)
    run: Callable[[], Awaitable[Result]]
    if args.workload == "W7":
        if args.role == "ponger":
            run = partial(ponger, args.impl, args.backend, args.redis_url, args.channel)
            emit(anyio.run(run, backend=args.backend))
            return
        sizes = args.sizes
        run = partial(
            pinger, args.impl, args.backend, args.redis_url, sizes.w7_round_trips, sizes.w7_warmup
        )
        emit(anyio.run(run, backend=backend_pair(args.backend)[0]))
        return
    run = partial(
        throughput,
        args.impl,
        args.workload,
        args.backend,
        args.redis_url,
        args.messages,
        args.subscribers,
    )
    emit(anyio.run(run, backend=args.backend))


if __name__ == "__main__":
    main()
