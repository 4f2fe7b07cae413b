"""A runner hands jobs to workers, follows their progress, and cancels one mid-way.

Run it with ``python examples/jobs.py`` (asyncio) or ``python examples/jobs.py --backend trio``.

* ``transcriber`` runs one job at a time (the default); further requests wait in order.
* ``summarizer`` streams its answer in chunks.
* The runner waits for the first transcription with a deadline that is too short: leaving the
  job's scope cancels the job at the worker (a ``BusJobCancelMessage``, a system message), and
  the next queued job starts at once.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from anybus import JobContext, JobFailed, JobWorker, MemoryBus, open_job, request

transcriber = JobWorker("transcriber")  # concurrency=1: a sequential worker


@transcriber.job("transcribe")
async def transcribe(job: JobContext) -> dict[str, Any]:
    """Pretend to transcribe: one progress update per second of audio."""
    seconds = int(job.payload["seconds"])
    if seconds <= 0:
        raise JobFailed("nothing to transcribe", response={"seconds": seconds})
    try:
        for done in range(1, seconds + 1):
            await anyio.sleep(0.05)  # the work
            await job.update({"percent": round(100 * done / seconds)})
    except anyio.get_cancelled_exc_class():
        print(f"transcriber: job {job.payload['file']} cancelled ({job.cancel_reason})")
        raise
    return {"text": f"transcript of {job.payload['file']}"}


summarizer = JobWorker("summarizer")


@summarizer.job()  # requests that name no job
async def summarize(job: JobContext) -> dict[str, Any]:
    words = str(job.payload["text"]).split()
    await job.stream_start({"words": len(words)})
    for word in words:
        await job.stream_data({"word": word.upper()})
    await job.stream_end()
    return {"summary": " ".join(words[:2]) + "..."}


async def main(backend: str) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(transcriber)
        await bus.subscribe(summarizer)
        print(f"runner: on {backend}")

        # 1. A job followed step by step: progress updates, then the result.
        async with open_job(
            bus, "transcriber", {"file": "a.wav", "seconds": 3}, job_name="transcribe"
        ) as job:
            async for update in job.updates():
                print(f"runner: a.wav {update['percent']}%")
            print(f"runner: a.wav -> {(await job.result()).response['text']!r}")

        # 2. Two jobs for a sequential worker: the second waits for the first, which the
        #    runner gives up on. Leaving its scope cancels it at the worker.
        async with anyio.create_task_group() as task_group:

            async def long_one() -> None:
                with anyio.move_on_after(0.12):
                    await request(
                        bus,
                        "transcriber",
                        {"file": "long.wav", "seconds": 100},
                        job_name="transcribe",
                    )
                print("runner: gave up on long.wav")

            task_group.start_soon(long_one)
            await anyio.wait_all_tasks_blocked()
            result = await request(
                bus,
                "transcriber",
                {"file": "b.wav", "seconds": 2},
                job_name="transcribe",
                timeout=5,
            )
            print(f"runner: b.wav -> {result.response['text']!r} (it waited for long.wav)")

        # 3. A domain error comes back as JobFailed.
        try:
            await request(
                bus, "transcriber", {"file": "empty.wav", "seconds": 0}, job_name="transcribe"
            )
        except JobFailed as error:
            print(f"runner: empty.wav failed: {error.response['error']}")

        # 4. A streamed answer.
        async with open_job(bus, "summarizer", {"text": "structured concurrency is nice"}) as job:
            words = [chunk["word"] async for chunk in job.stream()]
            print(f"runner: streamed {words} ({job.stream_metadata})")
            print(f"runner: summary {(await job.result()).response['summary']!r}")

    print(
        f"done: transcriber completed {transcriber.completed}, cancelled {transcriber.cancelled}, "
        f"failed {transcriber.failed}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="jobs with progress and cancellation on anybus")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.backend, backend=args.backend)
