"""A mixed fleet: an anybus ``RedisBus`` speaking pipecat's format (``PipecatWireCodec``) and a
real, unmodified pipecat process (its own ``RedisBus`` and ``JSONMessageSerializer``, in the
pipecat venv) on one Redis channel, on asyncio and on trio.

Messages cross both ways (each message type, echoed back by pipecat); pipecat's
``pipecat.bus.messages`` has no class anybus lacks; a pipecat job worker answers anybus's
``request()`` and ``open_job()`` (updates, update requests, streams, failures, cancels); and
anybus's ``JobWorker`` answers pipecat's ``job()`` caller, which finds it through pipecat's
worker registry. Under CI a missing pipecat venv fails the tests (.ci/run creates it).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import IO, Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

import anybus
from anybus import (
    BusActivateWorkerMessage,
    BusEndMessage,
    BusFrameMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusWorkerPresenceMessage,
    BusWorkerRegistryMessage,
    FrameDirection,
    JobCancelled,
    JobContext,
    JobFailed,
    JobWorker,
    PipecatFrame,
    WorkerRegistryEntry,
    open_job,
    pipecat_registry,
    request,
)
from anybus.testing import RecordingSubscriber

from .pipecat_support import fields_of, pipecat_bus, pipecat_python
from .redis_support import unique_name
from .serialization_support import sample

pytestmark = pytest.mark.anyio

PEER = Path(__file__).with_name("pipecat_peer.py")
TIMEOUT = 30

TEXT_FRAME = PipecatFrame("pipecat.frames.frames.TextFrame", {"text": "héllo"})
AUDIO_FRAME = PipecatFrame(
    "pipecat.frames.frames.OutputAudioRawFrame",
    {
        "audio": {"__type__": "bytes", "__data__": "AAECAw=="},
        "sample_rate": 16000,
        "num_channels": 1,
    },
)


class Peer:
    """The pipecat process, and the JSON lines it writes."""

    def __init__(self, process: Process, stderr: IO[bytes]) -> None:
        self.process = process
        self.stderr = stderr
        assert process.stdout is not None
        self._lines = BufferedByteReceiveStream(process.stdout)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    async def next(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind`` (the events before it are dropped)."""
        with anyio.fail_after(TIMEOUT):
            while True:
                try:
                    line = await self._lines.receive_until(b"\n", 10_000_000)
                except anyio.EndOfStream:
                    pytest.fail(f"the pipecat process ended before {kind!r}:\n{self.log()}")
                event: dict[str, Any] = json.loads(line)
                if event["kind"] == kind:
                    return event

    async def exit_status(self) -> int:
        with anyio.fail_after(TIMEOUT):
            return await self.process.wait()


@asynccontextmanager
async def pipecat_process(mode: str, url: str, channel: str) -> AsyncIterator[Peer]:
    """Run ``pipecat_peer.py`` in the pipecat venv; kill it on the way out if it still runs."""
    python = pipecat_python()
    with tempfile.TemporaryFile() as stderr:
        process = await anyio.open_process(
            [str(python), str(PEER), url, channel, mode], stdout=PIPE, stderr=stderr
        )
        peer = Peer(process, stderr)
        try:
            async with process:
                try:
                    yield peer
                finally:
                    if process.returncode is None:
                        process.kill()
        except BaseException:
            print(f"the pipecat process's log:\n{peer.log()}")  # noqa: T201 - shown on failure
            raise


# --- messages, both ways ------------------------------------------------------------------------


def to_echo() -> list[BusMessage]:
    """A message of every type pipecat has, addressed to its echo subscriber."""
    sent: list[BusMessage] = []
    for name, cls in pipecat_registry.items():
        if not name.startswith("pipecat."):
            continue
        frames = [TEXT_FRAME, AUDIO_FRAME] if cls is BusFrameMessage else [None]
        for frame in frames:
            message = sample(cls)
            message.source, message.target = "anybus-test", "pipecat-echo"
            if isinstance(message, BusFrameMessage) and frame is not None:
                message.frame = frame
            sent.append(message)
    return sent


def key(message: BusMessage) -> tuple[str, str | None]:
    frame = message.frame.type if isinstance(message, BusFrameMessage) else None
    return type(message).__name__, frame


def anybus_fields(cls: type[BusMessage]) -> list[list[Any]]:
    return [
        [f.name, f.default is not dataclasses.MISSING, f.default]
        for f in dataclasses.fields(cls)
        if f.init
    ]


