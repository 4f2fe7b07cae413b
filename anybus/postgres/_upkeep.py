"""A bus's upkeep of its channel: housekeeping, and watching Postgres's notification queue.

Housekeeping (``housekeep()``, see :mod:`anybus.postgres._schema`) deletes what every
consumer acknowledged, or what lies beyond its ``max_len``, and the consumers gone longer
than their retention. A bus that carries messages then reads how full the cluster's
notification queue is (``pg_notification_queue_usage()``, 0 to 1). The queue (8 GB in a
standard installation) keeps every notification until each listening session of the cluster
has read it; a session that stops reading (a process stopped, a session idle in a
transaction) makes it grow, and once it is full every ``NOTIFY``, so every publish, fails.
Carried messages make the notifications about a hundred times larger, so while the queue is
:data:`CARRY_PAUSE` full the bus carries none (its notifications only wake the readers,
which read the table), and says so once; it carries them again once the queue is back under
half that. A role that may not read the queue's usage (a database that revoked it from
``PUBLIC``) is told once, and carries on without the pause.
"""

from __future__ import annotations

import logging
from typing import final

from .._exceptions import TransportError
from ._client import PgConnection
from ._outbox import Outbox

__all__ = ["CARRY_PAUSE", "Upkeep"]

logger = logging.getLogger("anybus.postgres")

#: How full the notification queue may be (0 to 1) before a bus stops carrying messages.
CARRY_PAUSE = 0.05

_USAGE = "SELECT pg_catalog.pg_notification_queue_usage()"
_DENIED = "42501"  # insufficient_privilege


@final
class Upkeep:
    """Keeps house on one channel for one bus, and pauses its carrying while the notification
    queue is full (see the module docs)."""

    __slots__ = ("_carry", "_outbox", "_parameters", "_statement", "_watching", "_where")

    def __init__(
        self, *, statement: str, parameters: list[object], outbox: Outbox, where: object
    ) -> None:
        self._statement = statement
        self._parameters = parameters
        self._outbox = outbox
        self._carry = outbox.carry  # what the bus carries when the queue has room
        self._watching = bool(self._carry)  # whether to read the queue's usage
        self._where = where

    @property
    def paused(self) -> bool:
        """Whether carrying is paused (the notification queue is full)."""
        return self._outbox.carry != self._carry

    async def run(self, conn: PgConnection) -> None:
        """One round of housekeeping on ``conn``.

        Raises:
            TransportError: the statement failed.

        Cancelled, the round may have been done, or not; the next one does it again.
        """
        rows = await conn.fetch(self._statement, self._parameters)
        deleted, expired = rows[0]
        if deleted or expired:
            logger.debug(
                "%r: housekeeping deleted %d message(s) and %d idle consumer(s)",
                self._where,
                deleted,
                expired,
            )
        if not self._watching:
            return
        try:
            usage = (await conn.fetch(_USAGE, []))[0][0]
        except TransportError as exc:
            if getattr(exc, "sqlstate", None) != _DENIED:
                raise
            self._watching = False
            logger.warning(
                "%r: this role may not read pg_notification_queue_usage() (%s): carrying "
                "messages in notifications is not paused if the queue fills up; grant it "
                "EXECUTE on that function, or pass carry_messages=False",
                self._where,
                exc,
            )
            return
        self.watch(float(usage))

    def watch(self, usage: float) -> None:
        """Pause or resume carrying for the notification queue's ``usage`` (0 to 1)."""
        if not self._carry:
            return
        if not self.paused and usage >= CARRY_PAUSE:
            self._outbox.carry = 0
            logger.warning(
                "%r: Postgres's notification queue is %.1f%% full (a session that listens "
                "is not reading its notifications; see pg_notification_queue_usage()): "
                "carrying messages in notifications is paused until it is under %.1f%%",
                self._where,
                usage * 100,
                CARRY_PAUSE * 50,
            )
        elif self.paused and usage < CARRY_PAUSE / 2:
            self._outbox.carry = self._carry
            logger.info(
                "%r: Postgres's notification queue is %.1f%% full: carrying messages again",
                self._where,
                usage * 100,
            )
