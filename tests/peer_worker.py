"""A worker in another process, for the cross-process tests: ``python peer_worker.py BACKEND URL
CHANNEL [pubsub|stream]``.

It announces itself with ``BusWorkerReadyMessage``, then handles jobs addressed to ``peer``:
the first job blocks until a ``BusCancelWorkerMessage`` (a system message) arrives, which must
overtake the jobs queued behind it. Each job is answered with a ``BusJobResponseMessage`` whose
response gives the order in which the peer handled things. ``BusEndWorkerMessage`` ends it.
"""

from __future__ import annotations

import sys
from functools import partial

import anyio

from anybus import (
    BusCancelWorkerMessage,
    BusEndWorkerMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusMessage,
    BusSubscriber,
    BusWorkerReadyMessage,
    JobStatus,
)
from anybus.redis import RedisBus, RedisStreamBus


class Peer(BusSubscriber):
    def __init__(self, bus: RedisBus | RedisStreamBus) -> None:
        self.name = "peer"
        self.bus = bus
        self.order: list[str] = []
        self.unblocked = anyio.Event()
        self.done = anyio.Event()

    def accepts_bus_message(self, message: BusMessage) -> bool:
        return message.target == "peer"

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusCancelWorkerMessage):
            self.order.append("cancel")
            self.unblocked.set()
        elif isinstance(message, BusJobRequestMessage):
            self.order.append(message.job_id)
            if message.job_id == "job-1":
                await self.bus.send(
                    BusJobUpdateMessage(
                        source="peer", target="runner", job_id="job-1", update={"started": True}
                    )
                )
                await self.unblocked.wait()
            await self.bus.send(
                BusJobResponseMessage(
                    source="peer",
                    target="runner",
                    job_id=message.job_id,
                    status=JobStatus.COMPLETED,
                    response={"order": list(self.order), "backend": sys.argv[1]},
                )
            )
        elif isinstance(message, BusEndWorkerMessage):
            self.done.set()


async def main(url: str, channel: str, kind: str) -> None:
    bus: RedisBus | RedisStreamBus
    if kind == "stream":
        bus = RedisStreamBus(url, stream=channel, name="peer")
    else:
        bus = RedisBus(url, channel=channel, name="peer")
    async with bus:
        peer = Peer(bus)
        await bus.subscribe(peer)
        await bus.send(BusWorkerReadyMessage(source="peer", target="runner", runner="test"))
        with anyio.fail_after(60):
            await peer.done.wait()


if __name__ == "__main__":
    backend, url, channel = sys.argv[1:4]
    kind = sys.argv[4] if len(sys.argv) > 4 else "pubsub"
    anyio.run(partial(main, url, channel, kind), backend=backend)
