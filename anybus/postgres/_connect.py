"""Opening a psycopg connection from the event loop, so that a cancel ends it at once.

libpq's non-blocking connect: ``PQconnectStart`` (psycopg's ``pq.PGconn.connect_start``),
then ``PQconnectPoll`` until it is done, waiting for the socket with anyio's
``wait_readable`` / ``wait_writable`` in between, bounded by a deadline of ours (libpq does
not bound a non-blocking connect itself). Only the start runs on a worker thread, as it
resolves the host's name (``getaddrinfo`` blocks, and cannot be interrupted: a cancel waits
for it, never for the server). libpq itself goes through the dsn's hosts and its
``target_session_attrs``. A connect that fails, times out or is cancelled leaves no
connection behind: ``PQfinish`` closes what it opened. The connection is then handed to
psycopg (``psycopg.Connection(pgconn)``), which drives its statements from there on.
"""

from __future__ import annotations

from typing import Any

import psycopg
from anyio import move_on_after, to_thread, wait_readable, wait_writable
from psycopg import errors, pq
from psycopg.pq.abc import PGconn

__all__ = ["connect"]


async def connect(conninfo: str, *, within: float) -> psycopg.Connection[Any]:
    """A connection to ``conninfo`` in autocommit, opened within ``within`` seconds.

    Raises:
        psycopg.OperationalError: the server or libpq refused it, as libpq said;
            :class:`psycopg.errors.ConnectionTimeout` if it took longer than ``within``.
    """
    started: list[PGconn] = []

    def start() -> PGconn:
        pgconn = pq.PGconn.connect_start(conninfo.encode())
        started.append(pgconn)
        return pgconn

    try:
        pgconn = await to_thread.run_sync(start)
        with move_on_after(within) as scope:
            await _poll(pgconn)
        if scope.cancelled_caught:
            raise errors.ConnectionTimeout(f"connection timeout expired after {within} s")
        conn: psycopg.Connection[Any] = psycopg.Connection(pgconn)
        conn.autocommit = True
        return conn
    except BaseException:
        for pgconn in started:
            pgconn.finish()
        raise


async def _poll(pgconn: PGconn) -> None:
    """Drive ``PQconnectPoll`` until the connection is made (or raise libpq's error)."""
    while True:
        if pgconn.status == pq.ConnStatus.BAD:  # a dsn libpq refused outright
            message = pgconn.error_message.decode(errors="replace").strip()
            raise psycopg.OperationalError(f"connection is bad: {message}")
        status = pgconn.connect_poll()
        if status == pq.PollingStatus.OK:
            pgconn.nonblocking = 1  # as psycopg's own connect leaves it, for its statements
            return
        if status == pq.PollingStatus.READING:
            await wait_readable(pgconn.socket)
        elif status == pq.PollingStatus.WRITING:
            await wait_writable(pgconn.socket)
        else:  # FAILED
            message = pgconn.error_message.decode(errors="replace").strip() or "it failed"
            raise psycopg.OperationalError(f"connection failed: {message}")
