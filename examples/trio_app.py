"""A trio application with a MemoryBus inside it.

The application is plain trio: trio.run(), a nursery, memory channels and trio's timeouts. The
bus runs in the application's own nursery, started with ``await nursery.start(bus.run)`` as any
trio service is, and stopped with ``await bus.stop()``.

Two sensors feed readings through a trio memory channel onto the bus. A slow recorder stores
them; its inbox holds at most 5 readings, so the sensors are slowed down to its pace
(backpressure) instead of queuing without limit. A monitor raises an Alarm (a system message)
for a reading over the limit: the recorder handles it at once, while it is busy storing, ahead
of the readings queued for it.

Run it with ``python examples/trio_app.py`` (trio: ``pip install 'anybus[trio]'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from anybus import BusDataMessage, BusMessage, BusSubscriber, BusSystemMessage, MemoryBus

LIMIT = 90.0


@dataclass(kw_only=True)
class Reading(BusDataMessage):
    sensor: str
    value: float


@dataclass(kw_only=True)
class Alarm(BusSystemMessage):
    sensor: str
    value: float


class Recorder(BusSubscriber):
    """Stores readings slowly; handles alarms at once."""

    def __init__(self, bus: MemoryBus) -> None:
        self.name = "recorder"
        self.bus = bus
        self.stored: list[Reading] = []

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Reading):
            await trio.sleep(0.01)  # a slow disk
            self.stored.append(message)
        elif isinstance(message, Alarm):
            (mine,) = [s for s in self.bus.statistics().subscriptions if s.name == self.name]
            print(
                f"recorder: ALARM {message.sensor} at {message.value} "
                f"(handled at once, {mine.queued_data} readings still queued)"
            )


class Monitor(BusSubscriber):
    """Raises an Alarm for every reading over LIMIT."""

    def __init__(self, bus: MemoryBus) -> None:
        self.name = "monitor"
        self.bus = bus

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Reading) and message.value > LIMIT:
            await self.bus.send(
                Alarm(source=self.name, sensor=message.sensor, value=message.value)
            )


async def sensor(
    name: str, values: list[float], readings: trio.MemorySendChannel[Reading]
) -> None:
    async with readings:
        for value in values:
            await readings.send(Reading(source=name, sensor=name, value=value))


async def forward(readings: trio.MemoryReceiveChannel[Reading], bus: MemoryBus) -> None:
    """Put every reading on the bus; send() waits while the recorder's inbox is full."""
    async with readings:
        async for reading in readings:
            await bus.send(reading)


async def main() -> None:
    bus = MemoryBus(max_buffer=5)  # at most 5 data messages wait in each inbox
    recorder = Recorder(bus)
    await bus.subscribe(recorder)
    await bus.subscribe(Monitor(bus), max_buffer=None)  # the monitor keeps up: unbounded
    send_channel, receive_channel = trio.open_memory_channel[Reading](0)
    boiler = [float(value) for value in range(70, 100, 2)]  # crosses the limit
    cellar = [12.0] * 15
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)  # returns once the bus dispatches
        print("app: bus running in the nursery")
        async with trio.open_nursery() as feeds, send_channel, receive_channel:
            feeds.start_soon(sensor, "boiler", boiler, send_channel.clone())
            feeds.start_soon(sensor, "cellar", cellar, send_channel.clone())
            feeds.start_soon(forward, receive_channel.clone(), bus)
        # Every reading is on the bus now; wait until each one is handled (no sleeping).
        with trio.fail_after(10):
            await bus.wait_idle()
        await bus.stop()  # bus.run returns, so the nursery can close
    stats = {s.name: s for s in bus.statistics().subscriptions}
    print(
        f"recorder: stored {len(recorder.stored)} readings; at most "
        f"{stats['recorder'].high_water_mark} waited in its inbox"
    )
    print("trio app: done")


if __name__ == "__main__":
    trio.run(main)
