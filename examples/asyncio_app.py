"""An asyncio application with a MemoryBus inside it.

The application is plain asyncio: asyncio.run(), asyncio.TaskGroup, asyncio.Queue,
asyncio.Event and asyncio.timeout(). The bus needs no adapter: anybus is written against
anyio, and anyio runs on the asyncio event loop.

A front desk takes orders from an asyncio.Queue and puts them on the bus; a warehouse worker
packs them one at a time. While it packs the first order, a Halt (a system message) reaches it
at once and overtakes the orders still queued, so those are refused instead of packed.

Run it with ``python examples/asyncio_app.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from anybus import (
    BusDataMessage,
    BusMessage,
    BusSubscriber,
    BusSystemMessage,
    MemoryBus,
    MessageStream,
)


@dataclass(kw_only=True)
class Order(BusDataMessage):
    order_id: int
    item: str


@dataclass(kw_only=True)
class OrderDone(BusDataMessage):
    order_id: int
    shipped: bool


@dataclass(kw_only=True)
class Halt(BusSystemMessage):
    """Stop packing. A system message: handled even while an order is being packed."""

    reason: str


class Warehouse(BusSubscriber):
    """Packs orders one at a time (data messages are handled in send order)."""

    def __init__(self, bus: MemoryBus) -> None:
        self.name = "warehouse"
        self.bus = bus
        self.halted = False
        self.packing = asyncio.Event()  # an asyncio primitive, used as usual

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Halt):
            print(f"warehouse: halt received ({message.reason}) while packing")
            self.halted = True
        elif isinstance(message, Order):
            if self.halted:
                print(f"warehouse: order {message.order_id} refused, halted")
                await self.bus.send(self.done(message, shipped=False))
                return
            print(f"warehouse: packing order {message.order_id} ({message.item})")
            self.packing.set()
            await asyncio.sleep(0.1)  # any asyncio code runs in a handler
            print(f"warehouse: order {message.order_id} shipped")
            await self.bus.send(self.done(message, shipped=True))

    def done(self, order: Order, *, shipped: bool) -> OrderDone:
        return OrderDone(source=self.name, target="desk", order_id=order.order_id, shipped=shipped)


async def front_desk(incoming: asyncio.Queue[Order | None], bus: MemoryBus) -> None:
    """Forward orders from an asyncio.Queue to the bus until it yields None."""
    while (order := await incoming.get()) is not None:
        await bus.send(order)


async def report(results: MessageStream, expected: int) -> list[OrderDone]:
    """Collect the warehouse's answers, bounded by asyncio.timeout()."""
    done: list[OrderDone] = []
    async with asyncio.timeout(5):
        async for message in results:
            assert isinstance(message, OrderDone)
            done.append(message)
            if len(done) == expected:
                break
    return done


async def main() -> None:
    incoming: asyncio.Queue[Order | None] = asyncio.Queue()
    async with MemoryBus() as bus:
        warehouse = Warehouse(bus)
        await bus.subscribe(warehouse, types=[Order, Halt])
        async with bus.listen(name="desk", types=[OrderDone]) as results:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(front_desk(incoming, bus))
                reporter = tasks.create_task(report(results, expected=4))
                for order_id, item in enumerate(["kettle", "teapot", "mug", "tray"], start=1):
                    await incoming.put(Order(source="desk", order_id=order_id, item=item))
                await incoming.put(None)
                await warehouse.packing.wait()
                print("desk: orders 2-4 are queued; sending a halt")
                await bus.send(Halt(source="desk", reason="the lorry broke down"))
            shipped = [done.order_id for done in reporter.result() if done.shipped]
            refused = [done.order_id for done in reporter.result() if not done.shipped]
        print(f"desk: shipped {shipped}, refused {refused}")
        await bus.wait_idle()
        for sub in bus.statistics().subscriptions:
            print(f"bus: {sub.name} handled {sub.delivered} messages, {sub.queued} queued")
    print("asyncio app: done")


if __name__ == "__main__":
    asyncio.run(main())
