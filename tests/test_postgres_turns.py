"""``anybus.postgres._turns``: one connection that runs statements while another task waits for
its notifications (a bus's writer, which listens), on both backends, against the shared
Postgres server: neither task waits for what the other read, a cancelled or closed wait hands
the socket over, and two tasks sharing a role replace its broken connection once."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import anyio
import anyio.lowlevel
import psycopg
import pytest

from anybus import TransportError
from anybus.postgres._client import PgConnection
from anybus.postgres._connections import Connections
from anybus.postgres._turns import MAX_HANDED

from .postgres_support import unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 10


async def open_connection(dsn: str) -> PgConnection:
    return await PgConnection.open(
        dsn, application_name="anybus-test-turns", connect_timeout=10, statement_timeout=10
    )


def hold_until_arrived(conn: PgConnection, data: bytes) -> None:
    """Hold the event loop (no task runs) until ``data`` has arrived on the connection's
    socket, unread: what the server sent before it has arrived, too."""
    deadline = time.monotonic() + TIMEOUT
    with socket.socket(fileno=os.dup(conn._conn.pgconn.socket)) as sock:
        while time.monotonic() < deadline:
            select.select([sock], [], [], 0.05)
            with contextlib.suppress(BlockingIOError):
                if data in sock.recv(1 << 16, socket.MSG_PEEK):
                    return
    raise TimeoutError(f"{data!r} did not arrive")


@pytest.fixture
async def listening(postgres_dsn: str) -> AsyncIterator[tuple[PgConnection, str]]:
    """A connection that listens on a channel of its own, and the channel."""
    conn = await open_connection(postgres_dsn)
    channel = unique_channel()
    try:
        await conn.fetch(f'LISTEN "{channel}"', [])
        yield conn, channel
    finally:
        await conn.close()


async def test_statements_run_while_another_task_waits_for_the_notifications_they_send(
    listening: tuple[PgConnection, str],
) -> None:
    """Each statement's own notification comes back with its answer: whichever task reads
    it, the waiter gets every one, and no statement waits for an answer the waiter read."""
    conn, channel = listening
    count = 300
    received: list[bytes] = []
    all_received = anyio.Event()

    async def wait() -> None:
        while len(received) < count:
            others, mine = await conn.wait_notifies()
            assert mine == 0
            received.extend(others)
        all_received.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()  # the waiter waits for the socket
            for number in range(count):
                await conn.fetch("SELECT pg_notify(%s, %s)", [channel, str(number)])
                if number % 7 == 0:
                    await anyio.wait_all_tasks_blocked()  # the waiter waits again
            await all_received.wait()
    assert received == [str(number).encode() for number in range(count)]


async def test_a_notification_another_session_sends_during_a_statement_reaches_the_waiter(
    listening: tuple[PgConnection, str], postgres_dsn: str
) -> None:
    conn, channel = listening
    other = await open_connection(postgres_dsn)
    got: list[bytes] = []
    try:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:

                async def wait() -> None:
                    others, _ = await conn.wait_notifies()
                    got.extend(others)

                task_group.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                async with anyio.create_task_group() as statement:
                    statement.start_soon(conn.fetch, "SELECT pg_sleep(0.3)", [])
                    await anyio.wait_all_tasks_blocked()  # the statement runs
                    await other.fetch("SELECT pg_notify(%s, 'from the other')", [channel])
    finally:
        await other.close()
    assert got == [b"from the other"]


async def test_a_notification_read_with_a_statements_answer_wakes_the_waiter(
    listening: tuple[PgConnection, str], postgres_dsn: str
) -> None:
    """Another session's notification arrives right after a statement's answer; the waiter
    reads both in one go, and libpq keeps the notification behind the answer's end, for the
    statement's task to take: it must hand it over, for nothing more comes on the socket to
    wake the waiter."""
    conn, channel = listening
    other = await anyio.to_thread.run_sync(
        partial(psycopg.connect, postgres_dsn, autocommit=True, connect_timeout=10)
    )
    got: list[bytes] = []
    try:
        with anyio.fail_after(TIMEOUT):
            await conn.fetch("SELECT 1", [])  # start() sends prepared statements only
            async with anyio.create_task_group() as task_group:

                async def wait() -> None:
                    others, _ = await conn.wait_notifies()
                    got.extend(others)

                task_group.start_soon(wait)
                await anyio.wait_all_tasks_blocked()  # the waiter waits for the socket
                assert conn.start("SELECT 1", [])
                # The event loop is held (no task runs) until the answer's end, and then
                # the notification, have arrived: the waiter, woken first, reads both.
                hold_until_arrived(conn, b"Z\0\0\0\x05I")
                other.execute("SELECT pg_notify(%s, 'after the answer')", [channel])
                hold_until_arrived(conn, f"{channel}\0after the answer\0".encode())
                assert await conn.collect() == [(1,)]
    finally:
        await anyio.to_thread.run_sync(other.close)
    assert got == [b"after the answer"]


async def test_a_task_that_begins_to_wait_for_notifications_leaves_an_answer_to_its_task(
    listening: tuple[PgConnection, str],
) -> None:
    """The statement's task waits for the socket, its answer has arrived, and another task
    begins to wait for notifications before the event loop looks at the socket: reading the
    answer from under the statement's task would leave that task waiting for good."""
    conn, channel = listening
    # The answer comes 0.2 s after the statement is sent, long after the statement's task
    # waits for it, and the test looks.
    query = "SELECT pg_notify(%s, %s), 1, pg_sleep(%s::float8)"
    rows: list[tuple[object, ...]] = []
    with anyio.fail_after(TIMEOUT):
        await conn.fetch(query, [channel, "a", 0.0])  # prepared: one round trip from here on
        assert await conn.wait_notifies() == ([b"a"], 0)
        async with anyio.create_task_group() as task_group:

            async def run() -> None:
                rows.extend(await conn.fetch(query, [channel, "b", 0.2]))

            task_group.start_soon(run)
            await anyio.wait_all_tasks_blocked()  # the statement's task waits for the socket
            assert rows == []
            hold_until_arrived(conn, f"{channel}\0b\0".encode())  # the answer's end, too
            notified = await conn.wait_notifies()  # no scheduling point before it reads
    assert notified == ([b"b"], 0)
    assert rows == [(b"", 1, b"")]


