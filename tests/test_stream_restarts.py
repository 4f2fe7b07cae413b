"""A durable receiver that stops and comes back under its name loses nothing.

A sender in another process keeps sending on a stream while the receiver leaves ``async with
bus:`` and comes back, 40 times. Leaving stops the transport's intake first, drains, and only
then acknowledges what was handled; whatever was read and not handled is given again next
time. Every message must arrive.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from anyio import fail_after

from anybus import BusJobRequestMessage, BusMessage
from anybus.redis import RedisStreamBus

from .redis_support import unique_name

pytestmark = pytest.mark.anyio

SENDER = Path(__file__).with_name("stream_sender.py")
COUNT = 3000
RESTARTS = 40


async def test_a_receiver_restarted_40_times_under_its_name_loses_nothing(
    redis_url: str, anyio_backend: str
) -> None:
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    stream = unique_name()
    received: Counter[str] = Counter()
    arrived = anyio.Event()

    async def record(message: BusMessage) -> None:
        nonlocal arrived
        if isinstance(message, BusJobRequestMessage) and message.source == "sender":
            received[message.job_id] += 1
            arrived.set()

    async def receiver() -> RedisStreamBus:
        bus = RedisStreamBus(redis_url, stream=stream, name="receiver", exit_drain=5)
        # Subscribed before it runs: what the stream hands over at once has a subscriber.
        await bus.subscribe(record, name="record")
        return bus

    # The receiver's group exists before the first message is sent: a new name starts now.
    async with await receiver():
        pass
    process = await anyio.open_process(
        [sys.executable, str(SENDER), other, redis_url, stream, str(COUNT)]
    )
    try:
        with fail_after(100):
            for _ in range(RESTARTS):
                async with await receiver():
                    # Leave as soon as something new came, mid-stream.
                    arrived = anyio.Event()
                    await arrived.wait()
            assert process.stdout is not None
            output = (await process.stdout.receive()).decode()
            assert output.strip() == f"sent {COUNT}"
            await process.wait()
            async with await receiver():
                # The rest is in the stream by now: bounded, so a loss fails below, by name.
                with anyio.move_on_after(30):
                    while len(received) < COUNT:
                        arrived = anyio.Event()
                        await arrived.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    lost = [f"n{n}" for n in range(COUNT) if f"n{n}" not in received]
    duplicates = sum(count - 1 for count in received.values())
    assert lost == [], f"{len(lost)} lost, {duplicates} duplicated"
    assert duplicates <= 5, f"{duplicates} messages handled twice"
