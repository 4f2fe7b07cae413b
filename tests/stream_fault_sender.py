"""A sender in another process, for the stream fault tests: ``python stream_fault_sender.py
BACKEND URL STREAM COUNT DEADLINE``.

Sends ``COUNT`` job requests (job ids ``n0`` ...) on a :class:`RedisStreamBus` named
``fault-sender`` with ``send_deadline=DEADLINE``, about one a millisecond, noting each send
that raised; then prints one JSON line with what it did (``raised``: the numbers of the
sends that raised; its transport statistics), and exits.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import anyio

from anybus import BusJobRequestMessage, TransportError
from anybus.redis import RedisStreamBus


async def main(url: str, stream: str, count: int, deadline: float) -> None:
    raised: list[int] = []
    async with RedisStreamBus(
        url, stream=stream, name="fault-sender", send_deadline=deadline
    ) as bus:
        for n in range(count):
            try:
                await bus.send(
                    BusJobRequestMessage(source="sender", target="receiver", job_id=f"n{n}")
                )
            except TransportError:
                raised.append(n)
            await anyio.sleep(0.001)  # the pace of the workload, not a synchronisation
        await bus.flush()
        stats = dataclasses.asdict(bus.transport_statistics())
    sys.stdout.write(json.dumps({"sent": count, "raised": raised, "stats": stats}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    backend, url, stream, count, deadline = sys.argv[1:6]
    anyio.run(main, url, stream, int(count), float(deadline), backend=backend)