async def test_a_statement_goes_on_when_the_waiter_it_relied_on_is_cancelled(
    listening: tuple[PgConnection, str],
) -> None:
    conn, _ = listening
    rows = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            with anyio.CancelScope() as waiting:

                async def run() -> None:
                    await anyio.wait_all_tasks_blocked()  # the waiter waits for the socket
                    async with anyio.create_task_group() as inner:
                        inner.start_soon(fetch)
                        await anyio.wait_all_tasks_blocked()  # this one waits for the waiter
                        waiting.cancel()

                async def fetch() -> None:
                    rows.extend(await conn.fetch("SELECT pg_sleep(0.2), 7", []))

                task_group.start_soon(run)
                await conn.wait_notifies()
    assert waiting.cancelled_caught
    assert rows == [(b"", 7)]


async def test_closing_the_connection_ends_a_wait_for_its_notifications(
    postgres_dsn: str,
) -> None:
    conn = await open_connection(postgres_dsn)
    await conn.fetch(f'LISTEN "{unique_channel()}"', [])
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:

            async def close() -> None:
                await anyio.wait_all_tasks_blocked()
                await conn.close()

            task_group.start_soon(close)
            with pytest.raises(TransportError, match="the connection was closed"):
                await conn.wait_notifies()
    assert conn.broken


async def test_tasks_sharing_a_role_replace_its_broken_connection_once(
    postgres_dsn: str,
) -> None:
    conns = Connections(postgres_dsn, owner="turns", connect_timeout=10, statement_timeout=10)
    set_up: list[PgConnection] = []

    async def setup(conn: PgConnection) -> None:
        await anyio.lowlevel.checkpoint()  # the other task asks meanwhile
        set_up.append(conn)

    connection = conns.connector("write", setup)
    got: list[PgConnection] = []
    try:
        first = await conns.open("write", patient=False)
        first.broken = True

        async def take() -> None:
            got.append(await connection())

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(take)
                task_group.start_soon(take)
        assert len(set_up) == 1
        assert got == [set_up[0], set_up[0]]
        assert first._conn.closed
    finally:
        await conns.close()


async def test_notifications_kept_while_no_task_waits_for_them_are_bounded(
    listening: tuple[PgConnection, str],
) -> None:
    """A bus that sends while its reader is busy delivering keeps what the notifications
    carried up to a bound; beyond it drops them, and its reader hears of it as a plain
    wake-up (an empty payload: read the table)."""
    conn, channel = listening
    sent = MAX_HANDED + 50
    with anyio.fail_after(TIMEOUT):
        for number in range(sent):
            await conn.fetch("SELECT pg_notify(%s, %s)", [channel, str(number)])
        others, mine = await conn.wait_notifies()
    kept = [str(number).encode() for number in range(MAX_HANDED + 1, sent)]
    assert (others, mine) == ([b"", *kept], 0)


