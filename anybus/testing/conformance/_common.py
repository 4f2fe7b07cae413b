"""What the conformance tests share: the factory type, the bound on waits, a few helpers."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..._bus import WorkerBus
from ..._messages import BusMessage, BusSystemMessage

__all__ = ["TIMEOUT", "BusFactory", "ids", "lane", "task_count"]

#: Makes a fresh, unstarted bus.
BusFactory = Callable[[], WorkerBus]

#: The bound on every wait in the suite, in seconds.
TIMEOUT = 10


def task_count() -> int:
    """The tasks anybus runs now (every one of them is named ``anybus ...``).

    Tasks of other libraries are left out: a client library may keep a task of its own for
    the life of the event loop (valkey-glide does, on trio).
    """
    return sum((task.name or "").startswith("anybus") for task in anyio.get_running_tasks())


def ids(messages: list[BusMessage]) -> list[str]:
    """The ids of ``messages``, in order."""
    return [message.id for message in messages]


def lane(messages: list[BusMessage], system: bool) -> list[BusMessage]:
    """The system messages of ``messages`` (``system=True``) or the others, in order."""
    return [m for m in messages if isinstance(m, BusSystemMessage) == system]
