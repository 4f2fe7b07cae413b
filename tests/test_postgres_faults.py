"""PostgresBus under faults, against private Postgres servers the tests start and stop.

The shared server is never stopped: every test here runs against a server of this module's own
(``initdb`` + ``pg_ctl`` on a free port). Senders in other processes run on the other backend.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from anyio import current_time, fail_after, to_thread, wait_all_tasks_blocked
from anyio.abc import Process, TaskStatus

from anybus import BusDataMessage, BusJobRequestMessage, BusMessage, TransportError, WireCodec
from anybus.postgres import PostgresBus
from anybus.testing import RecordingSubscriber

from .postgres_support import PostgresServer, private_server, unique_channel

pytestmark = pytest.mark.anyio

logger = logging.getLogger("anybus.tests")

TIMEOUT = 20

#: How many connections buses hold on the server (each names itself ``anybus-<role>-...``).
BUS_CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'anybus-%'"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    yield from private_server()


def other_backend(anyio_backend: str) -> str:
    return "trio" if anyio_backend == "asyncio" else "asyncio"


@asynccontextmanager
async def sender_process(
    backend: str, dsn: str, channel: str, count: int, pace: float = 0.0
) -> AsyncIterator[Process]:
    """``python -m tests.pg_sender`` on ``backend``; killed if still running at the end."""
    process = await anyio.open_process(
        [sys.executable, "-m", "tests.pg_sender", backend, dsn, channel, str(count), str(pace)]
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def sender_figures(process: Process) -> tuple[int, dict[str, Any]]:
    """Wait for the sender to finish; return how many it sent, and the statistics it
    printed."""
    assert process.stdout is not None
    output = b""
    async for chunk in process.stdout:
        output += chunk
    assert await process.wait() == 0, output
    word, sent, figures = output.decode().split(" ", 2)
    assert word == "sent", output
    result: dict[str, Any] = json.loads(figures)
    return int(sent), result


class Numbered:
    """A handler recording the numbers of the sender's messages, in the order handled, and
    setting an event once it has seen a given count."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._waiters: list[tuple[int, anyio.Event]] = []

    async def __call__(self, message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage) and message.source == "sender":
            self.seen.append(int(message.job_id[1:]))
            for count, event in self._waiters:
                if len(self.seen) >= count:
                    event.set()

    async def wait_for_count(self, count: int) -> None:
        if len(self.seen) >= count:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()


# --- 1. restarts while another process sends ----------------------------------------------

COUNT = 3000
RESTARTS = 3


