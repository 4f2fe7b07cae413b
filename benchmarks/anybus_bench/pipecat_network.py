"""The network reference: pipecat's ``RedisBus`` (redis-py) on W6 and W7, on asyncio.

Run by path with a Python that has ``pipecat-ai[redis]`` (``benchmarks/setup_pipecat.sh``
creates such a virtual environment), the way ``benchmarks/run.py --workloads W6,W7`` does::

    .venv-pipecat/bin/python benchmarks/anybus_bench/pipecat_network.py --workload W6-fanout
    .venv-pipecat/bin/python benchmarks/anybus_bench/pipecat_network.py --workload W7

It prints one JSON result line and does not import anybus (nor anyio): only the standard
library, pipecat, redis-py and the package's stdlib-only ``anybus/_bench/_common.py`` and
``_network_common.py``, by path. Each measurement mirrors ``anybus/_bench/network.py`` step for
step, with pipecat's bus and messages and plain asyncio in place of anyio. redis-py alone, no
bus (the floor of W6 and W7 for pipecat), is ``bare_redis_py.py``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from pipecat.bus.messages import BusDataMessage, BusMessage  # type: ignore[import-not-found]
from pipecat.bus.network.redis import RedisBus  # type: ignore[import-not-found]
from pipecat.bus.serializers import JSONMessageSerializer  # type: ignore[import-not-found]
from pipecat.bus.subscriber import BusSubscriber  # type: ignore[import-not-found]
from pipecat.utils.asyncio.task_manager import TaskManager  # type: ignore[import-not-found]
from redis.asyncio import Redis  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from anybus._bench import _common as common
    from anybus._bench import _network_common as net
else:  # the package's stdlib-only modules, by path: anybus is not installed here
    sys.path.append(str(Path(__file__).resolve().parents[2] / "anybus" / "_bench"))
    import _common as common
    import _network_common as net

Result = common.Result
Tally = common.Tally

IMPLS = ("redis",)
BACKEND = "asyncio"
IMPL_NAME = "pipecat-redis"

#: This file, which a W7 pinger runs again (by path) as its ponger.
SCRIPT = str(Path(__file__).resolve())


def _noop() -> None:
    pass


class OpenBus:
    """One pipecat ``RedisBus`` with a redis-py client of its own, set up as pipecat's
    ``WorkerRunner`` does (a task manager, then ``start()``); ``close()`` undoes it all."""

    def __init__(self, url: str, channel: str) -> None:
        self.redis = Redis.from_url(url)
        self.bus = RedisBus(redis=self.redis, channel=channel)

    async def open(self) -> RedisBus:
        await self.bus.setup(TaskManager(loop=asyncio.get_running_loop()))
        await self.bus.start()
        return self.bus

    async def close(self) -> None:
        await self.bus.stop()
        await self.bus.cleanup()
        await self.redis.aclose()


async def wait_for_subscribers(redis: Redis, channel: str, count: int) -> None:
    """Wait (round trip by round trip, no sleeping) until ``count`` clients subscribe.

    pipecat's ``start()`` sends ``SUBSCRIBE`` but does not wait for Redis to confirm it, so
    this is how a run knows that nothing it publishes next is lost.
    """
    async with asyncio.timeout(net.READY_TIMEOUT):
        while True:
            [(_, subscribed)] = await redis.pubsub_numsub(channel)
            if int(subscribed) >= count:
                return


async def _wait_done(done: asyncio.Event, tally: Tally) -> None:
    """Wait until every delivery arrived; fail (not measure) if none arrives for a while."""
    while True:
        remaining = tally.remaining
        try:
            async with asyncio.timeout(net.STALL_TIMEOUT):
                await done.wait()
        except TimeoutError:
            if tally.remaining == remaining:
                break
        else:
            return
    raise RuntimeError(
        f"{tally.remaining:,} deliveries still missing, none for {net.STALL_TIMEOUT:g} s"
    )


# --- W6: throughput through Redis ---------------------------------------------------------


class CountingSubscriber(BusSubscriber):  # type: ignore[misc]
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.tally = Tally(0, _noop)

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        self.tally.hit()


async def throughput(workload: str, url: str, n_messages: int, n_subscribers: int) -> Result:
    """W6, as in ``network.throughput``: a sender bus with no subscribers, the subscribers on
    a second bus in the same process, every delivery through Redis."""
    key = net.unique_key(workload)
    messages = [BusDataMessage(source="bench") for _ in range(n_messages)]
    subscribers = [CountingSubscriber(f"subscriber-{i}") for i in range(n_subscribers)]
    payload_bytes = len(JSONMessageSerializer().serialize(messages[0]))
    receiving, sending = OpenBus(url, key), OpenBus(url, key)
    try:
        receiver = await receiving.open()
        sender = await sending.open()
        await wait_for_subscribers(sending.redis, key, 2)
        for subscriber in subscribers:
            await receiver.subscribe(subscriber)

        primed = asyncio.Event()
        primer = Tally(n_subscribers, primed.set)
        for subscriber in subscribers:
            subscriber.tally = primer
        await sender.send(BusDataMessage(source="primer"))
        await _wait_done(primed, primer)

        done = asyncio.Event()
        tally = Tally(n_messages * n_subscribers, done.set)
        for subscriber in subscribers:
            subscriber.tally = tally
        gc.collect()

        cpu = net.CpuClock()
        cpu.start()
        started_at = perf_counter()
        for message in messages:
            await sender.send(message)
        sent_at = perf_counter()
        await _wait_done(done, tally)
        cpu_used = cpu.stop()
        seconds = tally.finished_at - started_at
    finally:
        await sending.close()
        await receiving.close()
    return net.network_throughput_result(
        IMPL_NAME,
        BACKEND,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
        send_seconds=sent_at - started_at,
        payload_bytes=payload_bytes,
        cpu=cpu_used,
    )


# --- W7: round trips between two processes ------------------------------------------------


class PongCatcher(BusSubscriber):  # type: ignore[misc]
    """The pinger's subscriber, as in ``network.PongCatcher``."""

    def __init__(self) -> None:
        self.expected = ""
        self.arrived = asyncio.Event()
        self.arrived_at = 0.0
        self.mismatched = 0

    @property
    def name(self) -> str:
        return "pinger"

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target != net.PONG_TARGET:
            return  # our own pings: pipecat's bus delivers them back through Redis
        if message.source != self.expected:
            self.mismatched += 1
            return
        self.arrived_at = perf_counter()
        self.arrived.set()


