"""Request/reply round trips per second: ``request(bus, ...)`` against hand-correlated messages.

    python benchmarks/round_trips.py                        # memory bus, asyncio and trio
    python benchmarks/round_trips.py --bus redis --bus stream --jobs 1000
    python benchmarks/round_trips.py --json results.json

Each cell runs ``--jobs`` jobs with ``--in-flight`` of them outstanding at a time, two ways on
the same bus in the same run:

* ``api`` — ``await request(bus, ...)`` against a :class:`~anybus.JobWorker` (one running job
  per in-flight caller, so the worker's limit is not what is measured);
* ``hand`` — the reference: the caller sends a ``BusJobRequestMessage`` itself and waits on
  an event that its own subscriber sets when the matching ``BusJobResponseMessage`` comes;
  the worker is a plain subscriber that answers at once. This is what pipecat leaves every
  caller to write.

The ratio api/hand is the price of the job API (its cancel scope, routing and bookkeeping).
For Redis the caller and the worker each have their own bus instance (as two processes would)
on one channel; both run in this process. Runs alternate the two ways and the median is shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anybus import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    BusSubscriber,
    JobContext,
    JobStatus,
    JobWorker,
    MemoryBus,
    WorkerBus,
    request,
)


def bus_maker(kind: str, url: str) -> Callable[[], tuple[WorkerBus, WorkerBus]]:
    """Return a factory of (caller bus, worker bus) for ``kind``."""
    if kind == "memory":

        def memory() -> tuple[WorkerBus, WorkerBus]:
            bus = MemoryBus()
            return bus, bus

        return memory
    from anybus.redis import RedisBus, RedisStreamBus

    def network() -> tuple[WorkerBus, WorkerBus]:
        channel = f"anybus-bench-jobs-{time.monotonic_ns()}"
        if kind == "redis":
            return RedisBus(url, channel=channel), RedisBus(url, channel=channel)
        return (
            RedisStreamBus(url, stream=channel, name=f"{channel}-caller"),
            RedisStreamBus(url, stream=channel, name=f"{channel}-worker"),
        )

    return network


@asynccontextmanager
async def running(*buses: WorkerBus) -> AsyncIterator[None]:
    """Run each distinct bus of ``buses`` (for memory, caller and worker share one)."""
    async with AsyncExitStack() as stack:
        for bus in dict.fromkeys(buses):
            await stack.enter_async_context(bus)
        yield


class HandWorker(BusSubscriber):
    """Answers every request addressed to it at once."""

    def __init__(self, bus: WorkerBus) -> None:
        self.name = "worker"
        self.bus = bus

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage) and message.target == "worker":
            await self.bus.send(
                BusJobResponseMessage(
                    source="worker",
                    target=message.source,
                    job_id=message.job_id,
                    status=JobStatus.COMPLETED,
                    response=message.payload,
                )
            )


class HandCaller(BusSubscriber):
    """Matches responses to the events their callers wait on."""

    def __init__(self) -> None:
        self.name = "caller"
        self.waiting: dict[str, anyio.Event] = {}

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusJobResponseMessage):
            event = self.waiting.pop(message.job_id, None)
            if event is not None:
                event.set()


async def _drive(jobs: int, in_flight: int, call: Callable[[int], Any]) -> float:
    """Run ``jobs`` calls, ``in_flight`` at a time; return round trips per second."""
    counter = iter(range(jobs))

    async def lane() -> None:
        for n in counter:
            await call(n)

    started = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(in_flight):
            task_group.start_soon(lane)
    return jobs / (time.perf_counter() - started)


async def measure_api(
    make: Callable[[], tuple[WorkerBus, WorkerBus]], jobs: int, flight: int
) -> float:
    async def echo(job: JobContext) -> dict[str, Any]:
        return job.payload

    caller_bus, worker_bus = make()
    async with running(caller_bus, worker_bus):
        await worker_bus.subscribe(JobWorker("worker", handlers={None: echo}, concurrency=flight))

        async def call(n: int) -> None:
            await request(caller_bus, "worker", {"n": n})

        await call(-1)  # warm up: the job client subscribes on the first job
        return await _drive(jobs, flight, call)


async def measure_hand(
    make: Callable[[], tuple[WorkerBus, WorkerBus]], jobs: int, flight: int
) -> float:
    caller_bus, worker_bus = make()
    async with running(caller_bus, worker_bus):
        await worker_bus.subscribe(HandWorker(worker_bus))
        caller = await caller_bus.subscribe(HandCaller())

        async def call(n: int) -> None:
            job_id = f"job-{n}"
            event = caller.waiting[job_id] = anyio.Event()
            await caller_bus.send(
                BusJobRequestMessage(
                    source="caller", target="worker", job_id=job_id, payload={"n": n}
                )
            )
            await event.wait()

        await call(-1)
        return await _drive(jobs, flight, call)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bus",
        action="append",
        choices=["memory", "redis", "stream"],
        help="repeatable; default memory",
    )
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument(
        "--in-flight", default="1,32", help="comma-separated outstanding jobs per cell"
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="jobs per run (default 5000 memory, 1000 Redis)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(
        f"{'bus':8} {'backend':8} {'in flight':>9} {'api (rt/s)':>12} {'hand (rt/s)':>12} "
        f"{'api/hand':>9}"
    )
    for kind in args.bus or ["memory"]:
        jobs = args.jobs or (5000 if kind == "memory" else 1000)
        make = bus_maker(kind, args.redis_url)
        for backend in args.backends.split(","):
            for flight in (int(f) for f in args.in_flight.split(",")):
                api: list[float] = []
                hand: list[float] = []
                for run in range(args.runs):
                    order = [("api", measure_api, api), ("hand", measure_hand, hand)]
                    for _, measure, out in order if run % 2 == 0 else reversed(order):
                        out.append(anyio.run(measure, make, jobs, flight, backend=backend))
                row = {
                    "bus": kind,
                    "backend": backend,
                    "in_flight": flight,
                    "jobs": jobs,
                    "api": statistics.median(api),
                    "hand": statistics.median(hand),
                    "api_runs": api,
                    "hand_runs": hand,
                }
                row["ratio"] = row["api"] / row["hand"]
                rows.append(row)
                print(
                    f"{kind:8} {backend:8} {flight:>9} {row['api']:>12,.0f} {row['hand']:>12,.0f} "
                    f"{row['ratio']:>9.2f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