async def test_three_restarts_while_another_process_sends_lose_nothing(
    server: PostgresServer, anyio_backend: str
) -> None:
    channel = unique_channel()
    handler = Numbered()
    started = current_time()
    async with PostgresBus(server.dsn, channel=channel, name="receiver") as receiver:
        await receiver.subscribe(handler, name="numbered")
        async with sender_process(
            other_backend(anyio_backend), server.dsn, channel, COUNT
        ) as process:
            with fail_after(90):
                for k in range(1, RESTARTS + 1):
                    await handler.wait_for_count(k * COUNT // (RESTARTS + 1))
                    logger.info("restart %d, the receiver has seen %d", k, len(handler.seen))
                    await to_thread.run_sync(server.restart, "immediate")
                sent, figures = await sender_figures(process)
                assert sent == COUNT
                await handler.wait_for_count(COUNT)
                await receiver.wait_idle()
        stats = receiver.transport_statistics()
    elapsed = current_time() - started
    lost = sorted(set(range(COUNT)) - set(handler.seen))
    duplicates = len(handler.seen) - len(set(handler.seen))
    logger.info(
        "restart test (%s receiver): %d messages, %d restarts, %d lost, %d duplicates handled, "
        "%.2f s; receiver: outages %d, duplicates dropped %d, rejected %s; sender: %s",
        anyio_backend,
        COUNT,
        RESTARTS,
        len(lost),
        duplicates,
        elapsed,
        stats.outages,
        stats.duplicates,
        stats.rejected,
        figures,
    )
    assert lost == []
    assert duplicates == 0
    assert handler.seen == list(range(COUNT))  # in order
    assert figures["publish_failures"] == 0
    assert figures["published"] == COUNT
    assert stats.outages == RESTARTS
    assert figures["outages"] == RESTARTS
    assert stats.missed == 0
    assert stats.rejected == {}


# --- helpers: the server's owner, talking SQL straight to it --------------------------------


class Owner:
    """A connection as the server's owner (superuser), on worker threads."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    async def __aenter__(self) -> Owner:
        self._conn = await to_thread.run_sync(
            partial(psycopg.connect, self._dsn, autocommit=True, application_name="owner")
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            await to_thread.run_sync(self._conn.close)

    async def fetch(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn
        assert conn is not None

        def work() -> list[tuple[Any, ...]]:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description is not None else []

        return await to_thread.run_sync(work)

    async def wait_until(self, query: str, params: Sequence[object], expected: object) -> None:
        """Ask the server until ``query``'s one value is ``expected`` (state on the server is
        asked for, not slept on)."""
        with fail_after(TIMEOUT):
            # The state is the server's: there is no event to wait on, only asking again.
            while (await self.fetch(query, params))[0][0] != expected:  # noqa: ASYNC110
                await anyio.sleep(0.01)


# --- 2. a stopped server: a clear TransportError, in time ---------------------------------


async def test_a_bus_started_against_a_stopped_server_says_so_in_time(
    server: PostgresServer,
) -> None:
    await to_thread.run_sync(server.stop, "fast")
    try:
        bus = PostgresBus(server.dsn, channel=unique_channel(), connect_timeout=0.5)
        started = current_time()
        with pytest.raises(TransportError) as raised:
            async with bus:
                pass  # pragma: no cover
        elapsed = current_time() - started
    finally:
        await to_thread.run_sync(server.start)
    logger.info("start against a stopped server: raised after %.3f s: %s", elapsed, raised.value)
    assert f"postgres at 127.0.0.1:{server.port}/postgres is unreachable after 0.5 s" in str(
        raised.value
    )
    assert "check that the server runs" in str(raised.value)
    assert 0.5 <= elapsed < 2.5


async def test_a_send_while_the_server_is_down_raises_after_its_deadline(
    server: PostgresServer,
) -> None:
    channel = unique_channel()
    peer_seen, local = RecordingSubscriber("peer"), RecordingSubscriber("local")
    async with (
        PostgresBus(server.dsn, channel=channel, name="peer") as peer,
        PostgresBus(server.dsn, channel=channel, name="sender", send_deadline=0.5) as sender,
    ):
        await peer.subscribe(peer_seen)
        await sender.subscribe(local)
        await sender.send(first := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await peer_seen.wait_for(lambda seen: first in seen)
        await to_thread.run_sync(server.stop, "fast")
        try:
            # The writer sends this one on its broken connection (then it may have been
            # stored), unless it knows the connection is lost already (the server told the
            # sessions that listen, and the writer's does): then it never leaves the outbox.
            started = current_time()
            with pytest.raises(TransportError) as sent_once:
                await sender.send(uncertain := BusDataMessage(source="t"))
            uncertain_after = current_time() - started
            # The writer now waits for the server; this one never leaves the outbox.
            started = current_time()
            with pytest.raises(TransportError) as never_sent:
                await sender.send(never_stored := BusDataMessage(source="t"))
            never_after = current_time() - started
        finally:
            await to_thread.run_sync(server.start)
        async with Owner(server.dsn) as owner:  # the writer is back: later sends go at once
            await owner.wait_until(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                "'anybus-write-sender/%'",
                [],
                1,
            )
        later = [BusDataMessage(source="t") for _ in range(5)]
        for message in later:
            await sender.send(message)
        # The last one closes the test: anything stored after the failed sends came before it.
        await sender.send(last := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await peer_seen.wait_for(lambda seen: last in seen)
            await sender.wait_idle()
        stats = sender.transport_statistics()
    logger.info(
        "sends while the server is down: %.3f s (%s), %.3f s (%s)",
        uncertain_after,
        sent_once.value,
        never_after,
        never_sent.value,
    )
    where = f"postgres at 127.0.0.1:{server.port}/postgres"
    never = f"{where} did not store the message within 0.5 s, and never will"
    ids = [m.id for m in peer_seen.messages]
    expected = [m.id for m in [*later, last]]
    if str(sent_once.value).startswith(never):
        assert ids == [first.id, *expected]
    else:
        assert str(sent_once.value).startswith(f"{where} did not confirm the message within 0.5 s")
        assert "so it may have been" in str(sent_once.value)
        assert ids in ([first.id, *expected], [first.id, uncertain.id, *expected])  # in order
    assert str(never_sent.value).startswith(never)
    assert 0.5 <= uncertain_after < 1.5
    assert 0.5 <= never_after < 1.5
    assert [m.id for m in local.messages] == [
        m.id for m in [first, uncertain, never_stored, *later, last]
    ]
    assert stats.publish_failures == 2


def server_processes(server: PostgresServer) -> list[int]:
    """The private server's postmaster and its children (their process ids)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


