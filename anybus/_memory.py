"""The in-process bus."""

from __future__ import annotations

from typing import final

from ._bus import WorkerBus
from ._dispatch import ErrorHook
from ._statistics import OverflowPolicy
from ._transport import MemoryTransport

__all__ = ["MemoryBus"]


@final
class MemoryBus(WorkerBus):
    """A bus whose transport is this process's memory (pipecat's ``AsyncQueueBus``).

    Every message goes straight to the local subscribers' inboxes; nothing is serialized.
    ``MemoryBus(...)`` is ``WorkerBus(MemoryTransport(), ...)``; it takes the options of
    :class:`WorkerBus`.

    When no inbox is bounded, a data message is put in the inboxes by ``send()`` itself: the
    hottest loop of the library.
    """

    def __init__(
        self,
        *,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            MemoryTransport(),
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )
