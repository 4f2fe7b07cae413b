"""The worker half of a two-process setup over Redis: a job worker on trio (or asyncio).

Start it first, in one terminal (``pip install 'anybus[redis,trio]'``, a Redis server on
127.0.0.1:6379)::

    python examples/redis_worker.py --backend trio

then run ``examples/redis_runner.py`` in another. The worker serves ``resize`` jobs, with
progress updates, until a runner sends it the ``shutdown`` job (or you press Ctrl-C, which
cancels the jobs it runs and exits with status 130).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from anybus import JobContext, JobWorker, wait_for_worker
from anybus.redis import RedisBus


async def main(backend: str, url: str, channel: str) -> None:
    done = anyio.Event()
    worker = JobWorker("resizer", concurrency=2)  # two jobs at a time, the rest wait in order

    @worker.job("resize")
    async def resize(job: JobContext) -> dict[str, Any]:
        image, steps = job.payload["image"], int(job.payload.get("steps", 3))
        print(f"worker: resizing {image}")
        try:
            for step in range(1, steps + 1):
                await anyio.sleep(0.05)  # the work
                await job.update({"image": image, "step": step, "of": steps})
        except anyio.get_cancelled_exc_class():
            # A cancel message from the runner gives a reason; Ctrl-C here gives none.
            by = "by the runner" if job.cancel_reason else "(the worker is stopping)"
            print(f"worker: {image} cancelled {by}")
            raise
        print(f"worker: {image} done")
        return {"image": image, "size": "640x480", "backend": backend}

    @worker.job("shutdown")
    async def shutdown(job: JobContext) -> None:
        done.set()

    # The bus's name identifies this process on the channel; the worker's name is what
    # runners address jobs to.
    async with RedisBus(url, channel=channel, name="resizer-process") as bus:
        await bus.subscribe(worker)
        await wait_for_worker(bus, "resizer")  # it has announced itself: runners can find it
        print(f"worker: serving 'resize' jobs on {backend}, channel {channel!r}", flush=True)
        await done.wait()
        await bus.wait_idle()  # the shutdown job's answer has gone out
    print(f"worker: stopped after {worker.completed} jobs ({worker.cancelled} cancelled)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="an anybus job worker on Redis")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="trio")
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--channel", default="anybus-example")
    args = parser.parse_args()
    try:
        anyio.run(main, args.backend, args.url, args.channel, backend=args.backend)
    except* KeyboardInterrupt:  # on trio, grouped with the tasks it interrupted
        # Ctrl-C cancelled everything inside anyio.run; a traceback would tell nothing more.
        print("worker: interrupted", file=sys.stderr)
        sys.exit(130)  # the shell's status for "ended by Ctrl-C" (128 + SIGINT)
