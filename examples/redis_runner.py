"""The runner half of a two-process setup over Redis: it calls jobs on asyncio (or trio).

With ``examples/redis_worker.py`` running in another terminal::

    python examples/redis_runner.py --backend asyncio

It waits for the worker to announce itself, runs three ``resize`` jobs concurrently while printing
their progress, gives up on a fourth (which cancels it in the worker's process), and finally
shuts the worker down (``--keep-worker`` leaves it running). Ctrl-C stops it (status 130).
"""

from __future__ import annotations

import argparse
import sys

import anyio

from anybus import (
    JobCancelled,
    WorkerBus,
    WorkerUnavailable,
    open_job,
    request,
    worker_directory,
)
from anybus.redis import RedisBus


async def find_worker(bus: WorkerBus) -> None:
    """Wait until the worker has announced itself, so either process may start first.

    (A job waits for its worker by default anyway; this gives a friendlier message.)"""
    directory = await worker_directory(bus)  # starts following the workers' announcements
    try:
        await directory.wait_for("resizer", timeout=0.5)
        return
    except WorkerUnavailable:
        print("runner: waiting for the worker...", flush=True)
    try:
        await directory.wait_for("resizer", timeout=30)
    except WorkerUnavailable:
        raise SystemExit(
            "runner: no worker announced itself on this channel; start examples/redis_worker.py"
        ) from None


async def resize(bus: WorkerBus, image: str) -> None:
    try:
        async with open_job(bus, "resizer", {"image": image}, job_name="resize") as job:
            async for update in job.updates():
                print(f"runner: {image} step {update['step']}/{update['of']}")
            result = await job.result()
    except (JobCancelled, WorkerUnavailable) as exc:  # the worker stopped, or went away
        print(f"runner: {image} not resized: {exc}")
        return
    print(
        f"runner: {image} -> {result.response['size']} (resized on {result.response['backend']})"
    )


async def main(backend: str, url: str, channel: str, keep_worker: bool) -> None:
    async with RedisBus(url, channel=channel, name="runner-process") as bus:
        await find_worker(bus)
        print(f"runner: worker found; calling it from {backend}")
        async with anyio.create_task_group() as task_group:
            for image in ("cat.png", "dog.png", "owl.png"):
                task_group.start_soon(resize, bus, image)
        # A job the runner gives up on: leaving its scope cancels it in the worker's process.
        with anyio.move_on_after(0.08):
            await request(bus, "resizer", {"image": "huge.tiff", "steps": 1000}, job_name="resize")
        print("runner: gave up on huge.tiff")
        if not keep_worker:
            await request(bus, "resizer", job_name="shutdown", timeout=10)
            print("runner: worker shut down")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="an anybus runner calling jobs over Redis")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--channel", default="anybus-example")
    parser.add_argument("--keep-worker", action="store_true", help="do not shut the worker down")
    args = parser.parse_args()
    try:
        anyio.run(
            main, args.backend, args.url, args.channel, args.keep_worker, backend=args.backend
        )
    except* KeyboardInterrupt:  # on trio, grouped with the tasks it interrupted
        # Ctrl-C cancelled the jobs in flight (and so, in the worker, the jobs themselves).
        print("runner: interrupted", file=sys.stderr)
        sys.exit(130)  # the shell's status for "ended by Ctrl-C" (128 + SIGINT)
