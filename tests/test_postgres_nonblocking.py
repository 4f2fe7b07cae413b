"""``anybus.postgres._nonblocking``: statements run on the event loop, on both backends, against
the shared Postgres server: psycopg's conversions both ways, psycopg's errors, prepared
statements, a lost connection, and an event loop that keeps running while a statement waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import errors

from anybus.postgres._nonblocking import Statements

pytestmark = pytest.mark.anyio


async def connect(dsn: str) -> psycopg.Connection[Any]:
    def work() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)

    return await anyio.to_thread.run_sync(work)


@pytest.fixture
async def conn(postgres_dsn: str) -> AsyncIterator[psycopg.Connection[Any]]:
    connection = await connect(postgres_dsn)
    try:
        yield connection
    finally:
        await anyio.to_thread.run_sync(connection.close)


async def test_parameters_and_rows_are_converted_as_psycopg_converts_them(
    conn: psycopg.Connection[Any],
) -> None:
    statements = Statements(conn)
    query = "SELECT %s::bigint, %s::text, %s::bytea, %s::boolean, %s::text, %s::bigint[]"
    params = [2**40, "é", b"\x00\xff", True, None, [1, 2**40]]
    with anyio.fail_after(10):
        rows = await statements.fetch(query, params)
    assert rows == [(2**40, "é", b"\x00\xff", True, None, [1, 2**40])]
    with anyio.fail_after(10):
        assert await statements.fetch("SELECT %s::bytea[]", [[b"a", b"\x00"]]) == [
            ([b"a", b"\x00"],)
        ]
        assert await statements.fetch("SELECT 7 %% 3, %s::integer", [5]) == [(1, 5)]
        many = await statements.fetch("SELECT i FROM generate_series(1, %s) AS i", [300])
        assert many == [(i,) for i in range(1, 301)]
        assert await statements.fetch("SELECT 1 WHERE %s", [False]) == []
        assert await statements.fetch("DO $$ BEGIN END $$", []) == []


async def test_lists_go_in_binary_and_scalars_as_psycopgs_cursors_send_them(
    conn: psycopg.Connection[Any],
) -> None:
    statements = Statements(conn)
    _, types, formats = statements._dump(["a", 5, [1, 2], [b"\x00" * 300], None])
    binary, text = psycopg.pq.Format.BINARY, psycopg.pq.Format.TEXT
    # A str stays of unknown type (oid 0) for the server to infer; the bodies are not
    # hex-escaped into a text array.
    assert formats == [text, binary, binary, binary, text]
    assert types[0] == 0
    assert types[3] == psycopg.adapters.types["bytea"].array_oid
    with anyio.fail_after(10):
        rows = await statements.fetch(
            "SELECT %s::bigint[], %s::bytea[], %s::text[], %s::bigint[]",
            [[], [b"\x00\xff" * 200, None], ["é", None], [None, 2**62]],
        )
    assert rows == [([], [b"\x00\xff" * 200, None], ["é", None], [None, 2**62])]
    # A later statement with other types of list elements is its own prepared statement.
    with anyio.fail_after(10):
        assert await statements.fetch("SELECT %s::bigint[]", [[1]]) == [([1],)]
        assert await statements.fetch("SELECT %s::bigint[]", [[2**40]]) == [([2**40],)]


async def test_a_refused_statement_raises_psycopgs_error_and_the_connection_goes_on(
    conn: psycopg.Connection[Any],
) -> None:
    statements = Statements(conn)
    with anyio.fail_after(10):
        with pytest.raises(errors.DivisionByZero) as caught:
            await statements.fetch("SELECT 1 / %s::integer", [0])
        assert caught.value.sqlstate == "22012"
        assert caught.value.diag.message_primary == "division by zero"
        with pytest.raises(errors.RaiseException, match="nope"):
            await statements.fetch("DO $$ BEGIN RAISE EXCEPTION 'nope'; END $$", [])
        assert await statements.fetch("SELECT 1 / %s::integer", [1]) == [(1,)]
    assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_statements_are_prepared_once(conn: psycopg.Connection[Any]) -> None:
    statements = Statements(conn)
    with anyio.fail_after(10):
        for i in range(3):
            assert await statements.fetch("SELECT %s::text || 'x'", [str(i)]) == [(f"{i}x",)]
        prepared = await statements.fetch(
            "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE %s", ["anybus%"]
        )
    assert ("anybus_0", "SELECT $1::text || 'x'") in prepared
    assert len(prepared) == 2  # that one, and the query that lists them


async def test_a_lost_connection_raises_an_operational_error(
    conn: psycopg.Connection[Any], postgres_dsn: str
) -> None:
    statements = Statements(conn)
    other = await connect(postgres_dsn)
    try:
        with anyio.fail_after(10):
            [(pid,)] = await statements.fetch("SELECT pg_backend_pid()", [])
            await Statements(other).fetch("SELECT pg_terminate_backend(%s)", [pid])
            with pytest.raises(psycopg.OperationalError):
                await statements.fetch("SELECT 1", [])
    finally:
        await anyio.to_thread.run_sync(other.close)
    assert conn.closed


async def test_the_event_loop_runs_while_a_statement_waits(
    conn: psycopg.Connection[Any],
) -> None:
    statements = Statements(conn)
    rows: list[tuple[Any, ...]] = []

    async def run() -> None:
        rows.extend(await statements.fetch("SELECT pg_sleep(%s::float8), 1", [0.5]))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            # Back here while the statement runs: it waits on the event loop, not in it.
            await anyio.wait_all_tasks_blocked()
            assert rows == []
    assert rows == [(b"", 1)]  # pg_sleep returns void, which psycopg loads as b""