async def test_a_server_that_stops_answering_is_given_up_in_time(
    server: PostgresServer, anyio_backend: str
) -> None:
    bus = PostgresBus(
        server.dsn,
        channel=unique_channel(),
        name="s",
        statement_timeout=0.5,
        send_deadline=0.5,
        connect_timeout=0.5,
    )
    ended = anyio.Event()

    async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await bus.run(task_status=task_status)
        finally:
            ended.set()

    async with anyio.create_task_group() as task_group:
        await task_group.start(run)
        await bus.send(BusDataMessage(source="t"))
        frozen = server_processes(server)
        for pid in frozen:  # the server hangs: connections stay open, nothing answers
            os.kill(pid, signal.SIGSTOP)
        try:
            started = current_time()
            with pytest.raises(TransportError) as raised:
                await bus.send(BusDataMessage(source="t"))
            send_took = current_time() - started
            started = current_time()
            with fail_after(TIMEOUT):
                await bus.stop()
                await ended.wait()  # its transport has closed
            stop_took = current_time() - started
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    async with Owner(server.dsn) as owner:  # answering again, it has no connection of the bus
        await owner.wait_until(BUS_CONNECTIONS, [], 0)
    logger.info(
        "%s: a server that stopped answering: the send raised after %.3f s (%s); the bus "
        "stopped %.3f s later",
        anyio_backend,
        send_took,
        raised.value,
        stop_took,
    )
    assert "it was being stored when the deadline passed, so it may be" in str(raised.value)
    assert 0.5 <= send_took < 1.5
    # A statement in flight is waited for a second (CANCEL_GRACE), the final acknowledgement
    # for the two seconds the transport's cleanup has, and its statement a second more.
    assert stop_took < 1.0 + 2.0 + 1.0 + 0.5


# --- 3. hostile rows written straight into the tables -------------------------------------

SECRET = b"the channel's secret"


def signed(body: bytes, secret: bytes = SECRET) -> bytes:
    """``body`` in an envelope signed with key ``k1`` (see anybus/_wire.py for the layout)."""
    header = b"AB\x01\x04json\x02k1"
    mac = hmac.new(secret, header, hashlib.sha256)
    mac.update(body)
    return header + mac.digest() + body


def envelope_body(**changes: object) -> bytes:
    body: dict[str, object] = {
        "type": "BusDataMessage",
        "sender": "mallory",
        "seq": 1,
        "id": "m-1",
        "name": "BusDataMessage#1",
        "fields": {"source": "m", "target": None},
    }
    body.update(changes)
    return json.dumps(body).encode()


