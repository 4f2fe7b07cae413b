"""A sender in another process, for the Postgres fault tests:
``python -m tests.pg_sender BACKEND DSN CHANNEL COUNT PACE``.

Sends up to ``COUNT`` numbered messages (job requests nobody runs, with the job ids ``n0``
...) on a :class:`~anybus.postgres.PostgresBus` named ``sender``, one after the other, waiting
``PACE`` seconds between two sends (0: as fast as the server stores them). It stops early when
a :class:`~anybus.BusDataMessage` from ``source="stop"`` arrives on the channel. Each send may
wait up to a minute for the server to come back, so none fails across a restart. Then it
prints one line, ``sent N`` (how many it sent) followed by the bus's transport statistics as
JSON, and exits.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import anyio

from anybus import BusDataMessage, BusJobRequestMessage, BusMessage
from anybus.postgres import PostgresBus


async def main(dsn: str, channel: str, count: int, pace: float) -> None:
    stop = anyio.Event()

    async def watch(message: BusMessage) -> None:
        if isinstance(message, BusDataMessage) and message.source == "stop":
            stop.set()

    async with PostgresBus(
        dsn, channel=channel, name="sender", send_deadline=60, connect_timeout=10
    ) as bus:
        await bus.subscribe(watch, name="watch")
        started = anyio.current_time()
        sent = 0
        while sent < count and not stop.is_set():
            await bus.send(
                BusJobRequestMessage(source="sender", target="receiver", job_id=f"n{sent}")
            )
            sent += 1
            if pace:
                await anyio.sleep(pace)  # the pace of the workload, not a synchronisation
        figures = dataclasses.asdict(bus.transport_statistics())
        figures["seconds"] = round(anyio.current_time() - started, 3)
    sys.stdout.write(f"sent {sent} {json.dumps(figures)}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    backend, dsn, channel, count, pace = sys.argv[1:6]
    anyio.run(main, dsn, channel, int(count), float(pace), backend=backend)
