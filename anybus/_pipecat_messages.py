"""The messages of pipecat's pipeline and runner layers, which anybus carries but does not use.

pipecat's ``pipecat.bus.messages`` also defines messages for its pipelines (frames, speech,
flush probes) and for its runners (adding a worker, the registry of a runner's workers).
anybus has neither layer; it has these classes, with pipecat's names, fields, defaults and
priorities, so that an application built on them ports as it is and its processes can talk
to pipecat's (see :class:`~anybus.PipecatWireCodec`).

anybus does not depend on pipecat. Where pipecat's field holds a pipecat object, the field
here holds plain data: a frame is a :class:`PipecatFrame` (its class's import path and its
fields as pipecat's JSON serializer writes them), a frame direction is anybus's own
:class:`FrameDirection`, a registry entry is anybus's own :class:`WorkerRegistryEntry`.

The wire messages are registered in :data:`~anybus.default_registry` when this module is
imported (``import anybus`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._message_types import default_registry
from ._messages import BusDataMessage, BusLocalMessage, BusSystemMessage
from ._subscriber import BusSubscriber

__all__ = [
    "BusAddWorkerMessage",
    "BusFlushProgressMessage",
    "BusFrameMessage",
    "BusTTSSpeakMessage",
    "BusWorkerRegistryMessage",
    "FrameDirection",
    "PipecatFrame",
    "WorkerRegistryEntry",
]


class FrameDirection(Enum):
    """Which way a frame travels in the receiving pipeline (pipecat's ``FrameDirection``)."""

    #: From the pipeline's input towards its output.
    DOWNSTREAM = 1
    #: From the output back towards the input.
    UPSTREAM = 2


@dataclass(frozen=True)
class PipecatFrame:
    """A pipecat ``Frame``, as plain data: anybus carries frames without knowing them.

    ``PipecatFrame("pipecat.frames.frames.TextFrame", {"text": "hello"})`` reaches a pipecat
    process as a ``TextFrame(text="hello")``, and a frame a pipecat process sends arrives as
    the same two parts. anybus never imports the class named in ``type``; the pipecat process
    that receives the frame does (as its serializer does for every typed value).

    Attributes:
        type: the frame class's import path, such as ``"pipecat.frames.frames.TextFrame"``.
        data: the frame's fields as pipecat's JSON serializer writes them: JSON values only,
            ``None`` fields left out, and pipecat's own tags for typed values (bytes are
            ``{"__type__": "bytes", "__data__": "<base64>"}``). A frame that came from pipecat
            also holds the fields pipecat computes (``id``, ``name``, ``metadata``, ...);
            forwarded as they are, they reach pipecat unchanged.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerRegistryEntry:
    """One worker in a :class:`BusWorkerRegistryMessage` (pipecat's ``WorkerRegistryEntry``).

    Attributes:
        name: the worker's name.
        parent: the name of its parent worker, or ``None`` for a root worker.
        active: whether it is active.
        bridged: whether it is bridged (receives pipeline frames from the bus).
        started_at: Unix timestamp of when it became ready.
    """

    name: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None


# --- Frames and pipeline commands -------------------------------------------------------------


@dataclass(kw_only=True)
class BusFrameMessage(BusDataMessage):
    """Carries a pipeline frame to another worker's pipeline.

    Attributes:
        frame: the frame (see :class:`PipecatFrame`).
        direction: which way the frame travels in the receiving pipeline.
        bridge: the name of the bridge to route it through, when there are several.
    """

    frame: PipecatFrame
    direction: FrameDirection
    bridge: str | None = None


@dataclass(kw_only=True)
class BusTTSSpeakMessage(BusDataMessage):
    """Asks a pipeline worker to speak ``text`` through its text-to-speech service.

    Attributes:
        text: what to say.
        append_to_context: whether the spoken text is also added to the conversation context.
    """

    text: str
    append_to_context: bool = True


@dataclass(kw_only=True)
class BusFlushProgressMessage(BusDataMessage):
    """Says that the flush probe ``flush_id`` of another worker is still making progress here,
    so that the worker waiting for it keeps waiting."""

    flush_id: int


# --- Runners ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BusWorkerRegistryMessage(BusSystemMessage):
    """A runner's snapshot of its workers, so that runners in other processes learn of them.

    A pipecat runner sends it when its workers are ready and to every runner it has not heard
    from before; a pipecat caller waits, through its registry, until the worker it calls is
    in one. Send one naming an anybus worker to let pipecat callers reach it.

    Attributes:
        runner: the name of the runner that owns the workers.
        workers: its workers.
    """

    runner: str
    workers: list[WorkerRegistryEntry]


@dataclass(kw_only=True)
class BusAddWorkerMessage(BusSystemMessage, BusLocalMessage):
    """Asks the local runner to add ``worker``; it holds the object, so it never leaves the
    process."""

    worker: BusSubscriber


for _cls in (
    BusFrameMessage,
    BusTTSSpeakMessage,
    BusFlushProgressMessage,
    BusWorkerRegistryMessage,
):
    default_registry.register(_cls)
del _cls