async def test_hostile_rows_are_counted_and_dropped_and_the_reader_goes_on(
    server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = unique_channel()
    codec = WireCodec(signing_keys={"k1": SECRET})
    legit = codec.encode(BusDataMessage(source="m"), sender="mallory", seq=1)
    hostile = {
        "malformed": [
            b"\x00\xffnot an envelope",
            b"",
            legit[:20],  # cut in the signature
            signed(b"{not json"),
            signed(envelope_body(seq="one", id=2)),  # wrong-typed envelope values
            signed(json.dumps([1, 2, 3]).encode()),  # not an envelope body at all
        ],
        "forged": [
            legit[:-5],  # cut in the body: the signature no longer fits
            WireCodec(signing_keys={"k1": b"a guess"}).encode(
                BusDataMessage(source="m"), sender="mallory", seq=1
            ),
        ],
        "unsigned": [WireCodec().encode(BusDataMessage(source="m"), sender="mallory", seq=1)],
        "version": [b"AB\x07" + legit[3:]],
        "unknown-type": [signed(envelope_body(type="NoSuchMessage"))],
        "invalid-fields": [signed(envelope_body(fields={"source": 5, "target": None}))],
        "oversized": [signed(b"x" * (3 * 1024 * 1024))],
    }
    received = RecordingSubscriber("r")
    async with (
        PostgresBus(server.dsn, channel=channel, name="receiver", codec=codec) as receiver,
        PostgresBus(server.dsn, channel=channel, name="sender", codec=codec) as sender,
        Owner(server.dsn) as owner,
    ):
        await receiver.subscribe(received)
        await sender.send(before := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: before in seen)
        bodies = [body for group in hostile.values() for body in group]
        for seq, body in enumerate(bodies):
            await owner.fetch(
                "INSERT INTO anybus.messages (channel, id, sender, seq, body) SELECT %s, "
                "max(id) + 1, 'mallory', %s, %s FROM anybus.messages WHERE channel = %s",
                [channel, seq, body, channel],
            )
        # And one far ahead of every id given out so far.
        await owner.fetch(
            "INSERT INTO anybus.messages (channel, id, sender, seq, body) SELECT %s, "
            "max(id) + 1000000, 'mallory', -1, 'far ahead' FROM anybus.messages "
            "WHERE channel = %s",
            [channel, channel],
        )
        await sender.send(after := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: after in seen)
        await sender.send(again := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: again in seen)
            await receiver.wait_idle()
        stats = receiver.transport_statistics()
        assert receiver.running
    logger.info("hostile rows: rejected %s, missed %d", stats.rejected, stats.missed)
    expected = {reason: len(group) for reason, group in hostile.items()}
    expected["malformed"] += 1  # the row far ahead
    assert stats.rejected == expected
    assert [m.id for m in received.messages] == [before.id, after.id, again.id]
    assert stats.missed == 0  # a jump to a row that is no message is no loss
    for reason in expected:
        assert f"as {reason} from {channel!r}" in caplog.text


# --- 4. cancellation and cleanup ----------------------------------------------------------


def busy_threads() -> list[str]:
    """Threads running psycopg or anybus code right now (not idle in a thread pool)."""
    busy = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        modules = {f.f_globals.get("__name__", "") for f, _ in traceback.walk_stack(frame)}
        if any(name.startswith(("psycopg", "anybus")) for name in modules):
            busy.append(f"{ident}: {sorted(modules)}")
    return busy


async def test_a_waiting_reader_ends_at_once_and_nothing_is_left_behind(
    server: PostgresServer, anyio_backend: str
) -> None:
    baseline = threading.active_count()
    async with Owner(server.dsn) as owner:
        await owner.wait_until(BUS_CONNECTIONS, [], 0)  # what earlier tests closed has gone
        bus = PostgresBus(server.dsn, channel=unique_channel(), name="r")
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        figures: dict[str, float] = {}
        async with anyio.create_task_group() as task_group:
            await task_group.start(bus.run)
            assert (await owner.fetch(BUS_CONNECTIONS))[0][0] == 2  # write (it listens), read
            await bus.send(BusDataMessage(source="t"))
            with fail_after(TIMEOUT):
                await bus.wait_idle()
            await wait_all_tasks_blocked()  # the reader waits for a notification
            started = current_time()
            await bus.transport.stop_intake()
            figures["intake"] = current_time() - started
            started = current_time()
            await bus.stop()
        figures["stop"] = current_time() - started  # its transport closed, too
        # Cancelled instead of stopped.
        async with anyio.create_task_group() as task_group:
            await task_group.start(bus.run)
            await wait_all_tasks_blocked()
            started = current_time()
            task_group.cancel_scope.cancel()
        figures["cancel"] = current_time() - started
        # A backend leaves pg_stat_activity once it has read the client's goodbye.
        await owner.wait_until(BUS_CONNECTIONS, [], 0)
    logger.info(
        "%s: a waiting reader ended %.1f ms after stop_intake(); stop() took %.1f ms, a "
        "cancellation %.1f ms; threads: %d before, %d after (idle in the pool)",
        anyio_backend,
        figures["intake"] * 1000,
        figures["stop"] * 1000,
        figures["cancel"] * 1000,
        baseline,
        threading.active_count(),
    )
    assert figures["intake"] < 0.5  # about a millisecond (see the log); bounded generously
    assert figures["stop"] < 0.5
    assert figures["cancel"] < 0.5
    # anyio's and trio's thread pools keep idle workers for a while (anyio's until the event
    # loop ends, trio's for 10 s): what must not be left is a thread still doing the bus's work.
    assert busy_threads() == []
    assert threading.active_count() <= baseline + 4


async def test_a_cancelled_send_was_never_stored_or_is_said_to_maybe_be(
    server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = unique_channel()
    peer_seen = RecordingSubscriber("peer")
    local = RecordingSubscriber("local")
    caplog.set_level(logging.INFO, "anybus.postgres")
    async with (
        PostgresBus(server.dsn, channel=channel, name="peer") as peer,
        PostgresBus(server.dsn, channel=channel, name="sender") as sender,
        Owner(server.dsn) as owner,
        Owner(server.dsn) as locker,
    ):
        await peer.subscribe(peer_seen)
        await sender.subscribe(local)
        # Hold the channel's publishing lock: the writer's next statement waits on the server.
        await locker.fetch("BEGIN")
        await locker.fetch(
            "SELECT pg_advisory_xact_lock(hashtextextended('anybus publish anybus ' || %s, 0))",
            [channel],
        )
        in_flight, waiting = anyio.CancelScope(), anyio.CancelScope()

        async def send_in(scope: anyio.CancelScope, message: BusMessage) -> None:
            with scope:
                await sender.send(message)
            assert scope.cancelled_caught

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(send_in, in_flight, sent := BusDataMessage(source="t"))
            await owner.wait_until(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                "'anybus-write-sender/%' AND wait_event_type = 'Lock'",
                [],
                1,
            )
            task_group.start_soon(send_in, waiting, held := BusDataMessage(source="t"))
            with fail_after(TIMEOUT):
                # Delivered locally first: then it waits in the outbox behind the other one.
                await local.wait_for(lambda seen: held in seen)
            waiting.cancel()
            in_flight.cancel()
        await locker.fetch("COMMIT")
        await sender.send(after := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await peer_seen.wait_for(lambda seen: after in seen)
    ids = [m.id for m in peer_seen.messages]
    assert held.id not in ids  # cancelled before it was sent: never stored
    # Cancelled while the server ran its statement: stored after all, as the log says it may.
    assert ids == [sent.id, after.id]
    assert "cancelled while its message was being stored: it may have been stored" in (caplog.text)


# --- 6. a receiver restarted under its name while another process sends -------------------

RECEIVER_RESTARTS = 20


async def test_a_receiver_restarted_20_times_under_its_name_loses_nothing(
    server: PostgresServer, anyio_backend: str
) -> None:
    channel = unique_channel()
    handler = Numbered()
    arrived = anyio.Event()

    async def record(message: BusMessage) -> None:
        await handler(message)
        arrived.set()

    async def receiver() -> PostgresBus:
        bus = PostgresBus(server.dsn, channel=channel, name="receiver", exit_drain=5)
        # Subscribed before it runs: what it reads at once has a subscriber.
        await bus.subscribe(record, name="record")
        return bus

    # The receiver's consumer exists before the first message is sent: a new name starts now.
    async with await receiver():
        pass
    started = current_time()
    # The sender goes on (about one message a millisecond) until told to stop.
    async with sender_process(
        other_backend(anyio_backend), server.dsn, channel, 1_000_000, pace=0.001
    ) as process:
        with fail_after(60):
            for _ in range(RECEIVER_RESTARTS):
                async with await receiver():
                    # Leave as soon as something new came, mid-stream.
                    arrived = anyio.Event()
                    await arrived.wait()
            restarted = current_time() - started
            async with await receiver() as bus:
                await bus.send(BusDataMessage(source="stop"))
                sent, figures = await sender_figures(process)
                await handler.wait_for_count(sent)
                await bus.wait_idle()
    lost = sorted(set(range(sent)) - set(handler.seen))
    duplicates = len(handler.seen) - len(set(handler.seen))
    logger.info(
        "receiver restarts (%s): %d messages, %d restarts (in %.2f s), %d lost, %d duplicates, "
        "%.2f s; sender: %s",
        anyio_backend,
        sent,
        RECEIVER_RESTARTS,
        restarted,
        len(lost),
        duplicates,
        current_time() - started,
        figures,
    )
    assert lost == []
    assert duplicates == 0  # each stop acknowledged exactly what was handled
    assert handler.seen == list(range(sent))
