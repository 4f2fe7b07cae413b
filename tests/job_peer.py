"""A job worker in another process, for the cross-process job tests:
``python job_peer.py BACKEND URL CHANNEL pubsub|stream|postgres`` (for ``postgres``, URL is
the dsn).

It subscribes a :class:`~anybus.JobWorker` named ``remote`` (four jobs at a time), announces
itself with ``BusWorkerReadyMessage``, and serves these jobs until the ``stop`` job:

* ``echo`` — answers the payload, plus ``backend``: the event loop it runs on;
* ``progress`` — three updates, then a streamed answer of three chunks;
* ``block`` — one update (``{"started": True}``), then waits until cancelled;
* ``announce`` — reports a worker error (``BusWorkerErrorMessage``), then waits forever;
* ``crash`` — one update, then the process dies on the spot (exit status 3);
* ``stop`` — answers, then the process exits normally.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Any

import anyio

from anybus import BusWorkerErrorMessage, BusWorkerReadyMessage, JobContext, JobWorker, WorkerBus
from anybus.postgres import PostgresBus
from anybus.redis import RedisBus, RedisStreamBus


def make_worker(bus: WorkerBus, backend: str, stopped: anyio.Event) -> JobWorker:
    worker = JobWorker("remote", concurrency=4)

    @worker.job("echo")
    async def echo(job: JobContext) -> dict[str, Any]:
        return {**job.payload, "backend": backend}

    @worker.job("progress")
    async def progress(job: JobContext) -> dict[str, Any]:
        for step in range(3):
            await job.update({"step": step})
        await job.stream_start({"chunks": 3})
        for n in range(3):
            await job.stream_data({"n": n})
        await job.stream_end()
        return {"backend": backend}

    @worker.job("block")
    async def block(job: JobContext) -> None:
        await job.update({"started": True})
        await anyio.sleep_forever()

    @worker.job("announce")
    async def announce(job: JobContext) -> None:
        await bus.send(BusWorkerErrorMessage(source="remote", error="out of memory"))
        await anyio.sleep_forever()

    @worker.job("crash")
    async def crash(job: JobContext) -> None:
        await job.update({"about_to": "crash"})
        os._exit(3)

    @worker.job("stop")
    async def stop(job: JobContext) -> None:
        stopped.set()

    return worker


async def main(backend: str, url: str, channel: str, kind: str) -> None:
    bus: RedisBus | RedisStreamBus | PostgresBus
    if kind == "postgres":
        bus = PostgresBus(url, channel=channel, name="remote")
    elif kind == "stream":
        bus = RedisStreamBus(url, stream=channel, name="remote")
    else:
        bus = RedisBus(url, channel=channel, name="remote")
    stopped = anyio.Event()
    async with bus:
        await bus.subscribe(make_worker(bus, backend, stopped))
        await bus.send(BusWorkerReadyMessage(source="remote", target="caller", runner="test"))
        with anyio.fail_after(120):
            await stopped.wait()
            await bus.wait_idle()  # the stop job's answer has gone out


if __name__ == "__main__":
    backend, url, channel, kind = sys.argv[1:5]
    anyio.run(partial(main, backend, url, channel, kind), backend=backend)
