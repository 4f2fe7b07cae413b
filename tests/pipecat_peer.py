"""A stock pipecat process for tests/test_pipecat_bridge.py, run by the pipecat venv's Python:
``python pipecat_peer.py URL CHANNEL echo|jobs``.

It uses pipecat's own ``RedisBus`` with its default ``JSONMessageSerializer`` on ``CHANNEL``,
and nothing of anybus. It writes one JSON line to stdout per event the test checks (loguru's
log goes to stderr). Once its subscription hears its own hello, it writes ``{"kind": "ready"}``.

``echo``: one subscriber, ``pipecat-echo``, and no runner (a runner would act on the end and
cancel messages). First it writes the catalog of ``pipecat.bus.messages``: each class's
fields, defaults, priority and locality. Then, for each message addressed to
``pipecat-echo``, it writes what pipecat decoded (``received``) and sends the message back
(same fields, from ``pipecat-echo`` to the sender). A ``BusEndMessage`` whose reason is
``stop-peer`` ends the process.

``jobs``: a ``WorkerRunner`` ``pipecat-runner`` with two workers.

* ``pipecat-jobs`` serves jobs: ``add`` (an urgent update, then the sum), ``fail`` (answers
  ``failed``), ``stream`` (a streamed answer of ``n`` chunks) and ``hang`` (an update, then
  waits to be cancelled; it answers update requests with ``{"requested": true}``).
* ``pipecat-caller`` calls jobs at anybus when activated (``BusActivateWorkerMessage``, with
  ``args={"worker": ...}``): ``multiply`` (waits for the answer, through pipecat's registry),
  then ``hang``, which it leaves after the first update and an update request: pipecat then
  cancels it. It writes ``called`` with what it saw.

A ``BusEndMessage`` to the runner ends the process, as it ends any pipecat session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import sys
from typing import Any

from loguru import logger  # type: ignore[import-not-found]
from pipecat.bus import messages  # type: ignore[import-not-found]
from pipecat.bus.network.redis import RedisBus  # type: ignore[import-not-found]
from pipecat.bus.subscriber import BusSubscriber  # type: ignore[import-not-found]
from pipecat.pipeline.job_context import JobParams, JobStatus  # type: ignore[import-not-found]
from pipecat.pipeline.job_decorator import job  # type: ignore[import-not-found]
from pipecat.utils.asyncio.task_manager import TaskManager  # type: ignore[import-not-found]
from pipecat.workers.base_worker import BaseWorker  # type: ignore[import-not-found]
from pipecat.workers.runner import WorkerRunner  # type: ignore[import-not-found]
from redis.asyncio import Redis  # type: ignore[import-not-found]


def report(kind: str, **data: Any) -> None:
    """One line for the test."""
    sys.stdout.write(json.dumps({"kind": kind, **data}, default=repr) + "\n")
    sys.stdout.flush()


def describe(value: Any) -> Any:
    """``value`` as JSON that says what pipecat built: classes by import path."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"class": f"{type(value).__module__}.{type(value).__qualname__}", **fields}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    return value


def catalog() -> dict[str, Any]:
    """Every message class of ``pipecat.bus.messages``: fields, defaults, priority, locality."""
    classes: dict[str, Any] = {}
    for name, cls in vars(messages).items():
        if not (isinstance(cls, type) and issubclass(cls, messages.BusMessage)):
            continue
        if cls.__module__ != messages.__name__:
            continue
        fields = [
            [f.name, f.default is not dataclasses.MISSING, describe(f.default)]
            for f in dataclasses.fields(cls)
            if f.init
        ]
        classes[name] = {
            "system": issubclass(cls, messages.BusSystemMessage),
            "local": issubclass(cls, messages.BusLocalMessage),
            "fields": fields,
        }
    return classes


class Hello(BusSubscriber):  # type: ignore[misc]
    """Hears this process's own hellos: once one comes back, the subscription is in place."""

    def __init__(self) -> None:
        self.heard = asyncio.Event()

    @property
    def name(self) -> str:
        return "pipecat-hello"

    async def on_bus_message(self, message: Any) -> None:
        if isinstance(message, messages.BusDataMessage) and message.source == "pipecat-hello":
            self.heard.set()


async def say_hello(bus: Any, hello: Hello) -> None:
    """Publish hellos until one comes back, then tell the test."""
    while not hello.heard.is_set():
        await bus.send(messages.BusDataMessage(source="pipecat-hello", target="pipecat-hello"))
        try:
            await asyncio.wait_for(hello.heard.wait(), 0.2)
        except TimeoutError:
            continue
    report("ready")


