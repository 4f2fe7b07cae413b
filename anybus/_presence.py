"""Presence: which workers are up, where, how loaded — and which ones went away.

A worker that takes part (every :class:`~anybus.JobWorker`, unless told not to) announces
itself when it is ready and repeats that as a heartbeat every ``heartbeat`` seconds: a
:class:`~anybus.BusWorkerPresenceMessage`, a system message (it overtakes queued data)
addressed to each bus's *presence hub*, a subscriber named ``anybus-presence`` that a bus
gets the first time presence is used on it (so presence costs nothing on a bus where nobody
uses it). Like every message, it reaches the bus's other subscribers too; a
:class:`~anybus.JobWorker` ignores it. When the worker stops it says goodbye, with a
:class:`~anybus.BusWorkerGoodbyeMessage` — a data message, so that it comes after the
worker's last answers: the jobs still outstanding at its callers fail then.

The hub keeps the directory of the live workers it heard of, on every bus of the transport.
A worker whose heartbeats stop is declared gone once ``LIVENESS_BEATS`` heartbeat intervals
have passed without one; a worker that comes back under a new incarnation (a restart)
replaces the old one, which is declared gone at once. Jobs sent to a worker that is declared
gone fail then, with :class:`~anybus.WorkerUnavailable`, rather than at their timeout.

A hub that starts asks every worker to announce itself (a
:class:`~anybus.BusWorkerPresenceQueryMessage`), so it knows the live workers within one
round trip rather than one heartbeat.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, Protocol

from anyio import CancelScope, Event, current_time, move_on_after

from ._bus import WorkerBus, check_bus
from ._directory import LIVENESS_BEATS, WorkerChange, WorkerDirectory, WorkerInfo
from ._exceptions import BusStateError
from ._messages import (
    BusMessage,
    BusWorkerGoodbyeMessage,
    BusWorkerPresenceMessage,
    BusWorkerPresenceQueryMessage,
)
from ._subscriber import BusLike, BusSubscriber
from ._transport import MemoryTransport

__all__ = [
    "PRESENCE_NAME",
    "Announcer",
    "PresenceHub",
    "announcing",
    "check_presence",
    "presence_hub",
    "wait_for_worker",
    "worker_directory",
]

logger = logging.getLogger("anybus.presence")

#: The name of every bus's presence hub: presence messages are addressed to it.
PRESENCE_NAME: Final = "anybus-presence"
#: Seconds a goodbye may take to send, shielded, when a worker stops.
GOODBYE_TIMEOUT: Final = 1.0
#: Fewest seconds between two answers of one hub to presence queries.
QUERY_ANSWER_INTERVAL: Final = 0.1
#: Seconds a new hub gives the answers to its query before "not present" means absent.
GRACE: Final = 1.0
#: Seconds the clocks of two hosts may disagree by: an announcement is taken for a replay
#: (an old one a durable transport hands on) only once it is this much older than its
#: worker's liveness bound, so that a worker on a host whose clock is behind is still seen.
CLOCK_SKEW: Final = 30.0

_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def check_presence(*, pool: str | None, heartbeat: float, presence: bool = True) -> None:
    """Refuse presence options that cannot work (ValueError, naming the option)."""
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
        raise ValueError(f"heartbeat must be a positive number of seconds, got {heartbeat!r}")
    if not 0 < heartbeat < math.inf:  # NaN too
        raise ValueError(f"heartbeat must be a positive number of seconds, got {heartbeat!r}")
    if not isinstance(presence, bool):
        raise ValueError(f"presence must be True or False, got {presence!r}")
    if pool is not None and (not isinstance(pool, str) or not pool):
        raise ValueError(f"pool must be a non-empty string or None, got {pool!r}")


class Worker(Protocol):
    """What a worker that announces itself has."""

    name: str
    pool: str | None
    concurrency: int
    heartbeat: float
    #: A token of this worker object; a new process (or a new object) draws a new one.
    incarnation: str


class Announcer:
    """What a hub announces for one local worker: a snapshot function and its heartbeat."""

    __slots__ = ("concurrency", "heartbeat", "incarnation", "jobs", "load", "name", "pool")

    def __init__(self, worker: Worker, *, jobs: tuple[str, ...], load: Callable[[], int]) -> None:
        self.name = worker.name
        self.pool = worker.pool
        self.jobs = jobs
        self.concurrency = worker.concurrency
        self.heartbeat = float(worker.heartbeat)
        self.load = load
        self.incarnation = worker.incarnation

    def alive(self) -> BusWorkerPresenceMessage:
        return BusWorkerPresenceMessage(
            source=self.name,
            target=PRESENCE_NAME,
            worker=self.name,
            incarnation=self.incarnation,
            pool=self.pool,
            jobs=list(self.jobs),
            concurrency=self.concurrency,
            load=self.load(),
            heartbeat=self.heartbeat,
            process=_PROCESS,
            sent_at=time.time(),
        )


class Follower(Protocol):
    """What follows the workers a hub declares gone (an outstanding job)."""

    def worker_gone(self, worker: str, incarnation: str, why: str) -> None: ...


class PresenceHub(BusSubscriber):
    """A bus's presence hub (see the module docs); get it with :func:`presence_hub`."""

    def __init__(self, bus: WorkerBus) -> None:
        self.name = PRESENCE_NAME
        self._bus = bus
        self.directory = WorkerDirectory(repr(bus))
        self._local: dict[str, Announcer] = {}
        self._due: dict[str, float] = {}  # local worker -> when its next heartbeat is due
        self._expires: dict[str, float] = {}  # known worker -> when it is declared gone
        # Known worker -> the incarnations it replaced lately, and when; and how often one of
        # those spoke again: a late copy of an old announcement does it once (and the one
        # it displaced once more), two live workers of one name on every beat.
        self._replaced: dict[str, dict[str, float]] = {}
        self._comebacks: dict[str, int] = {}
        self._clashes: set[str] = set()
        self._wakeup = Event()
        self._answer_query = False
        self._last_answer = -QUERY_ANSWER_INTERVAL
        self._followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self._born = current_time()
        self.started = Event()

    # --- local workers --------------------------------------------------------------------

    def register(self, announcer: Announcer) -> None:
        """Announce ``announcer``'s worker now, then on every heartbeat. This bus's own
        directory knows of it at once."""
        self._local[announcer.name] = announcer
        self._due[announcer.name] = -1.0
        self._heard(announcer.alive())
        self._wake()

    async def unregister(self, announcer: Announcer) -> None:
        """Stop announcing; say goodbye (shielded, bounded)."""
        if self._local.get(announcer.name) is not announcer:
            return
        del self._local[announcer.name]
        self._due.pop(announcer.name, None)
        with CancelScope(shield=True, deadline=current_time() + GOODBYE_TIMEOUT):
            await self._send(
                BusWorkerGoodbyeMessage(
                    source=announcer.name, worker=announcer.name, incarnation=announcer.incarnation
                )
            )

    async def _send(self, message: BusMessage) -> None:
        try:
            await self._bus.send(message)
        except Exception as exc:  # presence is best effort: the next heartbeat tries again
            logger.debug("presence: sending %s failed: %s", message.name, exc)

    # --- what comes in --------------------------------------------------------------------

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusWorkerPresenceMessage):
            self._heard(message)
        elif isinstance(message, BusWorkerGoodbyeMessage):
            known = self.directory.get(message.worker)
            if known is not None and known.incarnation == message.incarnation:
                # The job client fails the outstanding jobs, in order with the answers.
                self._forget(known, "it stopped", tell=False)
        elif isinstance(message, BusWorkerPresenceQueryMessage) and self._local:
            self._answer_query = True
            self._wake()

    def _heard(self, message: BusWorkerPresenceMessage) -> None:
        directory = self.directory
        known = directory.get(message.worker)
        bound = LIVENESS_BEATS * message.heartbeat
        if time.time() - message.sent_at > bound + CLOCK_SKEW:
            return  # a stale announcement (replayed from a durable transport)
        if known is not None and known.incarnation != message.incarnation:
            self._forget(known, self._replacing(known, message, bound))
            known = None
        info = WorkerInfo(
            name=message.worker,
            pool=message.pool,
            jobs=tuple(message.jobs),
            concurrency=message.concurrency,
            load=message.load,
            heartbeat=message.heartbeat,
            process=message.process,
            incarnation=message.incarnation,
            seen_at=time.time(),
        )
        directory._put(info, WorkerChange.JOINED if known is None else WorkerChange.UPDATED)
        expires = current_time() + bound
        earliest = min(self._expires.values(), default=None)
        self._expires[info.name] = expires
        if earliest is None or expires < earliest:
            self._wake()

    def _replacing(
        self, known: WorkerInfo, message: BusWorkerPresenceMessage, bound: float
    ) -> str:
        """Why ``known`` is forgotten for ``message``'s incarnation: a restart or, when that
        incarnation was itself replaced lately, two live workers of one name (logged once)."""
        now, name = time.time(), known.name
        replaced = self._replaced.setdefault(name, {})
        again = replaced.pop(message.incarnation, None)
        replaced[known.incarnation] = now
        while len(replaced) > 4:
            del replaced[next(iter(replaced))]
        if again is not None and now - again <= bound:
            self._comebacks[name] = self._comebacks.get(name, 0) + 1
        else:  # a new incarnation: a restart
            self._comebacks.pop(name, None)
        if self._comebacks.get(name, 0) < 3:
            return "it restarted (a new incarnation announced itself)"
        if name not in self._clashes:
            self._clashes.add(known.name)
            logger.warning(
                "two live workers announce themselves as %r (processes %s and %s): each runs "
                "every job sent to that name, and callers' jobs fail as if it restarted; give "
                "each a name of its own, or run them as a pool (JobWorker(name, pool=...))",
                known.name,
                known.process,
                message.process,
            )
        return f"two live workers share its name (processes {known.process} and {message.process})"

    def _forget(self, info: WorkerInfo, why: str, *, tell: bool = True) -> None:
        self._expires.pop(info.name, None)
        self.directory._remove(info, why)
        if tell:
            for follower in list(self._followers):
                follower.worker_gone(info.name, info.incarnation, why)

    def follow(self, follower: Follower) -> None:
        """Tell ``follower`` of every worker declared gone from now on (held weakly)."""
        self._followers.add(follower)

    def grace(self) -> float:
        """Seconds left of this hub's first second, in which the answers to its query come
        (none on an in-memory bus, whose workers the hub knows at once)."""
        if isinstance(self._bus.transport, MemoryTransport):
            return 0.0
        return max(0.0, self._born + GRACE - current_time())

    # --- the hub's own task ---------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    async def run_in_bus(self, bus: BusLike) -> None:
        """Ask every worker to announce itself, then send the local workers' heartbeats and
        declare gone the workers whose heartbeats stopped, until the bus stops the hub."""
        await self._send(BusWorkerPresenceQueryMessage(source=PRESENCE_NAME, target=PRESENCE_NAME))
        self.started.set()
        while True:
            self._wakeup = Event()
            now = current_time()
            answer = self._answer_query and now - self._last_answer >= QUERY_ANSWER_INTERVAL
            if answer:
                self._answer_query = False
                self._last_answer = now
            for name, announcer in list(self._local.items()):
                if answer or self._due.get(name, 0.0) <= now:
                    self._due[name] = now + announcer.heartbeat
                    await self._send(announcer.alive())
            now = current_time()
            for name, expires in list(self._expires.items()):
                info = self.directory.get(name)
                if expires <= now and info is not None:
                    self._forget(info, f"no heartbeat for {LIVENESS_BEATS * info.heartbeat:g} s")
            deadlines = [*self._due.values(), *self._expires.values()]
            if self._answer_query:
                deadlines.append(self._last_answer + QUERY_ANSWER_INTERVAL)
            with move_on_after(max(0.0, min(deadlines, default=now + 3600) - now)):
                await self._wakeup.wait()


