"""A durable bus on Postgres: what is sent while a worker is away reaches it when it is back.

Needs a Postgres server (13 or newer, no extension) and ``pip install 'anybus[postgres]'``
(add ``trio`` for trio). Run it with ``python examples/postgres_quickstart.py`` (asyncio, the
default) or ``--backend trio``; ``--dsn`` (or ``ANYBUS_POSTGRES_DSN``) names the server,
default ``postgresql://postgres@127.0.0.1:5432/test``. Each run uses a channel of its own.
"""

from __future__ import annotations

import argparse
import os
import uuid
from dataclasses import dataclass

import anyio

from anybus import BusDataMessage, BusMessage, BusSubscriber, WorkerBus, register_message
from anybus.postgres import PostgresBus


# Messages that cross processes are registered, in every process that sends or reads them.
@register_message
@dataclass(kw_only=True)
class Task(BusDataMessage):
    number: int


@register_message
@dataclass(kw_only=True)
class Done(BusDataMessage):
    number: int


class Worker(BusSubscriber):
    """Does each Task sent to it, and tells the runner."""

    def __init__(self, bus: WorkerBus) -> None:
        self.name = "worker"
        self.bus = bus

    def accepts_bus_message(self, message: BusMessage) -> bool:
        return message.target == self.name

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Task):
            print(f"worker: task {message.number}")
            await self.bus.send(Done(source=self.name, target="runner", number=message.number))


async def main(backend: str, dsn: str, channel: str) -> None:
    # A bus instance reads the channel under its name. The first run of a name starts from
    # now: this one only makes the consumer "worker" exist, then stops.
    async with PostgresBus(dsn, channel=channel, name="worker"):
        print(f"worker: joined on {backend}, then stopped")

    runner = PostgresBus(dsn, channel=channel, name="runner")
    async with runner, runner.listen(name="runner", types=[Done]) as answers:
        for number in (1, 2, 3):
            await runner.send(Task(source="runner", target="worker", number=number))
        # send() returned once Postgres had stored each task (committed).
        print("runner: stored 3 tasks while the worker was away")

        # The worker is back under the same name: it resumes where it left off. Subscribe
        # before the bus runs: a message read while nobody is subscribed reaches nobody.
        worker_bus = PostgresBus(dsn, channel=channel, name="worker")
        await worker_bus.subscribe(Worker(worker_bus))
        async with worker_bus:
            numbers = []
            with anyio.fail_after(10):  # never wait forever
                for _ in range(3):
                    answer = await answers.receive()
                    assert isinstance(answer, Done)
                    numbers.append(answer.number)
            print(f"runner: the worker did tasks {numbers}")
        # Leaving the block acknowledged exactly what the worker had handled.
    stats = worker_bus.transport_statistics()
    print(f"done: the worker received {stats.received}, missed {stats.missed}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a durable anybus bus on Postgres")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ANYBUS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--channel", default=f"quickstart-{uuid.uuid4().hex[:12]}")
    args = parser.parse_args()
    anyio.run(main, args.backend, args.dsn, args.channel, backend=args.backend)