async def test_every_pipecat_message_crosses_both_ways(redis_url: str) -> None:
    channel = unique_name()
    echoes = RecordingSubscriber("anybus-test", accepts=lambda m: m.source == "pipecat-echo")
    sent = to_echo()
    async with pipecat_bus(redis_url, channel) as bus:
        await bus.subscribe(echoes)
        async with pipecat_process("echo", redis_url, channel) as peer:
            catalog: dict[str, Any] = (await peer.next("catalog"))["classes"]
            await peer.next("ready")
            # anybus's own messages are dropped by pipecat (a warning in its log), no harm done.
            presence = BusWorkerPresenceMessage(source="anybus-test", worker="w", incarnation="i")
            presence.target = "pipecat-echo"
            await bus.send(presence)
            for message in sent:
                await bus.send(message)
            received = [await peer.next("received") for _ in sent]
            with anyio.fail_after(TIMEOUT):
                await echoes.wait_for(lambda seen: len(seen) == len(sent))
            echoed = list(echoes.messages)
            stop = BusEndMessage(source="anybus-test", target="pipecat-echo", reason="stop-peer")
            await bus.send(stop)
            assert await peer.exit_status() == 0
        statistics = bus.transport_statistics()

    # pipecat's messages are anybus's: names, fields, defaults, priorities, locality.
    for name, pipecat_class in catalog.items():
        cls = getattr(anybus, name)
        assert issubclass(cls, BusSystemMessage) == pipecat_class["system"], name
        assert issubclass(cls, BusLocalMessage) == pipecat_class["local"], name
        fields = [[n, has, default if has else None] for n, has, default in anybus_fields(cls)]
        pipecat_fields = [[n, has, d if has else None] for n, has, d in pipecat_class["fields"]]
        assert fields == pipecat_fields, name
    assert {name.rpartition(".")[2] for name in pipecat_registry if "." in name} == {
        name for name, pipecat_class in catalog.items() if not pipecat_class["local"]
    }

    # anybus -> pipecat: pipecat built its own classes, with the values sent (system messages
    # first: pipecat's router hands them over before the data messages queued ahead of them).
    assert sorted(event["type"] for event in received) == sorted(
        f"pipecat.bus.messages.{type(message).__name__}" for message in sent
    )
    by_type = {(e["type"], e["fields"].get("frame", {}).get("class")): e for e in received}
    text = by_type[("pipecat.bus.messages.BusFrameMessage", "pipecat.frames.frames.TextFrame")]
    assert text["fields"]["frame"]["text"] == "héllo"
    assert text["fields"]["direction"] == (
        "pipecat.processors.frame_processor.FrameDirection.UPSTREAM"
    )
    audio = by_type[
        ("pipecat.bus.messages.BusFrameMessage", "pipecat.frames.frames.OutputAudioRawFrame")
    ]
    assert audio["fields"]["frame"]["audio"] == {"bytes": "00010203"}
    assert audio["fields"]["frame"]["num_frames"] == 2  # computed by pipecat's frame
    registry = by_type[("pipecat.bus.messages.BusWorkerRegistryMessage", None)]["fields"]
    assert [entry["class"] for entry in registry["workers"]] == [
        "pipecat.registry.types.WorkerRegistryEntry"
    ] * 2
    assert registry["workers"][0]["started_at"] == 1.5
    response = by_type[("pipecat.bus.messages.BusJobResponseMessage", None)]["fields"]
    assert response["status"] == "failed"
    assert response["response"] == {"k": [1, 2.5, "three", None, True], "nested": {"a": {}}}

    # pipecat -> anybus: each message comes back with the fields it went with.
    back = {key(message): message for message in echoed}
    assert set(back) == {key(message) for message in sent}
    for message in sent:
        echo = back[key(message)]
        mine, theirs = fields_of(message), fields_of(echo)
        assert (theirs.pop("source"), theirs.pop("target")) == ("pipecat-echo", "anybus-test")
        for name in ("name", "source", "target"):
            mine.pop(name)
        theirs.pop("name")
        if isinstance(message, BusFrameMessage):
            # The frame comes back with the fields pipecat computes (id, name, metadata, ...).
            frame = theirs.pop("frame")
            assert frame.type == message.frame.type
            assert message.frame.data.items() <= frame.data.items()
            mine.pop("frame")
        assert theirs == mine, type(message).__name__
    assert statistics.rejected == {}
    assert (statistics.gaps, statistics.missed, statistics.duplicates) == (0, 0, 0)


