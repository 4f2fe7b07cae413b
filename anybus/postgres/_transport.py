"""PostgresTransport: a bus's messages kept in Postgres tables (durable, at-least-once).

Two connections a bus: a *writer* stores what this bus sends, in batches, one at a time
(so in order), and learns the ids its messages got; it ``LISTEN``s too (see :mod:`._turns`).
A *reader* takes what other buses stored, from a notification that carried it (see
:mod:`._notified`) or by reading what follows its position, passes this bus's own ids,
acknowledges what was handled (with a read, at most every :data:`ACK_INTERVAL`) and keeps
house. See :mod:`anybus.postgres._schema` for the tables, and :mod:`anybus.postgres._client`
for how psycopg is driven on asyncio and trio.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
import socket
from functools import partial
from typing import Any, final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    create_task_group,
    current_time,
    move_on_after,
    sleep,
)
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from .._checks import check_name
from .._exceptions import TransportError
from .._messages import BusMessage
from .._transport import Intake, TransportHost
from .._wire import WireCodec
from . import _options as option
from ._client import DatabaseError, PgConnection, check_dsn
from ._connections import Connections
from ._cursor import Cursor
from ._notified import Notified
from ._options import ACK_CHECK, ACK_INTERVAL, Statements
from ._outbox import Outbox, Outgoing
from ._rows import Rows
from ._schema import (
    CARRY_BYTES,
    FATAL_STATES,
    NAME_IN_USE,
    NOT_OWNER,
    check_schema_name,
    ensure_schema,
)
from ._upkeep import Upkeep

__all__ = ["PostgresTransport"]

logger = logging.getLogger("anybus.postgres")

_default_names = itertools.count(1)


@final
class PostgresTransport:
    """The transport of :class:`~anybus.postgres.PostgresBus` (see there for the options)."""

    def __init__(
        self,
        dsn: str,
        *,
        channel: str = "anybus",
        name: str | None = None,
        schema: str = "anybus",
        codec: WireCodec | None = None,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
        send_deadline: float = 10.0,
        dedupe: int = 10_000,
        read_batch: int = 100,
        read_bytes: int = 8 * 1024 * 1024,
        max_len: int = 100_000,
        lease: float = 10.0,
        retention: float = 86_400.0,
        housekeeping_interval: float = 30.0,
        poll_interval: float = 5.0,
        create_schema: bool = True,
        durability: str = "stored",
        outbox: int = 10_000,
        carry_messages: bool = True,
    ) -> None:
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a libpq connection string or URL, got {dsn!r}")
        check_dsn(dsn)
        self._channel = check_name("channel", channel)
        if name is not None:
            check_name("name", name)
        self._schema = check_schema_name(schema)
        # The default is unique to this instance, so it cannot resume after a restart.
        self._name = name or f"{socket.gethostname()}-{os.getpid()}-{next(_default_names)}"
        # The sender id (and lease holder) tells two runs of one name apart.
        self._instance = f"{self._name}/{secrets.token_hex(4)}"
        self._codec = option.wire_codec(codec)
        self._conns = Connections(
            dsn,
            owner=self._instance,
            connect_timeout=option.positive("connect_timeout", connect_timeout, 86_400),
            # The server takes it in milliseconds, as an int (at most about 24.8 days).
            statement_timeout=option.positive("statement_timeout", statement_timeout, 2_147_483),
        )
        self._where = self._conns.where
        deadline = option.positive("send_deadline", send_deadline)
        self._read_batch = option.count("read_batch", read_batch, 1)
        self._read_bytes = option.count("read_bytes", read_bytes, 1)
        self._max_len = option.count("max_len", max_len, 1)
        self._lease = option.positive("lease", lease, 86_400)
        self._retention = option.positive("retention", retention, 3_155_760_000)  # 100 years
        self._housekeeping = option.positive("housekeeping_interval", housekeeping_interval)
        self._poll = option.positive("poll_interval", poll_interval)
        self._create_schema = option.flag("create_schema", create_schema)
        # What this bus's own publishes notify: its reader passes those rows (they need no
        # delivery) and, stopping, acknowledges past them.
        self._own_wake = hashlib.md5(self._instance.encode()).hexdigest().encode()
        self._sql = Statements(self._schema)
        self._rows = Rows(
            codec=self._codec, instance=self._instance, channel=channel, dedupe=dedupe, owner=self
        )
        self._cursor = Cursor()
        carry = option.flag("carry_messages", carry_messages)
        self._notified = Notified(
            rows=self._rows, cursor=self._cursor, channel=channel, batch=read_batch, carried=carry
        )
        self._outbox = Outbox(
            publish=self._sql.publish,
            channel=channel,
            sender=self._instance,
            where=self._where,
            deadline=deadline,
            batch=read_batch,
            queued=option.durability(durability),
            capacity=option.count("outbox", outbox, 1),
            carry=CARRY_BYTES if carry else 0,
            stored=self._notified.stored,
        )
        self._upkeep = Upkeep(
            statement=self._sql.housekeep,
            parameters=[channel, f"{self._retention} s", self._max_len],
            outbox=self._outbox,
            where=self,
        )
        self._seq = 0
        # How many messages the outbox had stored when the reader's last read began: what
        # it stored since may lie unread after the position.
        self._published_read = 0
        self._acked_at = -ACK_INTERVAL  # when the reader last sent an acknowledgement
        self._host: TransportHost | None = None  # while serving
        self._serving: object = None  # the token of the serve() that set _host
        self._intake = Intake()
        self._relisten = False
        # For the writer and the reader's wait: a new connection listens, whoever opened it.
        self._write = self._conns.connector("write", self._listen)

    # --- identity and counters --------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The channel's name."""
        return self._channel

    @property
    def name(self) -> str:
        """This instance's consumer name."""
        return self._name

    @property
    def instance(self) -> str:
        """This bus's identity among the buses it talks to (its name and a run token)."""
        return self._instance

    def counters(self) -> dict[str, object]:
        """The transport's counters, for :class:`~anybus.postgres.PostgresStatistics`."""
        return {
            "connected": self._conns.connected,
            "outages": self._conns.outages,
            "published": self._outbox.published,
            "publish_failures": self._outbox.failures,
            "received": self._rows.received,
            "rejected": self._rows.rejections.counts,
            "gaps": self._rows.tracker.gaps,
            "missed": self._rows.tracker.missed,
            "duplicates": self._rows.tracker.duplicates,
            "replayed": self._rows.tracker.replayed,
            "position": self._cursor.position,
            "acknowledged": self._cursor.acknowledged,
        }

    # --- sending ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Return once what was sent so far is stored (see :meth:`PostgresBus.flush
        <anybus.postgres.PostgresBus.flush>`); cancelling the wait changes nothing."""
        await self._outbox.flush()

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then store it (see
        :meth:`Outbox.send <anybus.postgres._outbox.Outbox.send>` for what a failed or
        cancelled send did)."""
        self._seq += 1
        payload = self._codec.encode(message, sender=self._instance, seq=self._seq)
        host = self._host
        if host is not None:
            await host.deliver(message)
        # The outbox gives its own store number as it queues it: see _outbox.
        await self._outbox.send(Outgoing(payload))

    # --- the transport ----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop reading; return once the reader has ended. What it read and had not
        delivered is not acknowledged, and comes again next time.

        Cancelled while it waits for the reader, intake has stopped all the same (the
        reader's scope is cancelled first).
        """
        await self._intake.stop()

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Connect, make sure of the schema, take this name's lease, then read and write
        until cancelled; then acknowledge what the host handled, give the lease up (shielded,
        bounded) and close."""
        self._host = host
        self._serving = serving = object()
        try:
            await self._serve(host, task_status)
        finally:
            if self._serving is serving:
                self._host = None
            with CancelScope(shield=True) as scope:  # what was queued, within a deadline
                scope.deadline = current_time() + self._conns.answer_within
                await self._outbox.drain(self._write)
            self._outbox.close(f"{self!r} stopped before the message was stored")
            with CancelScope(shield=True) as scope:
                scope.deadline = current_time() + 2
                await self._release(host)
            with CancelScope(shield=True):  # however the release ended
                await self._conns.close()

    async def _serve(self, host: TransportHost, task_status: TaskStatus[None]) -> None:
        conns = self._conns
        write = await conns.open("write", patient=False)
        await ensure_schema(write, self._schema, create=self._create_schema)
        await self._listen(write)
        self._relisten = False
        read = await conns.open("read", patient=False)
        await self._attach(read, first_time=True)
        await self._upkeep.run(read)
        async with create_task_group() as task_group:
            self._intake.start(task_group, self._read_all, host, name="anybus postgres reader")
            open_write = partial(conns.get, "write")  # for the hand-over: see _outbox
            writer = partial(self._outbox.run, self._write, open_write)
            task_group.start_soon(writer, name="anybus postgres writer")
            task_status.started()

    async def _attach(self, conn: PgConnection, *, first_time: bool) -> None:
        """Take this name's lease; learn where to resume and what was lost while away."""
        try:
            rows = await conn.fetch(
                self._sql.attach, [self._channel, self._name, self._instance, f"{self._lease} s"]
            )
        except TransportError as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if sqlstate in (NAME_IN_USE, NOT_OWNER):
                raise TransportError(
                    f"cannot run {self!r}: {exc} — two running instances may not share a name; "
                    f"give this one another name, or stop the other"
                ) from exc
            raise
        position, first, last, created = rows[0]
        if not first_time:
            return
        self._cursor.start(position)
        if created:
            logger.debug("%r: new consumer, starting after message %d", self, last)
        elif first > position + 1:
            self._rows.tracker.report_missed(
                first - position - 1,
                f"on {self._channel!r}: they were trimmed (max_len) or deleted while this "
                f"instance was away",
            )
            self._cursor.start(first - 1)  # what is gone is neither read nor reported again

    # --- reading ----------------------------------------------------------------------------

    async def _read_all(self, host: TransportHost) -> None:
        reader = self._conns.connector("read", partial(self._attach, first_time=False))
        cursor = self._cursor
        next_housekeeping = current_time() + self._housekeeping
        failures = 0
        while True:
            ack = cursor.settle(host)
            if ack <= cursor.acknowledged or current_time() < self._acked_at + ACK_INTERVAL:
                ack = cursor.acknowledged  # nothing to acknowledge, or not yet
            try:
                conn = await reader()
                published = self._outbox.published
                self._notified.own_due = None  # this read reads what was notified so far
                rows = await self._read(
                    conn, ack if ack > cursor.acknowledged else None, cursor.position
                )
                if ack > cursor.acknowledged:
                    cursor.acknowledged_up_to(ack)
                    self._acked_at = current_time()
                self._published_read = published
                if current_time() >= next_housekeeping:
                    next_housekeeping = current_time() + self._housekeeping
                    await self._upkeep.run(conn)
            except TransportError as exc:
                if getattr(exc, "sqlstate", None) in FATAL_STATES:
                    raise
                failures += 1
                # A lost connection is logged where it is replaced; a refusal is logged here.
                refused = failures == 1 and isinstance(exc, DatabaseError)
                (logger.warning if refused else logger.debug)("%r: reading failed: %s", self, exc)
                await sleep(min(0.05 * failures, 1.0))
                continue
            failures = 0
            size = 0
            for entry_id, sender, body in rows:
                size += len(body)
                await self._rows.take(host, cursor, entry_id, sender, body)
            if len(rows) >= self._read_batch or size >= self._read_bytes:
                continue  # more is waiting
            await self._wait(host)

    async def _read(self, conn: PgConnection, ack: int | None, after: int) -> list[Any]:
        """Acknowledge up to ``ack`` (if not None), and read what follows ``after``."""
        params = [self._channel, self._name, self._instance, ack, after]
        return await conn.fetch(self._sql.read, [*params, self._read_batch, self._read_bytes])

    async def _listen(self, conn: PgConnection) -> None:
        await conn.fetch(self._sql.listen, [self._channel])
        self._relisten = True  # a new connection may have missed notifications

    async def _wait(self, host: TransportHost) -> None:
        """Wait for another bus's notification, for something to acknowledge (at most one
        acknowledgement per :data:`ACK_INTERVAL`), for rows of this bus's own to read past,
        or for the safety poll (which also keeps the lease)."""
        cursor = self._cursor
        until = current_time() + min(self._poll, self._lease / 3, self._housekeeping)
        while True:
            now = current_time()
            own_due = self._notified.own_due
            due = until if own_due is None else min(until, own_due)
            ack_at = max(now, self._acked_at + ACK_INTERVAL)
            if cursor.settle(host) > cursor.acknowledged:
                due = min(due, ack_at)  # handled: acknowledge when the interval allows
            elif cursor.pending:
                due = min(due, max(ack_at, now + ACK_CHECK))  # look again whether handled
            notified: tuple[list[bytes], int] | None = None
            try:
                conn = await self._write()  # a new one is set up whole: not bounded by the wait
                if self._relisten:
                    self._relisten = False
                    return  # read at once: notifications may have been missed
                with move_on_after(max(0.0, due - now)):
                    notified = await conn.wait_notifies(own=self._own_wake)
            except TransportError as exc:
                logger.debug("%r: listening failed: %s", self, exc)
                await sleep(0.05)
                return
            if notified is not None:
                if not await self._notified.handle(host, *notified):
                    return  # read what it did not carry
                await checkpoint()  # however many notifications keep coming
            now = current_time()
            if now >= until or self._notified.read_own(now):
                return
            if now >= self._acked_at + ACK_INTERVAL and cursor.settle(host) > cursor.acknowledged:
                return

    async def _release(self, host: TransportHost) -> None:
        """The last step of the ordered stop: acknowledge exactly what was handled, and give
        the lease up so that the next run of this name may start at once."""
        cursor = self._cursor
        self._notified.pass_own()
        ack = cursor.settle(host)
        if left := cursor.end():
            logger.info(
                "%r: %d message(s) not handled when the bus stopped: left unacknowledged, they "
                "come again next time",
                self,
                left,
            )
        conn = self._conns.get("read")
        if conn is None:
            return
        if ack == cursor.position and self._outbox.published > self._published_read:
            try:
                ack = await self._notified.past_own(partial(self._read, conn, None), ack)
            except TransportError as exc:
                logger.debug("%r: reading past its own messages failed: %s", self, exc)
        try:
            await conn.fetch(self._sql.ack, [self._channel, self._name, self._instance, ack, True])
        except TransportError as exc:
            logger.debug("%r: the last acknowledgement failed: %s", self, exc)
            return
        cursor.acknowledged_up_to(ack)

    def __str__(self) -> str:
        return f"{self._instance!r} on channel {self._channel!r} at {self._where}"

    def __repr__(self) -> str:
        return f"<PostgresTransport {self}>"
