"""One connection's socket, read by two tasks: a statement's, and one waiting for
notifications.

A bus's writer ``LISTEN``s on the connection it stores with, so that the notifications of its
own sends come back with their commit and wake no other session. Two tasks read that socket
then: the one running a statement, for its results, and the reader waiting for notifications.
anyio (like trio) lets one task at a time wait for a socket, and a task that reads what
another waits for leaves it waiting; so they take turns (:class:`Turns`):

* one task at a time waits for the socket; the other waits for that wait to end (the socket
  was readable, or the waiter was cancelled), then looks again at what libpq holds;
* a task reads the socket only after its own wait, or while no task waits for it;
* libpq keeps what was read for whoever it is for: results until the statement's task takes
  them, notifications until taken. A statement's task that took notifications from libpq
  while taking its results (they came with them) hands them over, and wakes the waiter.

The tasks wait on a duplicate of the socket's descriptor, which this module opens and closes
itself: libpq closes its own when it finds the connection lost (whichever task's read or
write found it), and that number may be reused at once by a new connection, which anyio
would then see as still waited on. A connection the server ended leaves the duplicate
readable, so a wait to read ends, and the next call into libpq says why; a wait to send ends
when the socket fails, or at the statement's bound (:mod:`._client`).

Notifications handed over while no task waits for them (the reader is busy delivering) are
kept up to :data:`MAX_HANDED`; beyond, they are dropped, and the waiter told how many: what
they carried is in the table, for the reader to read.
"""

from __future__ import annotations

import os
import weakref
from typing import final

import psycopg
from anyio import (
    CancelScope,
    ClosedResourceError,
    Event,
    notify_closing,
    wait_readable,
    wait_writable,
)
from psycopg.pq import PGnotify
from psycopg.pq.abc import PGconn

__all__ = ["MAX_HANDED", "Turns"]

#: Notifications kept for a waiter, at most (see the module docs).
MAX_HANDED = 1_000


@final
class Turns:
    """The turns at one connection's socket (see the module docs)."""

    __slots__ = (
        "__weakref__",  # for the finalizer
        "_closed",
        "_dropped",
        "_ended",
        "_fd",
        "_finalizer",
        "_handed",
        "_pgconn",
        "_scope",
        "_waiting",
    )

    def __init__(self, pgconn: PGconn) -> None:
        self._pgconn = pgconn
        self._fd = os.dup(pgconn.socket)  # what the tasks wait on (see the module docs)
        # Closed with the connection, or when this is dropped without being closed.
        self._finalizer = weakref.finalize(self, os.close, self._fd)
        self._waiting = False  # a task waits for the socket
        self._ended: Event | None = None  # set when that wait ends, for a task waiting on it
        # The notification waiter's wait for the socket, to end it when notifications are
        # handed over.
        self._scope: CancelScope | None = None
        self._handed: list[PGnotify] = []  # notifications a statement's task took from libpq
        self._dropped = False  # some were, beyond MAX_HANDED, since the waiter last took
        self._closed = False

    def close(self) -> None:
        """The connection is closing: a wait for its socket ends now (raising
        ``psycopg.OperationalError``), and none begins; neither task reads it again."""
        if self._closed:
            return
        self._closed = True
        notify_closing(self._fd)
        self._finalizer()

    def _check(self) -> None:
        if self._closed:
            raise psycopg.OperationalError("the connection was closed")

    def consume(self) -> None:
        """Let libpq read what arrived, unless another task waits for the socket (then it
        reads, and this one hears of it: :meth:`readable`)."""
        self._check()
        if not self._waiting:
            self._pgconn.consume_input()

    async def writable(self) -> None:
        """Wait until the socket takes more of what is being sent (a statement's task).

        Raises:
            psycopg.OperationalError: the connection is closing.
        """
        self._check()
        try:
            await wait_writable(self._fd)
        except ClosedResourceError:
            raise psycopg.OperationalError("the connection was closed") from None

    async def readable(self, *, notifications: bool = False) -> None:
        """Wait until the socket is readable (then :meth:`consume`), or until the wait of
        the task that waits for it ended; ``notifications``: until notifications are
        handed over, too.

        Raises:
            psycopg.OperationalError: the connection is closing.
        """
        self._check()
        if self._waiting:
            ended = self._ended
            if ended is None:
                ended = self._ended = Event()
            await ended.wait()
            return
        self._waiting = True
        try:
            if notifications:
                with CancelScope() as self._scope:
                    await wait_readable(self._fd)
            else:
                await wait_readable(self._fd)
        except ClosedResourceError:
            raise psycopg.OperationalError("the connection was closed") from None
        finally:  # after anyio's own clean-up: another task may wait for the socket now
            self._scope = None
            self._waiting = False
            ended, self._ended = self._ended, None
            if ended is not None:
                ended.set()

    def hand_over(self) -> None:
        """For a statement's task, its results taken: keep the notifications libpq read
        with them for the waiter, and wake it."""
        handed = self._handed
        self._take_libpqs(handed)
        if not handed:
            return
        if len(handed) > MAX_HANDED:
            self._dropped = True
            handed.clear()
        if self._scope is not None:
            self._scope.cancel()
        elif (ended := self._ended) is not None:
            self._ended = None
            ended.set()

    def payloads(self) -> list[bytes]:
        """The payloads of the notifications that arrived (handed over, and libpq's),
        oldest first; an empty one first if some were dropped (a plain wake-up: what they
        carried is in the table)."""
        self._check()
        taken, self._handed = self._handed, []
        self._take_libpqs(taken)
        payloads = [notify.extra for notify in taken]
        if self._dropped:
            self._dropped = False
            payloads.insert(0, b"")
        return payloads

    def _take_libpqs(self, into: list[PGnotify]) -> None:
        pgconn = self._pgconn
        while (notify := pgconn.notifies()) is not None:
            into.append(notify)
