"""The reference: pipecat's ``AsyncQueueBus`` on workloads W1-W3, on asyncio.

Run it with the pipecat virtual environment's Python (``benchmarks/setup_pipecat.sh`` creates
it): ``benchmarks/.venv-pipecat/bin/python benchmarks/pipecat_reference.py --workload W1``.
It prints one JSON result line. It does not import anybus: the measurement mirrors
``workloads.py`` step for step, with pipecat's bus, subscriber and message classes and plain
asyncio in place of anyio.
"""

from __future__ import annotations

import asyncio
import gc
from time import perf_counter

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
from pipecat.bus.local.async_queue import AsyncQueueBus  # type: ignore[import-not-found]
from pipecat.bus.messages import (  # type: ignore[import-not-found]
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
)
from pipecat.bus.subscriber import BusSubscriber  # type: ignore[import-not-found]
from pipecat.utils.asyncio.task_manager import TaskManager  # type: ignore[import-not-found]

IMPL = "pipecat"
BACKEND = "asyncio"


def _noop() -> None:
    pass


async def _open_bus() -> AsyncQueueBus:
    """Create and start a bus the way pipecat's ``WorkerRunner`` does.

    The bus creates its dispatch tasks through a task manager, so one must be set up before
    ``start()``; ``start()`` itself only spawns the tasks of subscribers already registered.
    """
    bus = AsyncQueueBus()
    await bus.setup(TaskManager(loop=asyncio.get_running_loop()))
    await bus.start()
    return bus


async def _close_bus(bus: AsyncQueueBus) -> None:
    await bus.stop()
    await bus.cleanup()


class CountingSubscriber(BusSubscriber):  # type: ignore[misc]
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.tally = Tally(0, _noop)

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        self.tally.hit()


async def throughput(workload: str) -> Result:
    """W1/W2, as in ``workloads.throughput``."""
    n_messages, n_subscribers = THROUGHPUT_SIZES[workload]
    messages = [BusDataMessage(source="bench") for _ in range(n_messages)]
    subscribers = [CountingSubscriber(f"subscriber-{i}") for i in range(n_subscribers)]
    bus = await _open_bus()
    try:
        for subscriber in subscribers:
            await bus.subscribe(subscriber)

        primed = asyncio.Event()
        primer = Tally(n_subscribers, primed.set)
        for subscriber in subscribers:
            subscriber.tally = primer
        await bus.send(BusDataMessage(source="primer"))
        await primed.wait()

        done = asyncio.Event()
        tally = Tally(n_messages * n_subscribers, done.set)
        for subscriber in subscribers:
            subscriber.tally = tally
        gc.collect()

        started_at = perf_counter()
        for message in messages:
            await bus.send(message)
        await done.wait()
        seconds = tally.finished_at - started_at
    finally:
        await _close_bus(bus)
    return throughput_result(
        IMPL,
        BACKEND,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
    )


class Repetition:
    """The state of one W3 repetition, as in ``workloads.Repetition``."""

    __slots__ = (
        "data_done",
        "data_left",
        "data_started",
        "draining",
        "system_handled",
        "system_started_at",
    )

    def __init__(self) -> None:
        self.data_started = asyncio.Event()
        self.system_handled = asyncio.Event()
        self.data_done = asyncio.Event()
        self.data_left = W3_QUEUED
        self.draining = False
        self.system_started_at = 0.0


class LatencyProbe(BusSubscriber):  # type: ignore[misc]
    """W3's subscriber: data handler sleeps 0.5 ms, system handler notes when it starts."""

    def __init__(self) -> None:
        self.rep = Repetition()

    @property
    def name(self) -> str:
        return "probe"

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
            await asyncio.sleep(W3_HANDLER_SLEEP)
        rep.data_left -= 1
        if not rep.data_left:
            rep.data_done.set()


async def priority_latency(workload: str) -> Result:
    """W3, as in ``workloads.priority_latency``."""
    data = [BusDataMessage(source="bench") for _ in range(W3_QUEUED)]
    systems = [BusSystemMessage(source="bench") for _ in range(W3_REPETITIONS)]
    probe = LatencyProbe()
    samples: list[float] = []
    bus = await _open_bus()
    try:
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
    finally:
        await _close_bus(bus)
    return latency_result(IMPL, BACKEND, workload, samples)


def main() -> None:
    args = worker_args(__doc__ or "", workloads=["W1", "W2", "W3"], backends=[BACKEND])
    if args.workload == "W3":
        emit(asyncio.run(priority_latency(args.workload)))
    else:
        emit(asyncio.run(throughput(args.workload)))


if __name__ == "__main__":
    main()
