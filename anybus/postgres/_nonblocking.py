"""Statements run on the event loop, without a thread: libpq's non-blocking API, anyio's waits.

:class:`Statements` runs one statement at a time on one psycopg connection: it sends it with
libpq's asynchronous calls (``send_query_params`` / ``send_query_prepared``, ``flush``), waits
on the event loop for the socket (``anyio.wait_writable`` / ``anyio.wait_readable``), lets
libpq read what arrived (``consume_input``) and takes the results (``get_result``). This is how
psycopg's own asyncio connection talks to the server, with anyio's socket waits in place of
asyncio's, so it serves asyncio and trio alike. The conversions are psycopg's: parameters are
dumped by the connection's adapters, as its cursors dump them; rows are loaded by its loaders;
a failed statement raises the psycopg error its cursor would (``errors.error_from_result``).
A statement prepared already can also be *started* (:meth:`Statements.start`: sent at once,
no wait) and its rows collected later, by another task of the thread
(:meth:`Statements.collect`).

Compared with running ``cursor.execute`` on a worker thread (``anyio.to_thread``), a statement
costs no thread hand-off each way: on a busy machine that hand-off costs more than a short
statement itself (the worker thread and then the event loop must each be scheduled again).
Statements are prepared on the server on first use (one extra round trip), as psycopg
prepares those it sees repeatedly.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any, final

import psycopg
from anyio import wait_readable, wait_writable
from psycopg import errors, pq
from psycopg.adapt import PyFormat
from psycopg.pq.abc import PGconn, PGresult

__all__ = ["Statements"]

#: Statements prepared per connection, at most (beyond, they run unprepared).
MAX_PREPARED = 64

_PLACEHOLDER = re.compile(rb"%s|%%")
#: The SQLSTATEs of a prepared statement gone stale: its result type changed (a function
#: replaced), or the server forgot it.
_STALE = frozenset({"0A000", "26000"})

_Load = Callable[[Any], Any]


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

    __slots__ = ("_conn", "_in_flight", "_loaders", "_names", "_numbered", "_prepared", "_sent")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._numbered: dict[str, bytes] = {}
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._names = 0  # prepared statements named so far
        self._in_flight = False  # sent, and its results not all taken yet
        self._loaders: dict[tuple[int, int], _Load] = {}
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
    ) -> tuple[list[bytes | None], tuple[int, ...], list[int]]:
        adapters = self._conn.adapters
        values: list[bytes | None] = []
        types: list[int] = []
        formats: list[int] = []
        for param in params:
            if param is None:
                values.append(None)
                types.append(0)
                formats.append(pq.Format.TEXT)
                continue
            cls = type(param)
            dumper = adapters.get_dumper(cls, PyFormat.AUTO)(cls, self._conn)
            dumper = dumper.upgrade(param, PyFormat.AUTO)
            value = dumper.dump(param)
            values.append(None if value is None else bytes(value))
            types.append(dumper.oid)
            formats.append(dumper.format)
        return values, tuple(types), formats

    def _load(self, result: PGresult) -> list[tuple[Any, ...]]:
        loads = [self._loader(result.ftype(i), result.fformat(i)) for i in range(result.nfields)]
        rows: list[tuple[Any, ...]] = []
        for row in range(result.ntuples):
            values = []
            for column, load in enumerate(loads):
                value = result.get_value(row, column)
                values.append(None if value is None else load(value))
            rows.append(tuple(values))
        return rows

    def _loader(self, oid: int, fmt: int) -> _Load:
        load = self._loaders.get((oid, fmt))
        if load is None:
            adapters, format_ = self._conn.adapters, pq.Format(fmt)
            cls = adapters.get_loader(oid, format_) or adapters.get_loader(0, format_)
            load = bytes if cls is None else cls(oid, self._conn).load
            self._loaders[(oid, fmt)] = load
        return load

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
        while pgconn.flush():
            await wait_writable(pgconn.socket)
        last: PGresult | None = None
        failure: psycopg.Error | None = None
        while True:
            pgconn.consume_input()
            if pgconn.is_busy():
                await wait_readable(pgconn.socket)
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
        if failure is not None:
            raise failure
        if pgconn.status == pq.ConnStatus.BAD or last is None:
            raise psycopg.OperationalError(
                f"the connection was lost: {pgconn.get_error_message() or 'no result'}"
            )
        return last