#: The presence hub of each bus, subscribed the first time presence is used on it.
_hubs: weakref.WeakKeyDictionary[WorkerBus, PresenceHub] = weakref.WeakKeyDictionary()


async def presence_hub(bus: WorkerBus) -> PresenceHub:
    """``bus``'s presence hub, subscribed the first time (and again after an unsubscribe)."""
    hub = _hubs.get(check_bus(bus))
    if hub is None or PRESENCE_NAME not in {sub.name for sub in bus.subscribers}:
        hub = _hubs[bus] = PresenceHub(bus)
        await bus.subscribe(
            hub,
            types=(
                BusWorkerPresenceMessage,
                BusWorkerPresenceQueryMessage,
                BusWorkerGoodbyeMessage,
            ),
            max_buffer=None,
        )
    return hub


async def worker_directory(bus: WorkerBus) -> WorkerDirectory:
    """The directory of the live workers ``bus`` knows of, on every bus of its transport.

    The first call on a bus adds its presence hub (a subscriber named ``anybus-presence``),
    which asks every worker to announce itself: the directory fills as the answers come,
    within a round trip. On a running bus it returns once the query is sent. Cancelled, it
    may have added the hub, and done nothing else.
    """
    hub = await presence_hub(bus)
    if bus.running:
        await hub.started.wait()
    return hub.directory