async def test_a_connection_whose_setup_was_cancelled_is_not_given_out(
    postgres_dsn: str,
) -> None:
    """The reader's wait for notifications is bounded: cancelled while a new connection
    was being set up (its ``LISTEN``), the next call sets up another, not that one."""
    conns = Connections(postgres_dsn, owner="turns", connect_timeout=10, statement_timeout=10)
    set_up: list[PgConnection] = []
    hold = True
    in_setup = anyio.Event()

    async def setup(conn: PgConnection) -> None:
        if hold:
            in_setup.set()
            await anyio.sleep_forever()
        set_up.append(conn)

    connection = conns.connector("write", setup)

    async def ask() -> None:
        await connection()

    try:
        with anyio.fail_after(TIMEOUT):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(ask)
                    await in_setup.wait()
                    scope.cancel()
            assert conns.get("write") is None
            hold = False
            conn = await connection()
        assert set_up == [conn]
        assert conns.outages == 0  # a cancelled setup is no outage
    finally:
        await conns.close()


class StallingProxy:
    """A TCP relay to the shared server that can stop reading what the client sends, and
    end its side toward the client (as a server going away does)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.stalled = threading.Event()
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
                server = socket.create_connection(self._target)
                self._clients.append(client)
                threading.Thread(target=self._relay, args=(client, server, True)).start()
                threading.Thread(target=self._relay, args=(server, client, False)).start()

    def _relay(self, source: socket.socket, sink: socket.socket, stalls: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                if stalls and self.stalled.is_set():
                    return  # reads no more: the client's sends fill the buffers
                data = source.recv(1 << 16)
                if not data:
                    return
                sink.sendall(data)

    def end_toward_clients(self) -> None:
        for client in self._clients:
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        for client in self._clients:
            client.close()


async def test_a_connection_dropped_while_a_statement_waits_to_send_leaves_no_wait_behind(
    postgres_dsn: str,
) -> None:
    """The waiter finds the connection lost (libpq closes its socket) while a statement's
    task waits to send a large batch: the descriptor's number, reused at once by the next
    connection, must not still look waited on (anyio would refuse that connection's waits),
    and the statement ends."""
    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    proxy = StallingProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port") or 5432)))
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, host="127.0.0.1", port=proxy.port)
    conn = await PgConnection.open(
        dsn, application_name="anybus-test-turns", connect_timeout=10, statement_timeout=1
    )
    failures: list[str] = []

    async def expect_loss(call: Callable[[], Awaitable[object]]) -> None:
        with pytest.raises(TransportError) as raised:
            await call()
        failures.append(str(raised.value))

    try:
        await conn.fetch(f'LISTEN "{unique_channel()}"', [])
        await conn.fetch("SELECT length(%s)", [b"x"])  # prepared: only the big one waits
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(expect_loss, conn.wait_notifies)
                await anyio.wait_all_tasks_blocked()  # the waiter waits for the socket
                proxy.stalled.set()
                big: list[object] = [b"x" * 30_000_000]  # more than the socket buffers hold
                task_group.start_soon(expect_loss, partial(conn.fetch, "SELECT length(%s)", big))
                await anyio.wait_all_tasks_blocked()  # the statement's task waits to send
                proxy.end_toward_clients()
                while not failures:  # the waiter reads the end, and libpq closes the socket
                    await anyio.wait_all_tasks_blocked()
                    await anyio.lowlevel.checkpoint()
                new = await open_connection(postgres_dsn)  # as a bus's reconnect would
                try:
                    assert await new.fetch("SELECT 1", []) == [(1,)]
                finally:
                    await new.close()
        assert len(failures) == 2
    finally:
        await conn.close()
        proxy.close()


async def test_a_connection_being_set_up_is_given_to_no_other_task(postgres_dsn: str) -> None:
    """The writer replaces the connection; the reader, asking meanwhile, must not take it
    before its ``LISTEN`` ran (it would wait for notifications that do not come)."""
    conns = Connections(postgres_dsn, owner="turns", connect_timeout=10, statement_timeout=10)
    in_setup, go_on = anyio.Event(), anyio.Event()
    done: list[str] = []

    async def setup(conn: PgConnection) -> None:
        in_setup.set()
        await go_on.wait()
        done.append("set up")

    connection = conns.connector("write", setup)

    async def ask(who: str) -> None:
        await connection()
        done.append(who)

    try:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ask, "writer")
                await in_setup.wait()
                assert conns.get("write") is None  # not for the hand-over either
                task_group.start_soon(ask, "reader")
                await anyio.wait_all_tasks_blocked()
                assert done == []
                go_on.set()
        assert done[0] == "set up"
        assert sorted(done[1:]) == ["reader", "writer"]
    finally:
        await conns.close()
