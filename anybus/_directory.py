"""The directory of live workers a bus's presence hub keeps, and what it tells callers.

Get it with :func:`~anybus.worker_directory`; :func:`~anybus.wait_for_worker` waits for one
worker (or one member of a pool). See :mod:`anybus._presence` for how workers announce
themselves.
"""

from __future__ import annotations

import itertools
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from anyio import Event, fail_after
from anyio.lowlevel import checkpoint

from ._exceptions import WorkerUnavailable

__all__ = [
    "LIVENESS_BEATS",
    "WorkerChange",
    "WorkerDirectory",
    "WorkerEvent",
    "WorkerInfo",
]

#: Heartbeat intervals without a heartbeat after which a worker is declared gone.
LIVENESS_BEATS: Final = 3
#: Changes a follower of :meth:`WorkerDirectory.changes` may fall behind by; older ones are
#: dropped.
CHANGES_KEPT: Final = 1_000


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, as its last announcement described it.

    Attributes:
        name: the worker's name (requests target it).
        pool: the pool it is a member of, or ``None``.
        jobs: the job names it has handlers for (``""``: the handler of requests that name
            none).
        concurrency: how many jobs it runs at once.
        load: jobs running or queued at its last announcement.
        heartbeat: seconds between its heartbeats.
        process: ``host:pid`` of its process.
        incarnation: a token of this run of the worker (a restart draws a new one).
        seen_at: wall-clock time (``time.time()``) of its last announcement.
    """

    name: str
    pool: str | None
    jobs: tuple[str, ...]
    concurrency: int
    load: int
    heartbeat: float
    process: str
    incarnation: str
    seen_at: float


class WorkerChange(StrEnum):
    """What happened to a worker."""

    JOINED = "joined"
    UPDATED = "updated"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One change in a directory: ``change`` happened to ``worker`` (``why``: for ``left``)."""

    change: WorkerChange
    worker: WorkerInfo
    why: str | None = None


class WorkerDirectory:
    """The live workers a bus knows of, on every bus of its transport.

    Get it with :func:`~anybus.worker_directory`. A snapshot is :meth:`workers`; follow
    changes with ``async for event in directory.changes():``.
    """

    def __init__(self, where: str) -> None:
        self._where = where
        self._workers: dict[str, WorkerInfo] = {}
        self._changed = Event()
        self._followers: weakref.WeakSet[_Changes] = weakref.WeakSet()
        self._sent_since_report: dict[str, int] = {}
        self._turn = itertools.count()

    def workers(self) -> list[WorkerInfo]:
        """The live workers now, by name."""
        return sorted(self._workers.values(), key=lambda info: info.name)

    def get(self, name: str) -> WorkerInfo | None:
        """The live worker named ``name``, or ``None``."""
        return self._workers.get(name)

    def members(self, pool: str) -> list[WorkerInfo]:
        """The live members of ``pool``, by name."""
        return [info for info in self.workers() if info.pool == pool]

    def choose(self, name: str) -> WorkerInfo | None:
        """The worker a job for ``name`` would go to now: the worker of that name, else the
        least loaded live member of the pool of that name (ties taken in turn), else ``None``.

        Load is the member's last reported load plus the jobs sent to it since by callers on
        this bus (see :meth:`assign`)."""
        worker = self._workers.get(name)
        if worker is not None:
            return worker
        members = self.members(name)
        if not members:
            return None
        sent = self._sent_since_report
        lowest = min(info.load + sent.get(info.name, 0) for info in members)
        tied = [info for info in members if info.load + sent.get(info.name, 0) == lowest]
        return tied[next(self._turn) % len(tied)]

    def assign(self, worker: WorkerInfo) -> None:
        """Count a job sent to ``worker`` towards its load, until its next report."""
        if worker.pool is not None:
            self._sent_since_report[worker.name] = self._sent_since_report.get(worker.name, 0) + 1

    async def wait_for(self, name: str, *, timeout: float | None = None) -> WorkerInfo:  # noqa: ASYNC109
        """Wait until a worker named ``name`` (or a member of the pool ``name``) is live.

        Cancelling the wait changes nothing.

        Raises:
            WorkerUnavailable: none became live within ``timeout`` seconds.
        """
        chosen = self.choose(name)
        if chosen is not None:
            return chosen
        try:
            with fail_after(timeout):
                while (chosen := self.choose(name)) is None:
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            within = f"within {timeout:g} s" if timeout else "now"
            raise WorkerUnavailable(
                f"no worker or pool named {name!r} is present on {self._where} ({within}): "
                f"is it running, and on this channel? (pass presence='off' to send to "
                f"workers that do not announce themselves)",
                worker=name,
            ) from None
        return chosen

    def changes(self) -> AsyncIterator[WorkerEvent]:
        """Follow the directory: ``async for event in directory.changes():`` gives first a
        ``joined`` event for each live worker, then every change as it happens (a follower
        that falls more than 1,000 behind loses the oldest). Stop iterating whenever you
        like (nothing to close); cancelling a wait for the next event changes nothing."""
        follower = _Changes(self, (WorkerEvent(WorkerChange.JOINED, w) for w in self.workers()))
        self._followers.add(follower)
        return follower

    # --- kept by the hub --------------------------------------------------------------------

    def _tell(self, event: WorkerEvent) -> None:
        for follower in self._followers:
            follower.queue.append(event)
        changed, self._changed = self._changed, Event()
        changed.set()

    def _put(self, info: WorkerInfo, change: WorkerChange) -> None:
        self._workers[info.name] = info
        self._sent_since_report.pop(info.name, None)
        self._tell(WorkerEvent(change, info))

    def _remove(self, info: WorkerInfo, why: str) -> None:
        if self._workers.get(info.name) is info:
            del self._workers[info.name]
            self._sent_since_report.pop(info.name, None)
            self._tell(WorkerEvent(WorkerChange.LEFT, info, why))


class _Changes(AsyncIterator[WorkerEvent]):
    """One follower of a directory (a plain class: one left unfinished needs no closing)."""

    def __init__(self, directory: WorkerDirectory, first: Iterable[WorkerEvent]) -> None:
        self._directory = directory
        self.queue: deque[WorkerEvent] = deque(first, maxlen=CHANGES_KEPT)

    async def __anext__(self) -> WorkerEvent:
        await checkpoint()
        while not self.queue:
            await self._directory._changed.wait()
        return self.queue.popleft()
