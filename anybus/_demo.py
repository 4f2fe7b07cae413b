"""The demo: a runner and two workers on the in-memory bus.

The runner hands out jobs (data messages, handled in order), the workers report progress and
results, and then the runner cancels one worker while it is busy: the cancel, a system
message, overtakes the jobs still queued for that worker and reaches it mid-job.

The workers' ``anyio.sleep`` calls stand for real work; every hand-off between the runner and
the workers is synchronised on messages and events.

Output that cannot be written (``anybus demo | head -5`` closes the pipe) ends the demo at
once: :func:`run_demo` raises the :class:`OSError` of the failed write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TextIO

import anyio

from ._bus import WorkerBus
from ._memory import MemoryBus
from ._messages import (
    BusCancelWorkerMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusMessage,
    BusWorkerReadyMessage,
    JobStatus,
)
from ._subscriber import BusSubscriber

JOB_STEPS = 3
STEP_SECONDS = 0.01


class _Narrator:
    """Writes the demo's lines; the first write that fails cancels ``scope``, which the
    whole demo runs in, and is kept in ``failure``."""

    def __init__(self, out: TextIO, scope: anyio.CancelScope) -> None:
        self._out = out
        self._scope = scope
        self._start = time.perf_counter()
        self.failure: OSError | None = None

    def __call__(self, who: str, text: str) -> None:
        elapsed = (time.perf_counter() - self._start) * 1000
        self.write(f"{elapsed:8.1f} ms  {who:<9} {text}\n")

    def write(self, line: str) -> None:
        if self.failure is not None:
            return
        try:
            self._out.write(line)
        except OSError as exc:  # a closed pipe, a full disk: nobody can read the rest
            self.failure = exc
            self._scope.cancel(reason=f"the demo's output failed: {exc!r}")


class DemoWorker(BusSubscriber):
    """Runs the jobs addressed to it, one at a time; a cancel stops the current and the rest."""

    def __init__(self, name: str, bus: WorkerBus, say: _Narrator) -> None:
        self.name = name
        self._bus = bus
        self._say = say
        self._job: tuple[str, anyio.CancelScope] | None = None
        self._cancelled = False
        self.jobs_seen = 0

    def accepts_bus_message(self, message: BusMessage) -> bool:
        return message.target == self.name

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusCancelWorkerMessage):
            self._cancelled = True
            if self._job is not None:
                job_id, scope = self._job
                self._say(self.name, f"cancel received while {job_id} runs: cancelling it")
                scope.cancel()
        elif isinstance(message, BusJobRequestMessage):
            await self._run_job(message)

    async def _run_job(self, request: BusJobRequestMessage) -> None:
        self.jobs_seen += 1
        job_id = request.job_id
        if self._cancelled:
            self._say(self.name, f"{job_id}: cancelled before it started")
            await self._respond(job_id, JobStatus.CANCELLED, started=False)
            return
        self._say(self.name, f"{job_id}: started")
        with anyio.CancelScope() as scope:
            self._job = (job_id, scope)
            for step in range(1, JOB_STEPS + 1):
                await anyio.sleep(STEP_SECONDS)
                done = {"step": step, "of": JOB_STEPS}
                await self._bus.send(
                    BusJobUpdateMessage(
                        source=self.name, target="runner", job_id=job_id, update=done
                    )
                )
        self._job = None
        if scope.cancelled_caught:
            self._say(self.name, f"{job_id}: cancelled mid-way")
            await self._respond(job_id, JobStatus.CANCELLED, started=True)
        else:
            self._say(self.name, f"{job_id}: completed")
            await self._respond(job_id, JobStatus.COMPLETED, started=True)

    async def _respond(self, job_id: str, status: JobStatus, *, started: bool) -> None:
        await self._bus.send(
            BusJobResponseMessage(
                source=self.name,
                target="runner",
                job_id=job_id,
                status=status,
                response={"started": started},
            )
        )


@dataclass
class _Tally:
    expected: int
    done: anyio.Event = field(default_factory=anyio.Event)
    responses: dict[str, BusJobResponseMessage] = field(default_factory=dict)
    first_update: dict[str, anyio.Event] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    all_ready: anyio.Event = field(default_factory=anyio.Event)


class DemoRunner(BusSubscriber):
    """Collects readiness, progress and responses from the workers."""

    def __init__(self, workers: list[str], expected: int, say: _Narrator) -> None:
        self.name = "runner"
        self._say = say
        self._workers = workers
        self.tally = _Tally(expected)
        self.tally.first_update = {worker: anyio.Event() for worker in workers}

    def accepts_bus_message(self, message: BusMessage) -> bool:
        return message.target in (None, self.name)

    async def on_bus_message(self, message: BusMessage) -> None:
        tally = self.tally
        if isinstance(message, BusWorkerReadyMessage):
            tally.ready.add(message.source)
            self._say(message.source, "ready")
            if tally.ready == set(self._workers):
                tally.all_ready.set()
        elif isinstance(message, BusJobUpdateMessage) and message.update is not None:
            tally.first_update[message.source].set()
            step, of = message.update["step"], message.update["of"]
            self._say(self.name, f"progress from {message.source}: {message.job_id} {step}/{of}")
        elif isinstance(message, BusJobResponseMessage):
            tally.responses[message.job_id] = message
            self._say(self.name, f"{message.job_id} -> {message.status.value}")
            if len(tally.responses) == tally.expected:
                tally.done.set()


async def run_demo(out: TextIO, *, backend: str) -> dict[str, int]:
    """Run the demo once on the current event loop, narrating to ``out``.

    Returns counts of what happened: completed jobs, jobs cancelled mid-way and jobs
    cancelled before they started (the ones the cancel overtook).

    Raises:
        OSError: a write to ``out`` failed (a closed pipe: :class:`BrokenPipeError`); the
            demo stopped at once.
    """
    summary: dict[str, int] = {}
    with anyio.CancelScope() as scope:
        say = _Narrator(out, scope)
        summary = await _run(say, backend)
    if say.failure is not None:
        raise say.failure
    return summary


async def _run(say: _Narrator, backend: str) -> dict[str, int]:
    jobs = {"worker-a": 4, "worker-b": 2}
    say.write(f"anybus demo on {backend}: a runner and two workers on the in-memory bus\n")
    async with MemoryBus() as bus:
        runner = DemoRunner(list(jobs), sum(jobs.values()), say)
        workers = [DemoWorker(name, bus, say) for name in jobs]
        await bus.subscribe(runner)
        for worker in workers:
            await bus.subscribe(worker)
            await bus.send(
                BusWorkerReadyMessage(source=worker.name, target="runner", runner="runner")
            )
        with anyio.fail_after(10):
            await runner.tally.all_ready.wait()

        for worker_name, count in jobs.items():
            for number in range(1, count + 1):
                job_id = f"{worker_name[-1]}{number}"
                await bus.send(
                    BusJobRequestMessage(
                        source="runner", target=worker_name, job_id=f"job-{job_id}"
                    )
                )
            say("runner", f"queued {count} jobs for {worker_name} (data messages, run in order)")

        with anyio.fail_after(10):
            await runner.tally.first_update["worker-a"].wait()
        say(
            "runner",
            "worker-a is mid-job with 3 jobs queued behind it: sending BusCancelWorkerMessage "
            "(a system message)",
        )
        await bus.send(BusCancelWorkerMessage(source="runner", target="worker-a", reason="demo"))

        with anyio.fail_after(10):
            await runner.tally.done.wait()

    responses = runner.tally.responses.values()
    summary = {
        "completed": sum(r.status is JobStatus.COMPLETED for r in responses),
        "cancelled_mid_job": sum(
            r.status is JobStatus.CANCELLED and bool(r.response and r.response["started"])
            for r in responses
        ),
        "overtaken": sum(
            r.status is JobStatus.CANCELLED and not (r.response and r.response["started"])
            for r in responses
        ),
    }
    say.write(
        f"summary: {summary['completed']} jobs completed, {summary['cancelled_mid_job']} "
        f"cancelled mid-job, {summary['overtaken']} cancelled before starting - the cancel "
        f"overtook them in worker-a's queue\n"
    )
    return summary
