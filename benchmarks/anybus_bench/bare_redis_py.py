"""The client floors of W6 and W7 for pipecat: the bare redis-py client, no bus, on asyncio.

Run by path with pipecat's Python (redis-py comes with ``pipecat-ai[redis]``;
``benchmarks/setup_pipecat.sh`` creates that virtual environment), the way
``benchmarks/run.py --workloads W6,W7`` does::

    .venv-pipecat/bin/python benchmarks/anybus_bench/bare_redis_py.py --workload W6-single
    .venv-pipecat/bin/python benchmarks/anybus_bench/bare_redis_py.py --workload W7

It prints one JSON result line and imports neither anybus nor anyio nor pipecat: only the
standard library, redis-py and the package's stdlib-only ``anybus/_bench/_common.py`` and
``_network_common.py``, by path. Each measurement mirrors ``bare_glide.py`` step for step,
with redis-py's pub/sub and plain asyncio.
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

IMPL = "raw-redis-py"
BACKEND = "asyncio"
#: This file, which a W7 pinger runs again (by path) as its ponger.
SCRIPT = str(Path(__file__).resolve())
#: W7's payloads, as in ``bare_glide.py``: a kind byte, the round trip's number, padding.
PING, PONG, STOP = b"i", b"o", b"s"


def _noop() -> None:
    pass


async def wait_for_subscribers(redis: Redis, channel: str, count: int) -> None:
    """Wait (round trip by round trip, no sleeping) until ``count`` clients subscribe."""
    async with asyncio.timeout(net.READY_TIMEOUT):
        while True:
            [(_, subscribed)] = await redis.pubsub_numsub(channel)
            if int(subscribed) >= count:
                return


async def _wait_done(done: asyncio.Event, tally: Tally) -> None:
    """Wait until every message arrived; fail (not measure) if none arrives for a while."""
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
        f"{tally.remaining:,} messages still missing, none for {net.STALL_TIMEOUT:g} s"
    )


class Subscribed:
    """A redis-py client subscribed to one channel, and a task reading it: each message's
    data goes to ``on_data`` (awaited, in the reading task)."""

    def __init__(self, url: str, channel: str, on_data: Any) -> None:
        self.redis = Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.channel = channel
        self.on_data = on_data
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.pubsub.subscribe(self.channel)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message" and await self.on_data(message["data"]):
                return

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()


# --- W6: throughput through Redis ---------------------------------------------------------


async def raw_throughput(workload: str, url: str, n_messages: int) -> Result:
    """W6's client ceiling, as in ``bare_glide.raw_throughput``: one client publishes back to
    back, awaiting each ``PUBLISH``; a subscribed one counts."""
    key = net.unique_key(f"{workload}-raw")
    payload = b"x" * net.RAW_PAYLOAD_BYTES
    tally = Tally(0, _noop)

    async def count(data: bytes) -> bool:
        tally.hit()
        return False

    publisher = Redis.from_url(url)
    subscribed = Subscribed(url, key, count)
    try:
        await subscribed.open()
        await wait_for_subscribers(publisher, key, 1)
        primed = asyncio.Event()
        tally = Tally(1, primed.set)
        await publisher.publish(key, payload)
        await _wait_done(primed, tally)

        done = asyncio.Event()
        tally = Tally(n_messages, done.set)
        gc.collect()
        cpu = net.CpuClock()
        cpu.start()
        started_at = perf_counter()
        for _ in range(n_messages):
            await publisher.publish(key, payload)
        sent_at = perf_counter()
        await _wait_done(done, tally)
        cpu_used = cpu.stop()
        seconds = tally.finished_at - started_at
    finally:
        await subscribed.close()
        await publisher.aclose()
    return net.network_throughput_result(
        IMPL,
        BACKEND,
        workload,
        messages=n_messages,
        subscribers=1,
        seconds=seconds,
        send_seconds=sent_at - started_at,
        payload_bytes=net.RAW_PAYLOAD_BYTES,
        cpu=cpu_used,
    )


# --- W7: round trips between two processes ------------------------------------------------


def payload(kind: bytes, number: int) -> bytes:
    """A W7 message of ``RAW_PAYLOAD_BYTES``: ``kind``, then ``number``, then padding."""
    return (kind + b"%08d" % number).ljust(net.RAW_PAYLOAD_BYTES, b"x")


class PongCatcher:
    """The pinger's reader, as in ``bare_glide.PongCatcher``."""

    def __init__(self) -> None:
        self.expected = b""
        self.arrived = asyncio.Event()
        self.arrived_at = 0.0
        self.mismatched = 0

    async def on_data(self, data: bytes) -> bool:
        if not data.startswith(PONG):
            return False  # our own pings: both processes subscribe to the one channel
        if data != self.expected:
            self.mismatched += 1
            return False
        self.arrived_at = perf_counter()
        self.arrived.set()
        return False


