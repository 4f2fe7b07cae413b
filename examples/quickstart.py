"""A runner and a worker on the in-memory bus: the same code on asyncio and on trio.

Run it with ``python examples/quickstart.py`` (asyncio, the default) or
``python examples/quickstart.py --backend trio`` (trio: ``pip install 'anybus[trio]'``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import anyio

from anybus import BusDataMessage, BusMessage, BusSubscriber, MemoryBus, WorkerBus


# Your own messages are keyword-only dataclasses. A BusDataMessage is handled in send order;
# a BusSystemMessage would overtake queued data messages.
@dataclass(kw_only=True)
class Greet(BusDataMessage):
    who: str


@dataclass(kw_only=True)
class Greeting(BusDataMessage):
    text: str


class Worker(BusSubscriber):
    """Answers every Greet sent to it with a Greeting for the runner."""

    def __init__(self, name: str, bus: WorkerBus) -> None:
        self.name = name  # unique on the bus
        self.bus = bus

    def accepts_bus_message(self, message: BusMessage) -> bool:
        # Every subscriber sees every message: keep the ones addressed to this worker.
        return message.target == self.name

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Greet):
            print(f"worker: greeting {message.who}")
            await anyio.sleep(0.01)  # some work; the handler may await anything
            reply = Greeting(source=self.name, target="runner", text=f"hello, {message.who}")
            await self.bus.send(reply)


async def main(backend: str) -> None:
    async with MemoryBus() as bus:  # starts the bus; leaving the block stops it cleanly
        await bus.subscribe(Worker("worker", bus))
        # The runner receives the replies through a listener: a subscription you iterate.
        async with bus.listen(name="runner", types=[Greeting]) as replies:
            for who in ("Ada", "Grace", "Barbara"):
                await bus.send(Greet(source="runner", target="worker", who=who))
            print(f"runner: sent 3 greetings on {backend}")
            with anyio.fail_after(5):  # never wait forever
                for _ in range(3):
                    reply = await replies.receive()
                    assert isinstance(reply, Greeting)
                    print(f"runner: got {reply.text!r} from {reply.source}")
    print(f"done: {bus!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a runner and a worker on anybus")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.backend, backend=args.backend)