class Echo(BusSubscriber):  # type: ignore[misc]
    """Reports what it receives and sends it back."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return "pipecat-echo"

    async def on_bus_message(self, message: Any) -> None:
        if message.target != self.name:
            return
        kind = f"{type(message).__module__}.{type(message).__qualname__}"
        report("received", type=kind, fields=describe(message))
        await self.bus.send(dataclasses.replace(message, source=self.name, target=message.source))
        if isinstance(message, messages.BusEndMessage) and message.reason == "stop-peer":
            self.done.set()


async def echo(url: str, channel: str) -> None:
    report("catalog", classes=catalog())
    redis = Redis.from_url(url)
    bus = RedisBus(redis=redis, channel=channel)
    await bus.setup(TaskManager(loop=asyncio.get_running_loop()))
    replier, hello = Echo(bus), Hello()
    await bus.subscribe(replier)
    await bus.subscribe(hello)
    await bus.start()
    try:
        await say_hello(bus, hello)
        await replier.done.wait()
    finally:
        await bus.stop()
        await bus.cleanup()
        await redis.aclose()


class Jobs(BaseWorker):  # type: ignore[misc]
    """pipecat's way to serve jobs: ``@job`` handlers."""

    @job(name="add")  # type: ignore[untyped-decorator]
    async def add(self, message: Any) -> None:
        await self.send_job_update(message.job_id, {"step": "adding"}, urgent=True)
        total = message.payload["a"] + message.payload["b"]
        await self.send_job_response(message.job_id, {"sum": total})

    @job(name="fail")  # type: ignore[untyped-decorator]
    async def fail(self, message: Any) -> None:
        await self.send_job_response(
            message.job_id, {"error": "no such file"}, status=JobStatus.FAILED
        )

    @job(name="stream")  # type: ignore[untyped-decorator]
    async def stream(self, message: Any) -> None:
        count = message.payload["n"]
        await self.send_job_stream_start(message.job_id, {"chunks": count})
        for index in range(count):
            await self.send_job_stream_data(message.job_id, {"i": index})
        await self.send_job_stream_end(message.job_id, {"done": True})

    @job(name="hang")  # type: ignore[untyped-decorator]
    async def hang(self, message: Any) -> None:
        await self.send_job_update(message.job_id, {"started": True})
        await asyncio.Event().wait()  # until cancelled

    async def on_job_update_requested(self, message: Any) -> None:
        await super().on_job_update_requested(message)
        await self.send_job_update(message.job_id, {"requested": True})

    async def on_job_cancelled(self, message: Any) -> None:
        await super().on_job_cancelled(message)
        report("job-cancelled", job_id=message.job_id, reason=message.reason)


class Leave(Exception):
    """Leaves a job's block, which cancels the job."""


class Caller(BaseWorker):  # type: ignore[misc]
    """pipecat's way to call jobs: ``self.job(worker, params=...)``."""

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        await super().on_activated(args)
        if args:  # not from a handler: the answers reach this worker through the bus
            self.create_task(self.call(args["worker"]), "call")

    async def call(self, worker: str) -> None:
        params = JobParams(name="multiply", payload={"a": 6, "b": 7}, timeout=30)
        async with self.job(worker, params=params) as call:
            events = [{"type": event.type, "data": event.data} async for event in call]
        response = call.response
        hung: list[Any] = []
        try:
            async with self.job(worker, params=JobParams(name="hang", timeout=30)) as call:
                async for event in call:
                    hung.append(event.data)
                    if len(hung) == 1:
                        await self.request_job_update(call.job_id, worker)
                    else:
                        raise Leave
        except Leave:
            pass
        report("called", response=response, events=events, hung=hung)


async def jobs(url: str, channel: str) -> None:
    redis = Redis.from_url(url)
    bus = RedisBus(redis=redis, channel=channel)
    runner = WorkerRunner(name="pipecat-runner", bus=bus, handle_sigint=False)
    await runner.add_workers(Jobs("pipecat-jobs"), Caller("pipecat-caller", active=False))
    hello = Hello()
    await bus.subscribe(hello)

    @runner.event_handler("on_ready")  # type: ignore[untyped-decorator]
    async def ready(runner: Any) -> None:
        runner.create_task(say_hello(bus, hello), "hello")

    try:
        await runner.run()
    finally:
        await redis.aclose()
    report("ended")


def main() -> None:
    url, channel, mode = sys.argv[1:]
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(echo(url, channel) if mode == "echo" else jobs(url, channel))


if __name__ == "__main__":
    main()
