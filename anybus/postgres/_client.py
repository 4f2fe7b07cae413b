"""The adapter between anybus and psycopg 3: with :mod:`._nonblocking`, which it drives,
:mod:`._connect`, which opens its connections, and :mod:`._options` (a dsn's own options),
the only modules that import psycopg.

How it drives psycopg on both backends: psycopg's async API is built on asyncio, so it cannot
serve a trio program. Each :class:`PgConnection` holds one *sync* connection (autocommit) and
runs the bus's statements (:meth:`PgConnection.fetch`) on the event loop, without a thread:
:class:`~anybus.postgres._nonblocking.Statements` sends each with libpq's non-blocking calls
and waits for the socket with ``anyio.wait_writable`` / ``anyio.wait_readable``, on asyncio
and on trio alike; psycopg's adapters convert the parameters and the rows. Connecting is
libpq's non-blocking connect, from the event loop too (:mod:`._connect`; only the name
resolution on a worker thread), so a cancelled connect ends at once. What is rare (a script,
closing) runs on a worker thread through ``anyio.to_thread.run_sync`` with
psycopg's sync API. One statement at a time per connection.
Waiting for messages takes no thread either: :meth:`PgConnection.wait_notifies` waits for the
connection's socket to become readable, then lets libpq read what arrived, without blocking.
So a bus waiting for messages ends its wait as soon as it is cancelled, no thread is left
waiting, and no event loop is blocked.

A statement is given as long as the server could take to answer it (its ``statement_timeout``,
and :data:`ANSWER_MARGIN` more); a cancelled call waits for its statement to end, but for
:data:`CANCEL_GRACE` at most. A statement not answered by then (the server hangs, or the
network is gone) has its connection's socket shut down, which ends it at once, and the
connection is lost. So no thread or connection outlives the bus, and no wait is unbounded,
even on a server that stopped answering.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar, final

import psycopg
from anyio import (
    CancelScope,
    CapacityLimiter,
    WouldBlock,
    current_time,
    fail_after,
    move_on_after,
    to_thread,
)
from anyio.lowlevel import checkpoint_if_cancelled
from psycopg.conninfo import make_conninfo

from .._exceptions import TransportError
from ._connect import connect
from ._nonblocking import Statements
from ._options import session_options

__all__ = ["DatabaseError", "PgConnection", "check_dsn", "describe"]

logger = logging.getLogger("anybus.postgres")

_T = TypeVar("_T")

#: Seconds past its ``statement_timeout`` after which a statement is given up: the server
#: would have ended it by then, so it is not answering.
ANSWER_MARGIN = 1.0

#: Seconds a cancelled call waits for its statement to end before it breaks the connection.
CANCEL_GRACE = 1.0


class DatabaseError(TransportError):
    """The server refused a statement (as opposed to the connection failing).

    Attributes:
        sqlstate: the five-character SQLSTATE code, or None.
    """

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def check_dsn(dsn: str) -> None:
    """Refuse a dsn libpq cannot parse (ValueError, naming the parameter and what to write);
    the password is never shown."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "it does not parse"
        raise ValueError(
            f"dsn is not a libpq connection string or URL ({detail}): write it as "
            f"'postgresql://user@host:5432/dbname' or 'host=... dbname=...'"
        ) from None


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
        if isinstance(exc, psycopg.errors.QueryCanceled):  # the statement_timeout, say
            return TransportError(f"postgres at {where} did not finish a statement: {detail}")
        return TransportError(f"postgres at {where} is unreachable: {detail}")
    diag = exc.diag
    text = diag.message_primary or str(exc)
    if diag.message_detail:
        text = f"{text} ({diag.message_detail})"
    return DatabaseError(f"postgres at {where} refused a statement: {text}", exc.sqlstate)


class _NotRun(Exception):
    """Raised on the worker thread for a statement whose caller gave up before it began."""