class Responder(BusSubscriber):  # type: ignore[misc]
    """The ponger's subscriber, as in ``network.Responder``."""

    def __init__(self, bus: RedisBus) -> None:
        self.bus = bus
        self.answered = 0
        self.stop = asyncio.Event()

    @property
    def name(self) -> str:
        return "ponger"

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target == net.PING_TARGET:
            await self.bus.send(BusDataMessage(source=str(message.id), target=net.PONG_TARGET))
            self.answered += 1
        elif message.target == net.STOP_TARGET:
            self.stop.set()


async def pinger(url: str, round_trips: int, warmup: int) -> Result:
    """W7, as in ``network.pinger``: both processes on asyncio (pipecat's only backend)."""
    key = net.unique_key("W7")
    pings = [
        BusDataMessage(source="pinger", target=net.PING_TARGET)
        for _ in range(warmup + round_trips)
    ]
    catcher = PongCatcher()
    samples: list[float] = []
    opened = OpenBus(url, key)
    process: asyncio.subprocess.Process | None = None
    try:
        bus = await opened.open()
        await wait_for_subscribers(opened.redis, key, 1)
        await bus.subscribe(catcher)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            "--workload=W7",
            f"--redis-url={url}",
            "--role=ponger",
            f"--channel={key}",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        async with asyncio.timeout(net.READY_TIMEOUT):
            ready = (await process.stdout.readline()).decode().strip()
        if ready != net.READY_LINE:
            raise RuntimeError(f"the ponger said {ready!r} instead of {net.READY_LINE!r}")
        gc.collect()
        for i, ping in enumerate(pings):
            catcher.expected = str(ping.id)
            catcher.arrived = arrived = asyncio.Event()
            sent_at = perf_counter()
            await bus.send(ping)
            async with asyncio.timeout(net.ROUND_TRIP_TIMEOUT):
                await arrived.wait()
            if i >= warmup:
                samples.append(catcher.arrived_at - sent_at)
        await bus.send(BusDataMessage(source="pinger", target=net.STOP_TARGET))
        async with asyncio.timeout(net.READY_TIMEOUT):
            peer: dict[str, Any] = json.loads(await process.stdout.readline())
            await process.wait()
        process = None
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await opened.close()
    return net.round_trip_result(
        IMPL_NAME,
        f"{BACKEND}+{BACKEND}",
        samples,
        warmup=warmup,
        mismatched=catcher.mismatched,
        extra={
            "pinger_backend": BACKEND,
            "ponger_backend": BACKEND,
            "answered": peer.get("answered"),
        },
    )


async def ponger(url: str, key: str) -> Result:
    """W7's other process: answer pings until told to stop, then report."""
    opened = OpenBus(url, key)
    try:
        bus = await opened.open()
        # The pinger's subscription and ours.
        await wait_for_subscribers(opened.redis, key, 2)
        responder = Responder(bus)
        await bus.subscribe(responder)
        sys.stdout.write(net.READY_LINE + "\n")
        sys.stdout.flush()
        await responder.stop.wait()
    finally:
        await opened.close()
    return {
        "impl": IMPL_NAME,
        "backend": BACKEND,
        "workload": "W7",
        "role": "ponger",
        "answered": responder.answered,
    }


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    args = net.network_args(__doc__ or "", impls=IMPLS, backends=[BACKEND])
    sizes = args.sizes
    if args.workload == "W7":
        if args.role == "ponger":
            common.emit(asyncio.run(ponger(args.redis_url, args.channel)))
        else:
            run = pinger(args.redis_url, sizes.w7_round_trips, sizes.w7_warmup)
            common.emit(asyncio.run(run))
    else:
        run = throughput(args.workload, args.redis_url, args.messages, args.subscribers)
        common.emit(asyncio.run(run))


if __name__ == "__main__":
    main()
