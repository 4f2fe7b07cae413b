"""Statements run on the event loop, without a thread: libpq's non-blocking API, anyio's waits.

:class:`Statements` runs one statement at a time on one psycopg connection: it sends it with
libpq's asynchronous calls (``send_query_params`` / ``send_query_prepared``, ``flush``), waits
on the event loop for the socket (``anyio.wait_writable`` / ``anyio.wait_readable``), lets
libpq read what arrived (``consume_input``) and takes the results (``get_result``). This is how
psycopg's own asyncio connection talks to the server, with anyio's socket waits in place of
asyncio's, so it serves asyncio and trio alike. The conversions are psycopg's: a
``Transformer`` of the connection dumps the parameters and loads the rows, as in its cursors
(lists go in binary); a failed statement raises the psycopg error its cursor would
(``errors.error_from_result``).
A statement prepared already can also be *started* (:meth:`Statements.start`: sent at once,
no wait) and its rows collected later, by another task of the thread
(:meth:`Statements.collect`).

A task may wait for the connection's notifications meanwhile: the two take turns at its
socket (:class:`~anybus.postgres._turns.Turns`).

Compared with running ``cursor.execute`` on a worker thread (``anyio.to_thread``), a statement
costs no thread hand-off each way: on a busy machine that hand-off costs more than a short
statement itself (the worker thread and then the event loop must each be scheduled again).
Statements are prepared on the server on first use (one extra round trip), as psycopg
prepares those it sees repeatedly.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, final

import psycopg
from psycopg import errors, pq
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq.abc import PGconn, PGresult

from ._turns import Turns

__all__ = ["Statements"]

#: Statements prepared per connection, at most (beyond, they run unprepared).
MAX_PREPARED = 64

_PLACEHOLDER = re.compile(rb"%s|%%")
#: The SQLSTATEs of a prepared statement gone stale: its result type changed (a function
#: replaced), or the server forgot it.
_STALE = frozenset({"0A000", "26000"})

_BINARY, _AUTO = PyFormat.BINARY, PyFormat.AUTO


def _numbered(query: str) -> bytes:
    """``query`` with psycopg's ``%s`` placeholders as Postgres's ``$1``, ``$2``, ..."""
    count = 0

    def number(match: re.Match[bytes]) -> bytes:
        nonlocal count
        if match.group() == b"%%":
            return b"%"
        count += 1
        return b"$%d" % count

    return _PLACEHOLDER.sub(number, query.encode())


@final
class Statements:
    """Runs statements on ``conn`` from the event loop (see the module docs).

    One statement at a time: the caller serializes calls, and runs nothing else on the
    connection meanwhile.
    """

    __slots__ = (
        "_conn",
        "_in_flight",
        "_names",
        "_numbered",
        "_prepared",
        "_sent",
        "_tx",
        "turns",
    )

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        #: The turns at the socket, which a task waiting for notifications shares.
        self.turns = Turns(conn.pgconn)
        self._numbered: dict[str, bytes] = {}
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._names = 0  # prepared statements named so far
        self._in_flight = False  # sent, and its results not all taken yet
        # psycopg's own converter, as its cursors use: it keeps the dumpers and loaders.
        self._tx = Transformer(conn)
        self._sent: tuple[bytes, tuple[int, ...]] | None = None  # the last statement sent

    async def fetch(self, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Run ``query`` (``%s`` placeholders) with ``params``; return its rows (results in
        binary format; none for a statement that returns no rows).

        Raises:
            psycopg.Error: the error psycopg raises for the same failure (the server refused
                the statement, or the connection broke).

        Cancelled, the statement may have been sent and may run: :meth:`finish` waits for
        it to end; until then the connection cannot run another.
        """
        await self.finish()
        pgconn = self._conn.pgconn
        command = self._command(query)
        values, types, formats = self._dump(params)
        key = (command, types)
        name = self._prepared.get(key)
        if name is None and len(self._prepared) < MAX_PREPARED:
            name = b"anybus_%d" % self._names
            self._names += 1
            pgconn.send_prepare(name, command, param_types=types)
            await self._result(pgconn)
            self._prepared[key] = name
        if name is None:
            pgconn.send_query_params(
                command, values, types, formats, result_format=pq.Format.BINARY
            )
        else:
            pgconn.send_query_prepared(name, values, formats, result_format=pq.Format.BINARY)
        self._sent = key
        return await self.collect()

    def start(self, query: str, params: Sequence[object]) -> bool:
        """Send ``query`` with ``params`` now, without waiting, if it was prepared on this
        connection already (by :meth:`fetch`) and no statement is running; its rows are
        then :meth:`collect`'s, which any task of the thread may await. ``False``: nothing
        was sent (a statement runs, the query is new here, or psycopg refused a parameter or
        the connection; :meth:`fetch` meets the same refusal and raises it)."""
        command = self._numbered.get(query)
        if self._in_flight or command is None:
            return False
        try:
            values, types, formats = self._dump(params)
            key = (command, types)
            name = self._prepared.get(key)
            if name is None:
                return False
            pgconn = self._conn.pgconn
            pgconn.send_query_prepared(name, values, formats, result_format=pq.Format.BINARY)
        except psycopg.Error:
            return False
        self._sent = key
        self._in_flight = True
        # What it cannot write now, collect() writes as the socket allows (and a failure
        # here, collect() meets again and raises).
        with contextlib.suppress(psycopg.Error):
            pgconn.flush()
        return True

    async def collect(self) -> list[tuple[Any, ...]]:
        """The rows of the statement sent last (by :meth:`fetch` or :meth:`start`).

        Raises:
            psycopg.Error: as :meth:`fetch`.

        Cancelled, as :meth:`fetch`: the statement may run; :meth:`finish` waits for it.
        """
        try:
            result = await self._result(self._conn.pgconn)
        except psycopg.DatabaseError as exc:
            if exc.sqlstate in _STALE and self._sent is not None:
                self._prepared.pop(self._sent, None)  # prepared again, under a new name
            raise
        if result.status != pq.ExecStatus.TUPLES_OK:
            return []
        return self._load(result)

    def _command(self, query: str) -> bytes:
        command = self._numbered.get(query)
        if command is None:
            command = self._numbered[query] = _numbered(query)
        return command

    def _dump(
        self, params: Sequence[object]
    ) -> tuple[Sequence[Buffer | None], tuple[int, ...], list[pq.Format]]:
        # Lists go in binary: a bytea[] in text would be hex-escaped, twice its size, and
        # parsed again by the server; scalars as psycopg's cursors choose (a str stays of
        # unknown type, for the server to infer).
        formats = [_BINARY if type(param) is list else _AUTO for param in params]
        values = self._tx.dump_sequence(params, formats)
        return values, self._tx.types or (), self._tx.formats or []

    def _load(self, result: PGresult) -> list[tuple[Any, ...]]:
        if not result.ntuples:
            return []
        transformer = self._tx
        transformer.set_pgresult(result)
        try:
            return transformer.load_rows(0, result.ntuples, tuple)
        finally:
            transformer.set_pgresult(None)

    async def finish(self) -> None:
        """Wait for the end of a statement whose :meth:`fetch` was cancelled, and drop its
        results; return at once if none is running. Cancelled, it can be called again.

        Raises:
            psycopg.OperationalError: the connection broke.
        """
        if not self._in_flight:
            return
        try:
            await self._result(self._conn.pgconn)
        except psycopg.DatabaseError as exc:
            if isinstance(exc, psycopg.OperationalError):
                raise
            # It was refused: it ended all the same.

    async def _result(self, pgconn: PGconn) -> PGresult:
        """Flush what was sent, wait for the statement's results; return the last one, or
        raise the first error."""
        self._in_flight = True
        turns = self.turns
        while pgconn.flush():
            await turns.writable()
        last: PGresult | None = None
        failure: psycopg.Error | None = None
        while True:
            turns.consume()
            if pgconn.is_busy():
                await turns.readable()
                continue
            result = pgconn.get_result()
            if result is None:
                break
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                if pgconn.status == pq.ConnStatus.BAD:
                    failure = psycopg.OperationalError(
                        f"the connection was lost: {pgconn.get_error_message()}"
                    )
                else:
                    failure = errors.error_from_result(result, encoding=self._conn.info.encoding)
            last = result
        self._in_flight = False
        turns.hand_over()
        if failure is not None:
            raise failure
        if pgconn.status == pq.ConnStatus.BAD or last is None:
            raise psycopg.OperationalError(
                f"the connection was lost: {pgconn.get_error_message() or 'no result'}"
            )
        return last
