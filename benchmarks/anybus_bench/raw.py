"""The raw-primitive ceiling for W1 and W2: one queue per subscriber, no bus.

``--primitive anyio`` (asyncio or trio): one anyio memory object stream per subscriber.
``--primitive asyncio-queue`` (asyncio only, plain ``asyncio.run``): one ``asyncio.Queue`` per
subscriber. Each consumer takes messages with ``receive_nowait()`` / ``get_nowait()``, awaits
the trivial handler, and yields every 64 messages; it waits with ``receive()`` / ``get()`` only
when its queue is empty. The producer puts each message into every queue with ``send_nowait()``
/ ``put_nowait()`` and yields every 64 messages, as anybus's ``send()`` does. That is one queue
hop per delivery and nothing else: the practical ceiling for a bus built that way.

Usage: ``python benchmarks/anybus_bench/raw.py --workload W1 --backend trio --primitive anyio
[--quick] [--messages N] [--subscribers N]``, with the Python where anybus is installed (for its
workload sizes; ``benchmarks/run.py`` runs it so); prints one JSON result line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
from functools import partial
from time import perf_counter

import anyio
from anyio import EndOfStream, WouldBlock, create_memory_object_stream, create_task_group
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from anybus._bench._common import (
    THROUGHPUT_SIZES,
    YIELD_INTERVAL,
    Result,
    Tally,
    emit,
    throughput_result,
    worker_args,
)


def _noop() -> None:
    pass


class Sink:
    """The trivial handler: count the delivery, signal on the last one."""

    def __init__(self) -> None:
        self.tally = Tally(0, _noop)

    async def on_message(self, message: object) -> None:
        """Count the delivery."""
        self.tally.hit()


def _make_messages(count: int) -> list[object]:
    return [object() for _ in range(count)]


# --- anyio memory object streams, on asyncio or trio ---------------------------------------


async def _drain_stream(receive: MemoryObjectReceiveStream[object], sink: Sink) -> None:
    receive_nowait = receive.receive_nowait
    handle = sink.on_message
    handled = 0
    while True:
        try:
            message = receive_nowait()
        except WouldBlock:
            handled = 0
            try:
                message = await receive.receive()
            except EndOfStream:
                return
        except EndOfStream:
            return
        await handle(message)
        handled += 1
        if handled == YIELD_INTERVAL:
            handled = 0
            await checkpoint()


async def _publish_streams(
    sends: list[MemoryObjectSendStream[object]], messages: list[object]
) -> None:
    pushes = [send.send_nowait for send in sends]
    sent = 0
    for message in messages:
        for push in pushes:
            push(message)
        sent += 1
        if sent == YIELD_INTERVAL:
            sent = 0
            await checkpoint()


async def anyio_throughput(
    workload: str, backend: str, n_messages: int, n_subscribers: int
) -> Result:
    """W1/W2 over anyio memory object streams; as ``anybus._bench.memory.throughput``."""
    messages = _make_messages(n_messages)
    sinks = [Sink() for _ in range(n_subscribers)]
    streams = [create_memory_object_stream[object](math.inf) for _ in sinks]
    sends = [send for send, _ in streams]
    try:
        async with create_task_group() as task_group:
            for sink, (_, receive) in zip(sinks, streams, strict=True):
                task_group.start_soon(_drain_stream, receive, sink)

            primed = anyio.Event()
            primer = Tally(n_subscribers, primed.set)
            for sink in sinks:
                sink.tally = primer
            await _publish_streams(sends, _make_messages(1))
            await primed.wait()

            done = anyio.Event()
            tally = Tally(n_messages * n_subscribers, done.set)
            for sink in sinks:
                sink.tally = tally
            gc.collect()

            started_at = perf_counter()
            await _publish_streams(sends, messages)
            await done.wait()
            seconds = tally.finished_at - started_at
            task_group.cancel_scope.cancel(reason="benchmark finished")
    finally:
        for send, receive in streams:
            send.close()
            receive.close()
    return throughput_result(
        "raw-anyio",
        backend,
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
    )


# --- asyncio.Queue, on plain asyncio --------------------------------------------------------


async def _drain_queue(queue: asyncio.Queue[object], sink: Sink) -> None:
    get_nowait = queue.get_nowait
    handle = sink.on_message
    handled = 0
    while True:
        try:
            message = get_nowait()
        except asyncio.QueueEmpty:
            handled = 0
            message = await queue.get()
        await handle(message)
        handled += 1
        if handled == YIELD_INTERVAL:
            handled = 0
            await asyncio.sleep(0)


async def _publish_queues(queues: list[asyncio.Queue[object]], messages: list[object]) -> None:
    pushes = [queue.put_nowait for queue in queues]
    sent = 0
    for message in messages:
        for push in pushes:
            push(message)
        sent += 1
        if sent == YIELD_INTERVAL:
            sent = 0
            await asyncio.sleep(0)


async def queue_throughput(workload: str, n_messages: int, n_subscribers: int) -> Result:
    """W1/W2 over ``asyncio.Queue``; as ``anybus._bench.memory.throughput``."""
    messages = _make_messages(n_messages)
    sinks = [Sink() for _ in range(n_subscribers)]
    queues: list[asyncio.Queue[object]] = [asyncio.Queue() for _ in sinks]
    consumers = [
        asyncio.create_task(_drain_queue(queue, sink))
        for queue, sink in zip(queues, sinks, strict=True)
    ]
    try:
        primed = asyncio.Event()
        primer = Tally(n_subscribers, primed.set)
        for sink in sinks:
            sink.tally = primer
        await _publish_queues(queues, _make_messages(1))
        await primed.wait()

        done = asyncio.Event()
        tally = Tally(n_messages * n_subscribers, done.set)
        for sink in sinks:
            sink.tally = tally
        gc.collect()

        started_at = perf_counter()
        await _publish_queues(queues, messages)
        await done.wait()
        seconds = tally.finished_at - started_at
    finally:
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    return throughput_result(
        "raw-asyncio-queue",
        "asyncio",
        workload,
        messages=n_messages,
        subscribers=n_subscribers,
        seconds=seconds,
    )


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    argv = sys.argv[1:]
    primitive = argparse.ArgumentParser(add_help=False)
    primitive.add_argument("--primitive", default="anyio", choices=["anyio", "asyncio-queue"])
    known, rest = primitive.parse_known_args(argv)
    args = worker_args(
        __doc__ or "", workloads=sorted(THROUGHPUT_SIZES), backends=["asyncio", "trio"], argv=rest
    )
    if known.primitive == "asyncio-queue":
        if args.backend != "asyncio":
            raise SystemExit(
                f"--primitive asyncio-queue runs on asyncio only, not {args.backend!r}"
            )
        emit(asyncio.run(queue_throughput(args.workload, args.messages, args.subscribers)))
    else:
        run = partial(
            anyio_throughput, args.workload, args.backend, args.messages, args.subscribers
        )
        emit(anyio.run(run, backend=args.backend))


if __name__ == "__main__":
    main()
