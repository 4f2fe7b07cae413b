"""Job workers that announce themselves, in another process, for the cross-process presence
tests: ``python presence_peer.py BACKEND URL CHANNEL pubsub|stream|postgres HEARTBEAT
NAME[@POOL] ...`` (for ``postgres``, URL is the dsn).

It subscribes one :class:`~anybus.JobWorker` per ``NAME`` (a member of ``POOL`` if given;
four jobs at a time; a heartbeat every ``HEARTBEAT`` seconds) and serves these jobs until the
``stop`` job (sent to any of them); :func:`open_peer` starts one from a test, and
:func:`drop_stream` removes what a test left on Redis:

* ``echo`` — answers the payload, plus ``backend`` (the event loop it runs on) and
  ``worker`` (the name of the worker that ran it);
* ``block`` — one update (``{"started": True}``), then waits until cancelled (or the process
  is killed);
* ``stop`` — answers, then the process leaves the bus (its workers say goodbye) and exits.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from anybus import JobContext, JobWorker, WorkerBus
from anybus.postgres import PostgresBus
from anybus.redis import RedisBus, RedisStreamBus

#: The longest a peer lives, in case its test died without stopping it.
LIFETIME = 120


@asynccontextmanager
async def open_peer(
    backend: str,
    url: str,
    channel: str,
    kind: str,
    *workers: str,
    heartbeat: float = 1.0,
) -> AsyncIterator[Process]:
    """This script in a process on ``backend``, serving ``workers`` (``NAME[@POOL]``, a
    heartbeat every ``heartbeat`` seconds); killed on exit if it is still running. Its
    output goes to the test's."""
    argv = [sys.executable, str(Path(__file__)), backend, url, channel, kind, str(heartbeat)]
    process = await anyio.open_process([*argv, *workers], stdout=None, stderr=None)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def drop_stream(url: str, stream: str) -> None:
    """Delete the Redis stream ``stream`` (with its consumer groups)."""
    from anybus.redis._client import RedisClient, RedisSettings

    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-cleanup")
    try:
        await client.command("DEL", stream)
    finally:
        await client.close()


def make_worker(spec: str, backend: str, heartbeat: float, stopped: anyio.Event) -> JobWorker:
    name, _, pool = spec.partition("@")
    worker = JobWorker(name, concurrency=4, pool=pool or None, heartbeat=heartbeat)

    @worker.job("echo")
    async def echo(job: JobContext) -> dict[str, Any]:
        return {**job.payload, "backend": backend, "worker": name}

    @worker.job("block")
    async def block(job: JobContext) -> None:
        await job.update({"started": True})
        await anyio.sleep_forever()

    @worker.job("stop")
    async def stop(job: JobContext) -> None:
        stopped.set()

    return worker


def make_bus(kind: str, url: str, channel: str) -> WorkerBus:
    if kind == "postgres":
        return PostgresBus(url, channel=channel)
    if kind == "stream":
        return RedisStreamBus(url, stream=channel)
    return RedisBus(url, channel=channel)


async def main(
    backend: str, url: str, channel: str, kind: str, heartbeat: float, specs: list[str]
) -> None:
    stopped = anyio.Event()
    async with make_bus(kind, url, channel) as bus:
        for spec in specs:
            await bus.subscribe(make_worker(spec, backend, heartbeat, stopped))
        with anyio.fail_after(LIFETIME):
            await stopped.wait()
            await bus.wait_idle()  # the stop job's answer has gone out


if __name__ == "__main__":
    backend, url, channel, kind, heartbeat, *specs = sys.argv[1:]
    anyio.run(partial(main, backend, url, channel, kind, float(heartbeat), specs), backend=backend)
