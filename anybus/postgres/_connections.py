"""The connections of a Postgres bus: opened patiently, replaced when they break, and the
server's reachability as the bus saw it."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import final

from anyio import Lock, move_on_after, sleep

from .._exceptions import TransportError
from ._client import ANSWER_MARGIN, PgConnection, describe
from ._schema import FATAL_STATES

__all__ = ["Connections", "Setup"]

logger = logging.getLogger("anybus.postgres")

#: Longest pause between two tries while the server is away, in seconds.
MAX_RETRY_DELAY = 1.0

Setup = Callable[[PgConnection], Awaitable[None]]


@final
class Connections:
    """A bus's connections by role (``write``, which also listens, and ``read``)."""

    def __init__(
        self, dsn: str, *, owner: str, connect_timeout: float, statement_timeout: float
    ) -> None:
        self._dsn = dsn
        self._owner = owner
        self.where = describe(dsn)
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        #: How long a statement may take to be answered (as :class:`PgConnection` bounds it).
        self.answer_within = statement_timeout + ANSWER_MARGIN
        self._conns: dict[str, PgConnection] = {}
        self._replacing: dict[str, Lock] = {}  # held while a role's connection is replaced
        self._setting_up: set[str] = set()  # roles whose new connection is not set up yet
        # The outage count when each role's connection was opened: a connection opened
        # before the last outage began breaking is part of that outage, not a new one.
        self._opened_in: dict[str, int] = {}
        self._announced = 0  # the outages whose end was logged
        #: Whether the bus's connections reach the server, as far as it knows.
        self.connected = False
        #: How many times the server became unreachable (once an outage, however many of
        #: the bus's connections broke in it).
        self.outages = 0

    def _reached(self) -> None:
        if not self.connected:
            self.connected = True
            if self._announced < self.outages:
                self._announced = self.outages
                logger.info("%s: postgres at %s is back", self._owner, self.where)
            elif not self.outages:
                logger.info("%s: connected to postgres at %s", self._owner, self.where)

    def _lost(self, role: str, why: object) -> None:
        self.connected = False
        if self._opened_in.pop(role, -1) == self.outages:
            self.outages += 1
            logger.warning("%s: lost its connection: %s", self._owner, why)

    def get(self, role: str) -> PgConnection | None:
        """``role``'s connection, if it has one that is not broken (and is set up)."""
        conn = self._conns.get(role)
        return None if conn is None or conn.broken or role in self._setting_up else conn

    async def open(self, role: str, *, patient: bool) -> PgConnection:
        """A new connection for ``role``, retrying while the server is away (for
        ``connect_timeout`` seconds unless ``patient``).

        Raises:
            TransportError: the server did not answer in time.
        """
        delay, last = 0.05, None
        with move_on_after(math.inf if patient else self._connect_timeout):
            while True:
                try:
                    conn = await PgConnection.open(
                        self._dsn,
                        application_name=f"anybus-{role}-{self._owner}",
                        connect_timeout=self._connect_timeout,
                        statement_timeout=self._statement_timeout,
                        # Acknowledgements may be lost in a crash (they come again, and are
                        # dropped as repeats); what is sent never is.
                        durable=role == "write",
                    )
                except TransportError as exc:
                    self.connected = False
                    # At start, a refusal for good is said at once; a running bus reconnecting
                    # keeps trying (a role renamed back, a password rotated, CONNECT granted).
                    refusal = None if patient else _refusal(exc)
                    if refusal is not None:
                        raise TransportError(
                            f"postgres at {self.where} refused the connection: {refusal}; "
                            f"check the dsn (its user, password, database and options)"
                        ) from exc
                    last = exc
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                self._reached()
                self._opened_in[role] = self.outages
                # Kept before anything is awaited: cancelled now, it is still closed with the rest.
                old, self._conns[role] = self._conns.get(role), conn
                if old is not None:
                    await old.close()
                return conn
        raise TransportError(
            f"postgres at {self.where} is unreachable after {self._connect_timeout} s: check "
            f"that the server runs and the dsn is right ({last})"
        ) from last

    def connector(
        self, role: str, setup: Setup | None = None
    ) -> Callable[[], Awaitable[PgConnection]]:
        """A function giving ``role``'s connection: a new one (opened patiently, then set up
        by ``setup``) when the last one broke. Tasks sharing a role share one connector, so
        that every new connection is set up the same way; they wait for one another's
        replacement of it."""

        async def connection() -> PgConnection:
            conn = self.get(role)
            if conn is not None:
                return conn
            lock = self._replacing.get(role)
            if lock is None:
                lock = self._replacing[role] = Lock()
            async with lock:  # tasks sharing the role replace its connection once
                return await replace()

        async def replace() -> PgConnection:
            conn = self._conns.get(role)
            if conn is not None:
                if not conn.broken:
                    return conn  # replaced while this task waited for the lock
                self._lost(role, conn.failure or f"postgres at {self.where}: connection lost")
            while True:
                self._setting_up.add(role)  # given to no one before it is set up
                try:
                    conn = await self.open(role, patient=True)
                    if setup is not None:
                        await setup(conn)
                except TransportError as exc:
                    if getattr(exc, "sqlstate", None) in FATAL_STATES:
                        raise
                    logger.debug(
                        "%s: setting up a %s connection failed: %s", self._owner, role, exc
                    )
                    await sleep(0.05)
                    continue
                except BaseException:  # cancelled: not set up, so not to be given out
                    await self._discard(role)
                    raise
                finally:
                    self._setting_up.discard(role)
                return conn

        return connection

    async def _discard(self, role: str) -> None:
        conn = self._conns.pop(role, None)
        self._opened_in.pop(role, None)
        if conn is not None:
            await conn.close()  # shielded

    async def close(self) -> None:
        """Close every connection."""
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.close()


#: What libpq says when the server refuses a connection for good (a wrong role, password or
#: database, or no pg_hba.conf entry), as opposed to a server that is away or starting up.
_REFUSALS = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied for database",
    "for connection option",  # a dsn whose value libpq cannot take (a port that is no number)
    "invalid sslmode value",
    "does not support SSL",  # sslmode=require against a server without it
    "invalid value for parameter",  # a setting the server refuses (the dsn's options)
    "unrecognized configuration parameter",
    "server is in hot standby mode",  # target_session_attrs the server does not meet
    "session is read-only",
    "server is not in hot standby mode",
    "session is not read-only",
)


def _refusal(error: TransportError) -> str | None:
    """libpq's reason, if ``error`` (from opening a connection) is a refusal for good."""
    cause = str(error.__cause__ or "")
    for line in cause.splitlines():
        if any(phrase in line for phrase in _REFUSALS):
            return line.split("FATAL:", 1)[-1].strip()
    return None
