"""A transport in one module: buses joined by a hub in this process.

The worked example of docs/transports.md. A :class:`Hub` stands for the network (a Redis
channel, a Postgres table); each bus is given a :class:`HubTransport` on it, and every bus on
the hub receives every non-local message. The bus does the rest: subscriptions, inboxes,
priority, lifecycle. ``tests/test_transport_example.py`` runs anybus's conformance suite
against it.

Run it: ``python examples/hub_transport.py [--backend trio]``.
"""

from __future__ import annotations

import argparse

import anyio
from anyio import TASK_STATUS_IGNORED, sleep_forever
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from anybus import BusDataMessage, BusMessage, TransportError, TransportHost, WorkerBus


class Hub:
    """Where the buses meet: the hosts whose intake is open."""

    def __init__(self) -> None:
        self.hosts: list[TransportHost] = []


class HubTransport:
    """Carries a bus's messages to every bus on ``hub``, its own included."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._host: TransportHost | None = None

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Join the hub (intake opens), say so, and stay until cancelled."""
        self._host = host
        self._hub.hosts.append(host)
        try:
            task_status.started()
            await sleep_forever()
        finally:
            # Nothing to acknowledge: a hub keeps nothing. Close: leave it.
            if host in self._hub.hosts:
                self._hub.hosts.remove(host)
            self._host = None

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to every bus on the hub; a cancelled publish may have reached
        some of them."""
        if self._host is None:
            raise TransportError("the hub transport is not serving")
        for host in tuple(self._hub.hosts):
            await host.deliver(message)
        if self._host not in self._hub.hosts:  # intake stopped: still ours to deliver
            await self._host.deliver(message)

    async def stop_intake(self) -> None:
        """Leave the hub: nothing more arrives from the other buses."""
        if self._host in self._hub.hosts:
            self._hub.hosts.remove(self._host)
        await checkpoint()

    def __str__(self) -> str:
        return f"hub of {len(self._hub.hosts)}"


async def main() -> None:
    """Two buses on one hub: what one sends, the other's subscriber handles."""
    hub = Hub()
    done = anyio.Event()

    async def greet(message: BusMessage) -> None:
        print(f"far side got {message.name} from {message.source}")
        done.set()

    async with WorkerBus(HubTransport(hub)) as near, WorkerBus(HubTransport(hub)) as far:
        await far.subscribe(greet, name="greeter")
        await near.send(BusDataMessage(source="near"))
        with anyio.fail_after(5):
            await done.wait()
        print(repr(near))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
