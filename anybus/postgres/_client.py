"""The adapter between anybus and psycopg 3: the only module that imports psycopg.

How it drives psycopg on both backends: psycopg's async API is built on asyncio, so it cannot
serve a trio program; its sync API is thread-safe. Each :class:`PgConnection` therefore holds
one *sync* connection (autocommit) and runs every statement on a worker thread through
``anyio.to_thread.run_sync``, one statement at a time, on asyncio and on trio alike. Statements
are short; none of them waits for messages. Waiting for messages is done without a thread:
:meth:`PgConnection.wait_notifies` waits for the connection's socket to become readable on the
event loop (``anyio.wait_readable``) and then lets libpq read what arrived, without blocking.
So a bus waiting for messages ends its wait as soon as it is cancelled, no thread is left
waiting, and no event loop is blocked.

A statement's thread is never abandoned: cancelling a call waits for the statement to end
(bounded by ``statement_timeout``), so no thread or connection outlives the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from anyio import CapacityLimiter, to_thread, wait_readable
from psycopg import sql

from .._exceptions import TransportError

__all__ = ["DatabaseError", "PgConnection", "describe"]

logger = logging.getLogger("anybus.postgres")

_T = TypeVar("_T")


class DatabaseError(TransportError):
    """The server refused a statement (as opposed to the connection failing).

    Attributes:
        sqlstate: the five-character SQLSTATE code, or None.
    """

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def describe(dsn: str) -> str:
    """The server a dsn names, without its password: ``host:port/dbname``."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an invalid dsn"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "")
    return f"{host}:{port}/{dbname}"


def _translate(exc: psycopg.Error, where: str) -> TransportError:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return TransportError(f"postgres at {where} is unreachable: {detail}")
    diag = exc.diag
    text = diag.message_primary or str(exc)
    if diag.message_detail:
        text = f"{text} ({diag.message_detail})"
    return DatabaseError(f"postgres at {where} refused a statement: {text}", exc.sqlstate)


class PgConnection:
    """One psycopg connection driven from worker threads (see the module docs)."""

    __slots__ = ("_conn", "_limiter", "_where", "broken")

    def __init__(self, conn: psycopg.Connection[Any], where: str) -> None:
        self._conn = conn
        self._where = where
        self._limiter = CapacityLimiter(1)  # one statement at a time
        self.broken = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        application_name: str,
        connect_timeout: float,
        statement_timeout: float,
        durable: bool = True,
    ) -> PgConnection:
        """Connect (on a worker thread, bounded by ``connect_timeout``). Not ``durable``:
        the session's commits do not wait for the disk (``synchronous_commit=off``)."""
        where = describe(dsn)
        options = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
        if not durable:
            options += " -c synchronous_commit=off"

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                dsn,
                autocommit=True,
                application_name=application_name[:63],
                connect_timeout=max(1, round(connect_timeout)),
                options=options,
            )

        try:
            conn = await to_thread.run_sync(connect)
        except psycopg.Error as exc:
            raise _translate(exc, where) from exc
        return cls(conn, where)

    @property
    def where(self) -> str:
        return self._where

    async def call(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work(connection)`` on a worker thread; psycopg's errors become
        :class:`~anybus.TransportError` (a refused statement: :class:`DatabaseError`)."""
        if self.broken:
            raise TransportError(f"postgres at {self._where}: the connection was lost")
        try:
            return await to_thread.run_sync(work, self._conn, limiter=self._limiter)
        except psycopg.Error as exc:
            error = _translate(exc, self._where)
            if not isinstance(error, DatabaseError) or self._conn.closed:
                self.broken = True
            raise error from exc

    async def fetch(self, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (results in binary format)."""

        def work(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cursor = conn.execute(query, params, binary=True)
            return cursor.fetchall() if cursor.description is not None else []

        return await self.call(work)

    async def execute_script(self, script: str) -> None:
        """Run a script of several statements (no parameters)."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(script.encode())

        await self.call(work)

    async def listen(self, channel: str) -> None:
        """``LISTEN`` on ``channel``."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

        await self.call(work)

    async def wait_notifies(self) -> int:
        """Wait until notifications arrive; return how many. Cancelling the wait changes
        nothing (no thread is involved). Only for a connection that runs no statements while
        it waits (a listening connection)."""
        pgconn = self._conn.pgconn
        while True:
            count = 0
            try:
                pgconn.consume_input()
                while pgconn.notifies() is not None:
                    count += 1
            except psycopg.Error as exc:
                self.broken = True
                raise _translate(exc, self._where) from exc
            if count:
                return count
            if pgconn.socket < 0:
                self.broken = True
                raise TransportError(f"postgres at {self._where}: the connection was lost")
            await wait_readable(pgconn.socket)

    async def close(self) -> None:
        """Close the connection (on a worker thread; never raises)."""
        try:
            await to_thread.run_sync(self._conn.close, limiter=self._limiter)
        except Exception as exc:
            logger.debug("closing a connection to %s: %s", self._where, exc)
