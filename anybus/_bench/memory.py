"""anybus ``MemoryBus`` on workloads W1-W5, on asyncio or trio; prints one JSON result line.

Usage: ``python -m anybus._bench.memory --workload W1 --backend trio [--quick]``; W1/W2 also
take ``--messages N`` and ``--subscribers N``, W4 ``--policy drop_oldest|drop_newest|block``
and ``--messages N``. ``anybus bench`` (and the repository's ``benchmarks/run.py``) run this in
a fresh process per measurement. The workloads are defined in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from time import perf_counter

import anyio

from .. import BusDataMessage, BusMessage, BusSubscriber, BusSystemMessage, MemoryBus
from ._common import (
    W3_HANDLER_SLEEP,
    W3_QUEUED,
    W4_HANDLER_SLEEP,
    W4_MAX_BUFFER,
    W4_POLICIES,
    W5_MESSAGES_PER_CYCLE,
    Result,
    Tally,
    churn_result,
    emit,
    gc_objects,
    latency_result,
    slow_subscriber_result,
    throughput_result,
    worker_args,
)
from ._rss import PeakRss

IMPL = "anybus"


def _noop() -> None:
    pass


class CountingSubscriber(BusSubscriber):
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tally = Tally(0, _noop)

    async def on_bus_message(self, message: BusMessage) -> None:
        """Count the delivery."""
        self.tally.hit()


async def throughput(workload: str, backend: str, n_messages: int, n_subscribers: int) -> Result:
    """W1/W2: send every message back to back; time from the first send to the last delivery.

    Before the clock starts, one primer message goes to every subscriber and the run waits
    until all of them handled it, so every worker is running and parked on an empty inbox.
    """
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
        """Note a system message's start; sleep on data messages until draining."""
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


async def priority_latency(workload: str, backend: str, repetitions: int) -> Result:
    """W3: with 1,000 data messages queued and the data handler busy, time a system message.

    Each repetition sends the 1,000 data messages, waits until the data handler has started
    the first one (so it is mid-sleep with 999 queued behind it), then times from just before
    ``send(system)`` to the first line of the system handler. The system handler also
    switches the data handler to draining (no more sleeps), so the queue empties in a few
    milliseconds and the next repetition starts from an idle subscriber.
    """
    data = [BusDataMessage(source="bench") for _ in range(W3_QUEUED)]
    systems = [BusSystemMessage(source="bench") for _ in range(repetitions)]
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


class SlowSubscriber(BusSubscriber):
    """W4's subscriber: counts each data message as its handler starts, then sleeps 1 ms."""

    def __init__(self) -> None:
        self.name = "slow"
        self.handled = 0
        self.primed = anyio.Event()  # set once the primer message was handled

    async def on_bus_message(self, message: BusMessage) -> None:
        """Count the message, then take a millisecond over it."""
        self.handled += 1
        await anyio.sleep(W4_HANDLER_SLEEP)
        self.primed.set()


def _fresh_messages() -> Iterator[BusDataMessage]:
    """W4's messages, each created as it is sent (1,000,000 made up front would dominate RSS)."""
    while True:
        yield BusDataMessage(source="bench")


async def slow_subscriber(backend: str, policy: str, n_messages: int, window: float) -> Result:
    """W4: a publisher sending back to back to one subscriber that handles 1 message per ms.

    The inbox is bounded to ``W4_MAX_BUFFER`` data messages under ``policy``. With
    ``drop_oldest`` and ``drop_newest`` every one of ``n_messages`` is sent; with ``block`` the
    publisher runs for ``window`` seconds, as it can only go at the subscriber's pace,
    and the time it spends inside ``send()`` is summed. The clock and the memory window run
    from just before the first send to just after the last one returns; the bus's statistics
    are read then, and the bus is stopped without draining.
    """
    subscriber = SlowSubscriber()
    async with MemoryBus(max_buffer=W4_MAX_BUFFER, overflow=policy, exit_drain=None) as bus:
        await bus.subscribe(subscriber)
        await bus.send(BusDataMessage(source="primer"))
        await subscriber.primed.wait()
        subscriber.handled = 0
        dropped_before = bus.statistics().subscriptions[0].dropped
        messages = _fresh_messages()
        gc.collect()
        memory = PeakRss()
        memory.start()

        in_send = 0.0  # seconds inside send(): measured under "block" only
        started_at = perf_counter()
        if policy == "block":
            sent = 0
            deadline = started_at + window
            while perf_counter() < deadline:
                message = next(messages)
                before_send = perf_counter()
                await bus.send(message)
                in_send += perf_counter() - before_send
                sent += 1
        else:
            for _, message in zip(range(n_messages), messages, strict=False):
                await bus.send(message)
            sent = n_messages
        seconds = perf_counter() - started_at

        rss = memory.stop()
        handled = subscriber.handled
        stats = bus.statistics().subscriptions[0]
        await bus.stop()
    return slow_subscriber_result(
        IMPL,
        backend,
        policy=policy,
        max_buffer=W4_MAX_BUFFER,
        sent=sent,
        seconds=seconds,
        in_send_seconds=in_send if policy == "block" else None,
        handled=handled,
        dropped=stats.dropped - dropped_before,
        queued=stats.queued_data,
        high_water_mark=stats.high_water_mark,
        memory=rss,
    )


