"""What a transport must do to carry a bus's messages, and the transport of the in-memory bus.

A :class:`~anybus.WorkerBus` owns its subscriptions, their dispatch and its lifecycle; it is
*given* a transport, which does three things and nothing else:

* :meth:`Transport.serve` — connect, start taking messages from the network and hand each to
  :meth:`TransportHost.deliver`; call ``task_status.started()`` once messages flow both ways;
  run until cancelled, then acknowledge what :meth:`TransportHost.handled` says was handled and
  close.
* :meth:`Transport.publish` — carry one message to every bus on the transport, this one's
  local subscribers included (usually through :meth:`TransportHost.deliver` directly).
* :meth:`Transport.stop_intake` — the first step of the ordered stop: stop taking messages
  from the network, and return once nothing more will be delivered.

The bus stops in this order: ``stop_intake()`` → drain the inboxes (up to the bus's deadline)
→ cancel ``serve()``, which acknowledges exactly what was handled and closes. Nothing read
after intake stopped is delivered, so nothing of it is acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVarTuple, final

from anyio import TASK_STATUS_IGNORED, CancelScope, Event, sleep_forever
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

if TYPE_CHECKING:
    from ._messages import BusMessage

__all__ = ["DeliveryMark", "Intake", "MemoryTransport", "Transport", "TransportHost"]

_Args = TypeVarTuple("_Args")


class DeliveryMark(Protocol):
    """A point in a bus's deliveries, from :meth:`TransportHost.mark` (opaque)."""


class TransportHost(Protocol):
    """What a bus offers the transport it is given."""

    async def deliver(self, message: BusMessage) -> None:
        """Put ``message`` in every local subscriber's inbox, by their overflow policies.

        Under the ``block`` policy it waits for room first, so a cancelled call has queued
        the message nowhere.
        """
        ...

    def mark(self) -> DeliveryMark:
        """A mark of everything delivered so far, to ask :meth:`handled` about later."""
        ...

    def handled(self, mark: DeliveryMark) -> bool:
        """Whether every message delivered before ``mark`` was taken was handled.

        Handled means: its handler returned (or raised), a filter refused it, or an overflow
        policy dropped it, for every subscriber. A message whose handler was cancelled, or
        that was taken out of an inbox undelivered when a drain ended, is not handled.
        """
        ...

    def lost(self, mark: DeliveryMark) -> bool:
        """Whether some message delivered before ``mark`` will never be handled in this run
        (a handler was cancelled, or a drain took it out undelivered): leave it
        unacknowledged, so that it comes again; stop asking about it."""
        ...


class Transport(Protocol):
    """What carries a bus's messages between processes: see the module docs for the contract.

    Write one as a module implementing these three methods, give it to
    :class:`~anybus.WorkerBus` (``WorkerBus(transport=MyTransport(...))``), and run
    :mod:`anybus.testing`'s conformance suite against it.
    """

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Carry messages for ``host`` until cancelled.

        Called by the bus in its own task group when it starts. Calls
        ``task_status.started()`` once :meth:`publish` works and incoming messages reach
        ``host.deliver()``; an exception before that fails the bus's start. When cancelled,
        acknowledge what ``host.handled()`` reports (a durable transport) and close,
        shielded with a deadline.
        """
        ...

    async def publish(self, message: BusMessage) -> None:
        """Carry ``message`` to every bus on the transport, this one's subscribers included.

        Each transport documents what a cancelled ``publish()`` has done.
        """
        ...

    async def stop_intake(self) -> None:
        """Stop handing incoming messages to the host; return once none will be.

        A no-op when not serving. Called before the bus drains its inboxes, shielded with a
        deadline, so it is not cancelled in practice; if it is, intake still stops (the
        cancel request is made first) and the rest of the stop does not depend on it.
        """
        ...


@final
class MemoryTransport:
    """The transport of :class:`~anybus.MemoryBus`: this process's memory.

    :meth:`publish` delivers to the host's subscribers directly; nothing is serialized. The bus
    recognises this transport and takes its own fast path instead of calling :meth:`publish`.
    """

    def __init__(self) -> None:
        self._host: TransportHost | None = None

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Hold on to ``host`` until cancelled; nothing to connect."""
        self._host = host
        try:
            task_status.started()
            await sleep_forever()
        finally:
            self._host = None

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to the host's subscribers (as :meth:`TransportHost.deliver`).

        Cancelled while it waits for room (the ``block`` policy), it has queued the message
        nowhere.
        """
        host = self._host
        if host is None:
            await checkpoint()
            return
        await host.deliver(message)

    async def stop_intake(self) -> None:
        """Nothing comes from outside the process: a checkpoint (so it may be cancelled, having
        done nothing)."""
        await checkpoint()

    def __str__(self) -> str:
        return "memory"


@final
class Intake:
    """A transport's reader task, and ending it: the first step of the ordered stop.

    :meth:`start` runs the reader in a task group, in a cancel scope of its own;
    :meth:`stop` (what :meth:`Transport.stop_intake` does) cancels that scope and returns once
    the reader has ended. A helper for transports written on this protocol.
    """

    __slots__ = ("_ended", "_scope")

    def __init__(self) -> None:
        self._scope: CancelScope | None = None
        self._ended: Event | None = None

    @property
    def stopped(self) -> bool:
        """Whether no reader runs, or the one that runs was told to stop."""
        return self._scope is None or self._scope.cancel_called

    def start(
        self,
        task_group: TaskGroup,
        read: Callable[[*_Args], Awaitable[object]],
        *args: *_Args,
        name: str,
    ) -> None:
        """Run ``await read(*args)`` in ``task_group``, until it returns or :meth:`stop`."""
        scope = self._scope = CancelScope()
        ended = self._ended = Event()

        async def run() -> None:
            try:
                with scope:
                    await read(*args)
            finally:
                if self._scope is scope:  # a later start() may have begun
                    self._scope = None
                ended.set()

        task_group.start_soon(run, name=name)

    async def stop(self) -> None:
        """Stop the reader; return once it has ended (a checkpoint when none runs).

        Cancelled while it waits, the reader has been told to stop all the same.
        """
        scope, ended = self._scope, self._ended
        if scope is not None and ended is not None:
            scope.cancel(reason="anybus: the bus stops its intake")
            await ended.wait()
        await checkpoint()
