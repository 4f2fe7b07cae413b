"""The reference: pipecat's ``AsyncQueueBus`` on workloads W1-W5, on asyncio.

Run by path with a Python that has pipecat-ai (its own virtual environment: pipecat is heavy;
``benchmarks/setup_pipecat.sh`` creates one), the way ``benchmarks/run.py`` does:
``benchmarks/.venv-pipecat/bin/python benchmarks/anybus_bench/pipecat_memory.py --workload W1
[--quick]``. It prints one JSON result line. It does not import anybus (nor anyio): only the
standard library, pipecat, and the package's stdlib-only ``anybus/_bench/_common.py`` and
``_rss.py``, by path (the workload sizes are theirs). The measurement mirrors
``anybus/_bench/memory.py`` step for step, with pipecat's bus, subscriber and message classes
and plain asyncio in place of anyio.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from pipecat.bus.local.async_queue import AsyncQueueBus  # type: ignore[import-not-found]
from pipecat.bus.messages import (  # type: ignore[import-not-found]
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
)
from pipecat.bus.subscriber import BusSubscriber  # type: ignore[import-not-found]
from pipecat.utils.asyncio.task_manager import TaskManager  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from anybus._bench import _common as common
    from anybus._bench._rss import PeakRss
else:  # the package's stdlib-only modules, by path: anybus is not installed here
    sys.path.append(str(Path(__file__).resolve().parents[2] / "anybus" / "_bench"))
    import _common as common
    from _rss import PeakRss

Result = common.Result
Tally = common.Tally

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


async def throughput(workload: str, n_messages: int, n_subscribers: int) -> Result:
    """W1/W2, as in ``memory.throughput``."""
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
    return common.throughput_result(
        IMPL,
        BACKEND,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
    )


class Repetition:
    """The state of one W3 repetition, as in ``memory.Repetition``."""

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
        self.data_left = common.W3_QUEUED
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
            await asyncio.sleep(common.W3_HANDLER_SLEEP)
        rep.data_left -= 1
        if not rep.data_left:
            rep.data_done.set()


async def priority_latency(workload: str, repetitions: int) -> Result:
    """W3, as in ``memory.priority_latency``."""
    data = [BusDataMessage(source="bench") for _ in range(common.W3_QUEUED)]
    systems = [BusSystemMessage(source="bench") for _ in range(repetitions)]
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
    return common.latency_result(IMPL, BACKEND, workload, samples)


class SlowSubscriber(BusSubscriber):  # type: ignore[misc]
    """W4's subscriber, as in ``memory.SlowSubscriber``."""

    def __init__(self) -> None:
        self.handled = 0
        self.primed = asyncio.Event()

    @property
    def name(self) -> str:
        return "slow"

    async def on_bus_message(self, message: BusMessage) -> None:
        self.handled += 1
        await asyncio.sleep(common.W4_HANDLER_SLEEP)
        self.primed.set()


def _fresh_messages() -> Iterator[BusDataMessage]:
    """W4's messages, each created as it is sent, as in ``memory._fresh_messages``."""
    while True:
        yield BusDataMessage(source="bench")


def _queued(bus: AsyncQueueBus, name: str) -> int:
    """Messages waiting for subscriber ``name``: in its priority queue and its data queue.

    pipecat has no statistics API; this reads the sizes of the subscription's two queues.
    """
    subscription = bus._subscriptions[name]
    return int(subscription.queue.qsize() + subscription.data_queue.qsize())


async def slow_subscriber(n_messages: int) -> Result:
    """W4, as in ``memory.slow_subscriber`` with ``drop_*``: pipecat's queues are unbounded,
    so every message sent is queued; all ``n_messages`` are sent."""
    subscriber = SlowSubscriber()
    bus = await _open_bus()
    try:
        await bus.subscribe(subscriber)
        await bus.send(BusDataMessage(source="primer"))
        await subscriber.primed.wait()
        subscriber.handled = 0
        messages = _fresh_messages()
        gc.collect()
        memory = PeakRss()
        memory.start()

        started_at = perf_counter()
        for _, message in zip(range(n_messages), messages, strict=False):
            await bus.send(message)
        seconds = perf_counter() - started_at

        rss = memory.stop()
        handled = subscriber.handled
        queued = _queued(bus, subscriber.name)
    finally:
        await _close_bus(bus)
    return common.slow_subscriber_result(
        IMPL,
        BACKEND,
        policy="unbounded",
        max_buffer=None,
        sent=n_messages,
        seconds=seconds,
        in_send_seconds=None,
        handled=handled,
        dropped=None,
        queued=queued,
        high_water_mark=None,
        memory=rss,
    )


