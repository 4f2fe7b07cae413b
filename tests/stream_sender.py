"""A sender in another process, for the stream restart test: ``python stream_sender.py BACKEND
URL STREAM COUNT``.

Sends ``COUNT`` data messages (job requests nobody runs, with the job ids ``n0`` ...) on a
:class:`RedisStreamBus` named ``sender``, about one a millisecond, so that it keeps going while
the receiver restarts; then prints ``sent COUNT`` and exits.
"""

from __future__ import annotations

import sys

import anyio

from anybus import BusJobRequestMessage
from anybus.redis import RedisStreamBus


async def main(url: str, stream: str, count: int) -> None:
    async with RedisStreamBus(url, stream=stream, name="sender") as bus:
        for n in range(count):
            await bus.send(
                BusJobRequestMessage(source="sender", target="receiver", job_id=f"n{n}")
            )
            await anyio.sleep(0.001)  # the pace of the workload, not a synchronisation
    sys.stdout.write(f"sent {count}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    backend, url, stream, count = sys.argv[1:5]
    anyio.run(main, url, stream, int(count), backend=backend)