async def pinger(url: str, round_trips: int, warmup: int) -> Result:
    """W7's floor for pipecat, as in ``bare_glide.pinger``: both processes on asyncio, each
    with a client that publishes and one subscribed; the ponger's reading task publishes the
    pong. The sample runs from just before the ping's ``publish`` to the pinger's reading task
    getting the pong."""
    key = net.unique_key("W7-raw")
    pings = [payload(PING, i) for i in range(warmup + round_trips)]
    catcher = PongCatcher()
    samples: list[float] = []
    publisher = Redis.from_url(url)
    subscribed = Subscribed(url, key, catcher.on_data)
    process: asyncio.subprocess.Process | None = None
    try:
        await subscribed.open()
        await wait_for_subscribers(publisher, key, 1)
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
            catcher.expected = PONG + ping[1:]
            catcher.arrived = arrived = asyncio.Event()
            sent_at = perf_counter()
            await publisher.publish(key, ping)
            async with asyncio.timeout(net.ROUND_TRIP_TIMEOUT):
                await arrived.wait()
            if i >= warmup:
                samples.append(catcher.arrived_at - sent_at)
        await publisher.publish(key, payload(STOP, 0))
        async with asyncio.timeout(net.READY_TIMEOUT):
            peer: dict[str, Any] = json.loads(await process.stdout.readline())
            await process.wait()
        process = None
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await subscribed.close()
        await publisher.aclose()
    return net.round_trip_result(
        IMPL,
        f"{BACKEND}+{BACKEND}",
        samples,
        warmup=warmup,
        mismatched=catcher.mismatched,
        extra={
            "pinger_backend": BACKEND,
            "ponger_backend": BACKEND,
            "answered": peer.get("answered"),
            "payload_bytes": net.RAW_PAYLOAD_BYTES,
        },
    )


async def ponger(url: str, key: str) -> Result:
    """W7's other process: answer every ping with its pong until told to stop, then report."""
    publisher = Redis.from_url(url)
    answered = 0

    async def answer(data: bytes) -> bool:
        nonlocal answered
        if data.startswith(STOP):
            return True
        if data.startswith(PING):  # our own pongs come back too
            await publisher.publish(key, PONG + data[1:])
            answered += 1
        return False

    subscribed = Subscribed(url, key, answer)
    try:
        await subscribed.open()
        # The pinger's subscription and ours.
        await wait_for_subscribers(publisher, key, 2)
        sys.stdout.write(net.READY_LINE + "\n")
        sys.stdout.flush()
        assert subscribed.reader is not None
        await subscribed.reader
    finally:
        await subscribed.close()
        await publisher.aclose()
    return {
        "impl": IMPL,
        "backend": BACKEND,
        "workload": "W7",
        "role": "ponger",
        "answered": answered,
    }


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    args = net.network_args(__doc__ or "", impls=[IMPL], backends=[BACKEND])
    if args.workload == "W7" and args.role == "ponger":
        common.emit(asyncio.run(ponger(args.redis_url, args.channel)))
    elif args.workload == "W7":
        sizes = args.sizes
        common.emit(asyncio.run(pinger(args.redis_url, sizes.w7_round_trips, sizes.w7_warmup)))
    else:
        common.emit(asyncio.run(raw_throughput(args.workload, args.redis_url, args.messages)))


if __name__ == "__main__":
    main()