class ChurnSubscriber(BusSubscriber):  # type: ignore[misc]
    """W5's subscriber: counts what it handles; sets ``done`` once it has handled
    ``expected`` messages (pipecat has no ``wait_idle()``)."""

    def __init__(self, name: str, expected: int) -> None:
        self._name = name
        self.handled = 0
        self.expected = expected
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        self.handled += 1
        if self.handled == self.expected:
            self.done.set()


def _task_count() -> int:
    return len(asyncio.all_tasks())


async def _churn_cycle(
    bus: AsyncQueueBus,
    name: str,
    batch: list[BusDataMessage],
    alive: weakref.WeakSet[ChurnSubscriber],
    *,
    count_tasks: bool = True,
) -> int:
    """One W5 cycle, as in ``memory._churn_cycle``, waiting on the subscriber's event."""
    subscriber = ChurnSubscriber(name, len(batch))
    alive.add(subscriber)
    await bus.subscribe(subscriber)
    for message in batch:
        await bus.send(message)
    await subscriber.done.wait()
    # Counting live tasks is the measurement's, not the workload's (it costs 9-13 us, more
    # on anyio than on asyncio): the timed cycles count them in the last cycle only.
    tasks = _task_count() if count_tasks else -1
    await bus.unsubscribe(subscriber)
    return tasks


async def _restart_cycles(bus: AsyncQueueBus, name: str, messages: list[BusDataMessage]) -> None:
    """W5's restarts, as in ``memory._restart_cycles``, waiting on an event per message."""
    subscriber = ChurnSubscriber(name, 0)
    await bus.subscribe(subscriber)
    for message in messages:
        await bus.stop()
        await bus.start()
        subscriber.expected += 1
        subscriber.done = asyncio.Event()
        await bus.send(message)
        await subscriber.done.wait()
    if subscriber.handled != len(messages):
        raise RuntimeError(f"{name} handled {subscriber.handled} of {len(messages)} messages")
    await bus.unsubscribe(subscriber)


async def churn(workload: str, cycles: int, restarts: int) -> Result:
    """W5, as in ``memory.churn``."""
    batches = [
        [BusDataMessage(source="bench") for _ in range(common.W5_MESSAGES_PER_CYCLE)]
        for _ in range(cycles + 1)
    ]
    restart_messages = [BusDataMessage(source="bench") for _ in range(restarts + 1)]
    alive: weakref.WeakSet[ChurnSubscriber] = weakref.WeakSet()
    tasks = {"before": _task_count()}
    bus = await _open_bus()
    try:
        tasks["open"] = _task_count()
        await _churn_cycle(bus, "warm-up", batches.pop(), alive)
        await _restart_cycles(bus, "warm-up-steady", [restart_messages.pop()])
        memory = PeakRss()
        objects_before = common.gc_objects()
        memory.start()

        started_at = perf_counter()
        last = len(batches) - 1
        for i, batch in enumerate(batches):
            counted = await _churn_cycle(bus, f"churn-{i}", batch, alive, count_tasks=i == last)
        tasks["subscribed"] = counted
        cycles_done_at = perf_counter()
        await _restart_cycles(bus, "steady", restart_messages)
        finished_at = perf_counter()

        tasks["after_cycles"] = _task_count()
        objects_growth = common.gc_objects() - objects_before
        rss = memory.stop()
    finally:
        await _close_bus(bus)
    tasks["closed"] = _task_count()
    return common.churn_result(
        IMPL,
        BACKEND,
        cycles=cycles,
        restarts=restarts,
        cycles_seconds=cycles_done_at - started_at,
        restarts_seconds=finished_at - cycles_done_at,
        tasks=tasks,
        objects_growth=objects_growth,
        subscribers_alive=len(alive),
        memory=rss,
    )


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    args = common.worker_args(
        __doc__ or "", workloads=["W1", "W2", "W3", "W4", "W5"], backends=[BACKEND]
    )
    sizes = args.sizes
    if args.workload == "W4":
        common.emit(asyncio.run(slow_subscriber(args.messages)))
    elif args.workload == "W5":
        common.emit(asyncio.run(churn(args.workload, sizes.w5_cycles, sizes.w5_restarts)))
    elif args.workload == "W3":
        common.emit(asyncio.run(priority_latency(args.workload, sizes.w3_repetitions)))
    else:
        common.emit(asyncio.run(throughput(args.workload, args.messages, args.subscribers)))


if __name__ == "__main__":
    main()
