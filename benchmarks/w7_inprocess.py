"""W7's ping-pong in one process: two ``RedisBus`` instances, or two pairs of bare glide
clients, on one event loop. A diagnostic, not a workload: it has no idle gaps between hops
(both sides run on one loop), so it shows what a round trip costs in work rather than in
wake-ups, and it runs under callgrind, which counts instructions whatever else the machine does.

Usage::

    python benchmarks/w7_inprocess.py --impl redis --backend trio --round-trips 2000
    valgrind --tool=callgrind python benchmarks/w7_inprocess.py --impl glide --round-trips 100
    valgrind --tool=callgrind python benchmarks/w7_inprocess.py --impl glide --round-trips 400

The instructions of a round trip are the difference of two such runs divided by the difference
of their round trips (start-up cancels out). Prints the round trip's p50 in ms. Needs the
``redis`` extra and a Redis server (``--redis-url``, by default the local one).
"""

from __future__ import annotations

import argparse
import statistics
from time import perf_counter
from typing import Any

import anyio
from anybus_bench.bare_glide import PING, PONG, glide_client, payload, wait_for_subscribers
from anybus_bench.bare_glide import PongCatcher as RawCatcher

from anybus import BusDataMessage
from anybus._bench._network_common import DEFAULT_REDIS_URL, PING_TARGET, unique_key
from anybus._bench.network import PongCatcher, Responder, make_bus
from anybus.redis import configure_glide_logging

#: Seconds a round trip may take before the run fails.
TIMEOUT = 30


async def through_buses(url: str, round_trips: int) -> list[float]:
    """Ping-pong between two ``RedisBus`` instances on one channel, as W7's processes do."""
    key = unique_key("w7-inprocess")
    samples: list[float] = []
    async with (
        make_bus("redis", url, key, "pinger") as pinger,
        make_bus("redis", url, key, "ponger") as ponger,
    ):
        catcher = PongCatcher()
        await pinger.subscribe(catcher)
        await ponger.subscribe(Responder(ponger))
        for _ in range(round_trips):
            ping = BusDataMessage(source="pinger", target=PING_TARGET)
            catcher.expected = ping.id
            catcher.arrived = arrived = anyio.Event()
            sent_at = perf_counter()
            await pinger.send(ping)
            with anyio.fail_after(TIMEOUT):
                await arrived.wait()
            samples.append(catcher.arrived_at - sent_at)
    return samples


async def bare(url: str, round_trips: int) -> list[float]:
    """The same ping-pong on bare glide clients, as W7's bare floor does it."""
    key = unique_key("w7-inprocess-raw")
    catcher = RawCatcher()
    send, receive = anyio.create_memory_object_stream[bytes](8)

    def on_ping(message: Any, context: Any) -> None:  # glide's callback, on the loop's thread
        data: bytes = message.message
        if data.startswith(PING):
            send.send_nowait(data)

    clients = [
        await glide_client(url, name="w7-inprocess-pinger-pub"),
        await glide_client(
            url, name="w7-inprocess-pinger-sub", channel=key, on_message=catcher.on_message
        ),
        await glide_client(url, name="w7-inprocess-ponger-pub"),
        await glide_client(url, name="w7-inprocess-ponger-sub", channel=key, on_message=on_ping),
    ]
    pinger, _, ponger, _ = clients
    samples: list[float] = []
    try:
        await wait_for_subscribers(pinger, key, 2)

        async def answer() -> None:
            async for data in receive:
                await ponger.publish(PONG + data[1:], key)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(answer)
            for i in range(round_trips):
                ping = payload(PING, i)
                catcher.expected = PONG + ping[1:]
                catcher.arrived = arrived = anyio.Event()
                sent_at = perf_counter()
                await pinger.publish(ping, key)
                with anyio.fail_after(TIMEOUT):
                    await arrived.wait()
                samples.append(catcher.arrived_at - sent_at)
            task_group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for client in clients:
                await client.close()
    return samples


def main() -> None:
    """Run the ping-pong the command line asks for and print its p50."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=["redis", "glide"], default="redis")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    if args.round_trips < 1:
        parser.error(f"--round-trips must be at least 1, not {args.round_trips!r}")
    configure_glide_logging("off")
    run = through_buses if args.impl == "redis" else bare
    samples = anyio.run(run, args.redis_url, args.round_trips, backend=args.backend)
    print(f"{args.impl} {args.backend}: round trip p50 {statistics.median(samples) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