@final
class _Statement:
    """A statement handed to a worker thread: whether it began, and when it ended. Its
    caller, giving up, either stops it from beginning or knows to wait for its end."""

    __slots__ = ("_lock", "_state", "ended")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "waiting"  # then "begun" (by the thread) or "skipped" (by the caller)
        self.ended = threading.Event()

    def begin(self) -> bool:
        """On the thread: whether to run the statement (its caller did not give up)."""
        with self._lock:
            if self._state == "skipped":
                return False
            self._state = "begun"
            return True

    def skip(self) -> bool:
        """For the caller giving up: whether the statement never began (and now never
        will)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "skipped"
            return self._state == "skipped"


class PgConnection:
    """One psycopg connection, driven from the event loop (see the module docs)."""

    __slots__ = (
        "_answer_within",
        "_conn",
        "_limiter",
        "_started",
        "_statements",
        "_where",
        "broken",
        "failure",
    )

    def __init__(
        self, conn: psycopg.Connection[Any], where: str, *, statement_timeout: float
    ) -> None:
        self._conn = conn
        self._where = where
        self._answer_within = statement_timeout + ANSWER_MARGIN
        self._limiter = CapacityLimiter(1)  # one statement at a time
        self._statements = Statements(conn)
        self._started: object | None = None  # holds the limiter for start()'s statement
        #: Whether the connection is lost (the next call raises at once).
        self.broken = False
        #: Why it was lost.
        self.failure: TransportError | None = None

    def _break(self, error: TransportError) -> TransportError:
        self.broken = True
        self.failure = error
        return error

    def _failed(self, exc: psycopg.Error) -> TransportError:
        error = _translate(exc, self._where)
        if not isinstance(error, DatabaseError) or self._conn.closed:
            self._break(error)
        return error

    def _unanswered(self) -> TransportError:
        within = f"within {self._answer_within} s: the connection is given up"
        return self._break(TransportError(f"postgres at {self._where} did not answer {within}"))

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
        """Connect (from the event loop, bounded by ``connect_timeout``: see ``_connect``).
        Not ``durable``: the session's commits do not wait for the disk."""
        where = describe(dsn)
        options = session_options(dsn, statement_timeout=statement_timeout, durable=durable)
        try:
            conninfo = make_conninfo(dsn, application_name=application_name[:63], options=options)
            conn = await connect(conninfo, within=connect_timeout)
        except psycopg.Error as exc:
            raise _translate(exc, where) from exc
        return cls(conn, where, statement_timeout=statement_timeout)

    @property
    def where(self) -> str:
        return self._where

    async def call(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work(connection)`` on a worker thread; psycopg's errors become
        :class:`~anybus.TransportError` (a refused statement: :class:`DatabaseError`).

        Cancelled, it waits for the statement to end (see the module docs for the bound),
        then raises the cancellation: the statement may have taken effect.

        Raises:
            TransportError: the server refused the statement, the connection broke, or the
                server did not answer in time (the connection is lost then).
        """
        if self.broken:
            raise TransportError(f"postgres at {self._where}: the connection was lost")
        statement = _Statement()

        def run(conn: psycopg.Connection[Any]) -> _T:
            if not statement.begin():
                raise _NotRun  # its caller gave up before the thread took it up
            try:
                return work(conn)
            finally:
                statement.ended.set()

        started = current_time()
        try:
            with fail_after(self._answer_within):
                return await to_thread.run_sync(
                    run, self._conn, limiter=self._limiter, abandon_on_cancel=True
                )
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        except TimeoutError:
            with CancelScope(shield=True):
                await self._wait_out(statement, started, 0.0)
            raise self._unanswered() from None
        except BaseException:  # cancelled: the statement still runs on its thread
            with CancelScope(shield=True):
                await self._wait_out(statement, started, CANCEL_GRACE)
            raise

    async def _wait_out(self, statement: _Statement, started: float, patience: float) -> None:
        """Wait until the statement's thread has ended (if it began), for ``patience`` seconds
        and while the server could still answer; then shut the connection's socket, which
        ends the statement at once."""
        ended = statement.ended
        if statement.skip() or ended.is_set():
            return
        left = min(patience, started + self._answer_within - current_time())
        if left > 0 and await to_thread.run_sync(ended.wait, left):
            return
        self._shut_down()
        await to_thread.run_sync(ended.wait, ANSWER_MARGIN)

    def _shut_down(self) -> None:
        """Lose the connection: shut its socket down, which ends a statement at once."""
        self._break(TransportError(f"postgres at {self._where} did not answer in time"))
        try:
            with socket.socket(fileno=os.dup(self._conn.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error) as exc:
            logger.debug("shutting a connection to %s down: %s", self._where, exc)

    async def fetch(self, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Run one statement on the event loop (no thread) and return its rows (results in
        binary format).

        Cancelled, it waits for the statement to end (see the module docs for the bound),
        then raises the cancellation: the statement may have taken effect.

        Raises:
            TransportError: the server refused the statement, the connection broke, or the
                server did not answer in time (the connection is lost then).
        """
        if self.broken:
            raise TransportError(f"postgres at {self._where}: the connection was lost")
        await checkpoint_if_cancelled()  # cancelled already: nothing is sent
        borrower = object()
        try:  # free, as it mostly is: taken without a trip through the scheduler
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            await self._limiter.acquire_on_behalf_of(borrower)
        return await self._answer(borrower, partial(self._statements.fetch, query, params))

    def start(self, query: str, params: Sequence[object]) -> bool:
        """Send a statement prepared on this connection already, now, in the calling task;
        its rows are :meth:`collect`'s, which another task may await. ``False``: nothing was
        sent (the connection is lost or busy, the query is new to it, or psycopg refused it),
        and :meth:`fetch` is the way."""
        if self.broken or self._started is not None:
            return False
        borrower = object()
        try:
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            return False
        if not self._statements.start(query, params):
            self._limiter.release_on_behalf_of(borrower)
            return False
        self._started = borrower
        return True

    async def collect(self) -> list[tuple[Any, ...]]:
        """The rows of the statement :meth:`start` sent; as :meth:`fetch` returns, raises
        and is cancelled."""
        borrower, self._started = self._started, None
        if borrower is None:
            raise RuntimeError("collect() without a statement that start() sent")
        return await self._answer(borrower, self._statements.collect)

    async def _answer(
        self, borrower: object, run: Callable[[], Awaitable[list[tuple[Any, ...]]]]
    ) -> list[tuple[Any, ...]]:
        """Await ``run()`` (the statement's rows), with ``fetch()``'s bound, errors and
        cancellation; then give back the connection, which ``borrower`` holds."""
        try:
            with fail_after(self._answer_within):
                return await run()
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        except TimeoutError:
            self._shut_down()
            raise self._unanswered() from None
        except BaseException:  # cancelled: the statement may still run on the server
            with CancelScope(shield=True), move_on_after(CANCEL_GRACE) as waited:
                try:
                    await self._statements.finish()
                except psycopg.Error as exc:
                    self._break(_translate(exc, self._where))
            if waited.cancelled_caught:
                self._shut_down()
            raise
        finally:
            self._limiter.release_on_behalf_of(borrower)

    async def execute_script(self, script: str) -> None:
        """Run a script of several statements (no parameters)."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(script.encode())

        await self.call(work)

    async def wait_notifies(self, own: bytes | None = None) -> tuple[list[bytes], int]:
        """Wait until notifications arrive; return the payloads of the others, and how many
        were ``own``'s: those whose payload is ``own``, or starts with it and a space. An
        empty payload stands for notifications dropped while no task waited (see
        :data:`~anybus.postgres._turns.MAX_HANDED`).
        Cancelling the wait changes nothing (no thread is involved). The connection may run
        statements meanwhile, from other tasks: the two take turns at its socket (see
        :class:`~anybus.postgres._turns.Turns`); one task at a time waits here."""
        pgconn = self._conn.pgconn
        turns = self._statements.turns
        mark = b"\0" if own is None else own + b" "  # no payload holds a NUL
        while True:
            others: list[bytes] = []
            mine = 0
            try:
                turns.consume()
                for extra in turns.payloads():
                    if extra == own or extra.startswith(mark):
                        mine += 1
                    else:
                        others.append(extra)
                if others or mine:
                    return others, mine
                if pgconn.socket < 0:
                    raise psycopg.OperationalError("the connection was lost")
                await turns.readable(notifications=True)
            except psycopg.Error as exc:
                raise self._break(_translate(exc, self._where)) from exc

    async def close(self) -> None:
        """Close the connection (on a worker thread; never raises). Shielded: a connection
        is closed however its closer is cancelled. A task waiting for its notifications is
        told at once that it was lost."""
        self._statements.turns.close()
        if self._started is not None:  # started, never collected: its result is dropped
            self._shut_down()
            self._limiter.release_on_behalf_of(self._started)
            self._started = None
        try:
            with CancelScope(shield=True):
                await to_thread.run_sync(self._conn.close, limiter=self._limiter)
        except Exception as exc:
            logger.debug("closing a connection to %s: %s", self._where, exc)