class ChurnSubscriber(BusSubscriber):
    """W5's subscriber: counts what it handles."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handled = 0

    async def on_bus_message(self, message: BusMessage) -> None:
        """Count the message."""
        self.handled += 1


def _task_count() -> int:
    return len(anyio.get_running_tasks())


async def _churn_cycle(
    bus: MemoryBus,
    name: str,
    batch: list[BusDataMessage],
    alive: weakref.WeakSet[ChurnSubscriber],
    *,
    count_tasks: bool = True,
) -> int:
    """One W5 cycle: subscribe, send the batch, wait until it is handled, unsubscribe.

    Returns the number of live tasks while the subscriber was subscribed (-1: not counted).
    """
    subscriber = ChurnSubscriber(name)
    alive.add(subscriber)
    await bus.subscribe(subscriber)
    for message in batch:
        await bus.send(message)
    await bus.wait_idle()
    # Counting live tasks is the measurement's, not the workload's (it costs 9-13 us, more
    # on anyio than on asyncio): the timed cycles count them in the last cycle only.
    tasks = _task_count() if count_tasks else -1
    if subscriber.handled != len(batch):
        raise RuntimeError(f"{name} handled {subscriber.handled} of {len(batch)} messages")
    await bus.unsubscribe(subscriber)
    return tasks


async def _restart_cycles(bus: MemoryBus, name: str, messages: list[BusDataMessage]) -> None:
    """W5's restarts: with one subscriber, per message: stop, start, send it, wait until idle."""
    subscriber = ChurnSubscriber(name)
    await bus.subscribe(subscriber)
    for message in messages:
        await bus.stop()
        await bus.start()
        await bus.send(message)
        await bus.wait_idle()
    if subscriber.handled != len(messages):
        raise RuntimeError(f"{name} handled {subscriber.handled} of {len(messages)} messages")
    await bus.unsubscribe(subscriber)


async def churn(workload: str, backend: str, cycles: int, restarts: int) -> Result:
    """W5: ``cycles`` (1,000) subscribe -> send 10 -> wait until handled -> unsubscribe
    cycles, then ``restarts`` (100) stop -> start cycles of a bus with one subscriber (each
    followed by one message, waited for, so that every restart is shown to dispatch again).

    Counts live tasks before the bus is opened, once it is open, after the cycles and after
    it is closed; counts the garbage collector's objects and the subscribers still alive
    after the cycles; measures RSS across the cycles. One warm-up cycle of each kind runs
    before the baseline, so that one-time allocations (caches filled on first use) do not
    count as growth.
    """
    batches = [
        [BusDataMessage(source="bench") for _ in range(W5_MESSAGES_PER_CYCLE)]
        for _ in range(cycles + 1)
    ]
    restart_messages = [BusDataMessage(source="bench") for _ in range(restarts + 1)]
    alive: weakref.WeakSet[ChurnSubscriber] = weakref.WeakSet()
    tasks = {"before": _task_count()}
    async with MemoryBus() as bus:
        tasks["open"] = _task_count()
        await _churn_cycle(bus, "warm-up", batches.pop(), alive)
        await _restart_cycles(bus, "warm-up-steady", [restart_messages.pop()])
        memory = PeakRss()
        objects_before = gc_objects()
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
        objects_growth = gc_objects() - objects_before
        rss = memory.stop()
    tasks["closed"] = _task_count()
    return churn_result(
        IMPL,
        backend,
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
    args = worker_args(
        __doc__ or "",
        workloads=["W1", "W2", "W3", "W4", "W5"],
        backends=["asyncio", "trio"],
        policies=W4_POLICIES,
    )
    sizes = args.sizes
    run: Callable[[], Awaitable[Result]]
    if args.workload == "W4":
        window = sizes.w4_block_window
        run = partial(slow_subscriber, args.backend, args.policy, args.messages, window)
    elif args.workload == "W5":
        run = partial(churn, args.workload, args.backend, sizes.w5_cycles, sizes.w5_restarts)
    elif args.workload == "W3":
        run = partial(priority_latency, args.workload, args.backend, sizes.w3_repetitions)
    else:
        run = partial(throughput, args.workload, args.backend, args.messages, args.subscribers)
    emit(anyio.run(run, backend=args.backend))


if __name__ == "__main__":
    main()