async def wait_for_worker(
    bus: WorkerBus,
    name: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline, a part of the call
) -> WorkerInfo:
    """Wait until the worker ``name`` (or a member of the pool ``name``) is live on ``bus``;
    return it (for a pool: the member a job would go to now).

    Cancelling the wait changes nothing (but the hub it may have added).

    Raises:
        WorkerUnavailable: none became live within ``timeout`` seconds.
        BusStateError: the bus is not running.
        TypeError: ``bus`` is not a bus.
    """
    if not check_bus(bus).running:  # nothing would ever announce itself
        raise BusStateError(f"{bus!r} is not running: wait for workers in 'async with bus:'")
    directory = await worker_directory(bus)
    return await directory.wait_for(name, timeout=timeout)


@asynccontextmanager
async def announcing(
    bus: BusLike, announcer: Announcer | None
) -> AsyncIterator[Callable[[], None]]:
    """Give a function that starts announcing ``announcer``'s worker on ``bus`` (if it is a
    :class:`~anybus.WorkerBus`; call it once the worker is ready); when the block is left,
    say goodbye. With ``None``, the function does nothing."""
    if announcer is None or not isinstance(bus, WorkerBus):
        yield lambda: None
        return
    hub = await presence_hub(bus)
    try:
        yield lambda: hub.register(announcer)
    finally:
        await hub.unregister(announcer)