# --- jobs, both ways ----------------------------------------------------------------------------


def anybus_jobs(cancelled: anyio.Event) -> JobWorker:
    """The anybus worker pipecat calls: it does not announce itself (pipecat cannot hear it)."""
    worker = JobWorker("anybus-jobs", presence=False)

    @worker.job("multiply")
    async def multiply(job: JobContext) -> dict[str, Any]:
        await job.update({"step": 1})
        return {"product": job.payload["a"] * job.payload["b"]}

    @worker.job("hang")
    async def hang(job: JobContext) -> None:
        try:
            await job.update({"started": True})
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    return worker


async def test_jobs_cross_both_ways(redis_url: str) -> None:
    channel = unique_name()
    registries = RecordingSubscriber(
        "anybus-runner", accepts=lambda m: isinstance(m, BusWorkerRegistryMessage)
    )
    cancelled = anyio.Event()
    worker = anybus_jobs(cancelled)
    async with pipecat_bus(redis_url, channel) as bus:
        await bus.subscribe(registries)
        await bus.subscribe(worker)
        async with pipecat_process("jobs", redis_url, channel) as peer:
            await peer.next("ready")
            with anyio.fail_after(TIMEOUT):
                await registries.wait_for(lambda seen: len(seen) > 0)
            pipecat_registry_message = registries.messages[0]
            assert isinstance(pipecat_registry_message, BusWorkerRegistryMessage)
            assert pipecat_registry_message.runner == "pipecat-runner"
            assert {entry.name for entry in pipecat_registry_message.workers} == {
                "pipecat-jobs",
                "pipecat-caller",
            }

            # anybus calls pipecat: pipecat's workers do not announce themselves.
            with anyio.fail_after(TIMEOUT):
                async with open_job(
                    bus, "pipecat-jobs", {"a": 2, "b": 3}, job_name="add", presence="off"
                ) as added:
                    assert (await added.result()).response == {"sum": 5}
                    assert [update async for update in added.updates()] == [{"step": "adding"}]
                with pytest.raises(JobFailed) as failed:
                    await request(bus, "pipecat-jobs", job_name="fail", presence="off")
                assert failed.value.response == {"error": "no such file"}
                async with open_job(
                    bus, "pipecat-jobs", {"n": 3}, job_name="stream", presence="off"
                ) as streamed:
                    chunks = [chunk async for chunk in streamed.stream()]
                assert chunks == [{"i": 0}, {"i": 1}, {"i": 2}]
                assert (streamed.stream_metadata, streamed.stream_end_metadata) == (
                    {"chunks": 3},
                    {"done": True},
                )
                async with open_job(bus, "pipecat-jobs", job_name="hang", presence="off") as hung:
                    updates = hung.updates()
                    assert await anext(updates) == {"started": True}
                    await hung.request_update()
                    assert await anext(updates) == {"requested": True}
                    await hung.cancel("enough")
                    with pytest.raises(JobCancelled):
                        await hung.result()
            assert (await peer.next("job-cancelled"))["reason"] == "enough"

            # pipecat calls anybus: it finds the worker through its registry, as it finds
            # another runner's.
            entry = WorkerRegistryEntry("anybus-jobs", active=True, started_at=time.time())
            await bus.send(
                BusWorkerRegistryMessage(
                    source="anybus-runner", runner="anybus-runner", workers=[entry]
                )
            )
            await bus.send(
                BusActivateWorkerMessage(
                    source="anybus-runner", target="pipecat-caller", args={"worker": "anybus-jobs"}
                )
            )
            called = await peer.next("called")
            with anyio.fail_after(TIMEOUT):
                await cancelled.wait()  # pipecat left the job's block: it cancelled the job
            assert called["response"] == {"product": 42}
            assert called["events"] == [{"type": "update", "data": {"step": 1}}]
            assert called["hung"] == [{"started": True}, {"started": True}]  # updated, asked

            # The pipecat session ends as any does.
            await bus.send(BusEndMessage(source="anybus-runner", reason="the test is over"))
            await peer.next("ended")
            assert await peer.exit_status() == 0
        statistics = bus.transport_statistics()
    assert (worker.completed, worker.cancelled) == (1, 1)
    assert statistics.rejected == {}
    assert (statistics.gaps, statistics.duplicates) == (0, 0)


def test_the_direction_enum_matches_pipecats_values() -> None:
    assert {d.name: d.value for d in FrameDirection} == {"DOWNSTREAM": 1, "UPSTREAM": 2}
