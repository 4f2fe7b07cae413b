"""anybus ``MemoryBus`` on workloads W1-W3, on asyncio or trio; prints one JSON result line.

Usage: ``python benchmarks/workloads.py --workload W1 --backend trio``. ``benchmarks/run.py``
runs this in a fresh process per measurement; see ``benchmarks/README.md`` for the method.
"""

from __future__ import annotations

import gc
from functools import partial
from time import perf_counter

import anyio
from _common import (
    THROUGHPUT_SIZES,
    W3_HANDLER_SLEEP,
    W3_QUEUED,
    W3_REPETITIONS,
    Result,
    Tally,
    emit,
    latency_result,
    throughput_result,
    worker_args,
)

from anybus import BusDataMessage, BusMessage, BusSubscriber, BusSystemMessage, MemoryBus

IMPL = "anybus"


def _noop() -> None:
    pass


class CountingSubscriber(BusSubscriber):
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tally = Tally(0, _noop)

    async def on_bus_message(self, message: BusMessage) -> None:
        self.tally.hit()


async def throughput(workload: str, backend: str) -> Result:
    """W1/W2: send every message back to back; time from the first send to the last delivery.

    Before the clock starts, one primer message goes to every subscriber and the run waits
    until all of them handled it, so every worker is running and parked on an empty inbox.
    """
    n_messages, n_subscribers = THROUGHPUT_SIZES[workload]
    messages = [BusDataMessage(source="bench") for _ in range(n_messages)]
    subscribers = [CountingSubscriber(f"subscriber-{i}") for i in range(n_subscribers)]
    async with MemoryBus() as bus:
        for subscriber in subscribers:
            await bus.subscribe(subscriber)

        primed = anyio.Event()
        primer = Tally(n_subscribers, primed.set)
        for subscriber in subscribers:
            subscriber.tally = primer
        await bus.send(BusDataMessage(source="primer"))
        await primed.wait()

        done = anyio.Event()
        tally = Tally(n_messages * n_subscribers, done.set)
        for subscriber in subscribers:
            subscriber.tally = tally
        gc.collect()

        started_at = perf_counter()
        for message in messages:
            await bus.send(message)
        await done.wait()
        seconds = tally.finished_at - started_at
    return throughput_result(
        IMPL,
        backend,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
    )


class Repetition:
    """The state of one W3 repetition, shared by the driver and the probe's handler."""

    __slots__ = (
        "data_done",
        "data_left",
        "data_started",
        "draining",
        "system_handled",
        "system_started_at",
    )

    def __init__(self) -> None:
        self.data_started = anyio.Event()  # the data handler is busy with the first message
        self.system_handled = anyio.Event()
        self.data_done = anyio.Event()  # every data message of the repetition was handled
        self.data_left = W3_QUEUED
        self.draining = False  # once the system message started, data handlers stop sleeping
        self.system_started_at = 0.0


class LatencyProbe(BusSubscriber):
    """W3's subscriber: data handler sleeps 0.5 ms, system handler notes when it starts."""

    def __init__(self) -> None:
        self.name = "probe"
        self.rep = Repetition()

    async def on_bus_message(self, message: BusMessage) -> None:
        rep = self.rep
        if isinstance(message, BusSystemMessage):
            rep.system_started_at = perf_counter()
            rep.draining = True
            rep.system_handled.set()
            return
        if not rep.data_started.is_set():
            rep.data_started.set()
        if not rep.draining:
            await anyio.sleep(W3_HANDLER_SLEEP)
        rep.data_left -= 1
        if not rep.data_left:
            rep.data_done.set()


async def priority_latency(workload: str, backend: str) -> Result:
    """W3: with 1,000 data messages queued and the data handler busy, time a system message.

    Each repetition sends the 1,000 data messages, waits until the data handler has started
    the first one (so it is mid-sleep with 999 queued behind it), then times from just before
    ``send(system)`` to the first line of the system handler. The system handler also
    switches the data handler to draining (no more sleeps), so the queue empties in a few
    milliseconds and the next repetition starts from an idle subscriber.
    """
    data = [BusDataMessage(source="bench") for _ in range(W3_QUEUED)]
    systems = [BusSystemMessage(source="bench") for _ in range(W3_REPETITIONS)]
    probe = LatencyProbe()
    samples: list[float] = []
    async with MemoryBus() as bus:
        await bus.subscribe(probe)
        gc.collect()
        for system in systems:
            rep = probe.rep = Repetition()
            for message in data:
                await bus.send(message)
            await rep.data_started.wait()
            sent_at = perf_counter()
            await bus.send(system)
            await rep.system_handled.wait()
            samples.append(rep.system_started_at - sent_at)
            await rep.data_done.wait()
    return latency_result(IMPL, backend, workload, samples)


def main() -> None:
    args = worker_args(__doc__ or "", workloads=["W1", "W2", "W3"], backends=["asyncio", "trio"])
    run = priority_latency if args.workload == "W3" else throughput
    emit(anyio.run(partial(run, args.workload, args.backend), backend=args.backend))


if __name__ == "__main__":
    main()
