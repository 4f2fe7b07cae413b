"""PostgresTransport: a bus's messages kept in Postgres tables (durable, at-least-once).

Three connections a bus: a *writer* stores what this bus sends, in batches, one batch at a
time (so in order); a *listener* only ``LISTEN``s, and wakes the reader when a message was
stored; a *reader* fetches what was stored after its position, acknowledges what was handled
(its position, with the next read) and does the channel's housekeeping. See
:mod:`anybus.postgres._schema` for the tables, and :mod:`anybus.postgres._client` for how
psycopg is driven on asyncio and trio.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    create_task_group,
    current_time,
    move_on_after,
    sleep,
)
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from .._exceptions import MessageRejected, TransportError
from .._messages import BusMessage
from .._sequence import SequenceTracker
from .._transport import DeliveryMark, TransportHost
from .._wire import RejectionCounter, WireCodec
from ._client import PgConnection, describe
from ._outbox import Outbox, Outgoing
from ._schema import (
    LEASE_LOST,
    NAME_IN_USE,
    NOT_OWNER,
    SCHEMA_VERSION,
    check_schema_name,
    schema_sql,
)

__all__ = ["PostgresTransport"]

logger = logging.getLogger("anybus.postgres")

#: Longest pause between two tries while the server is away, in seconds.
MAX_RETRY_DELAY = 1.0
#: How often a reader with messages in flight looks whether it can acknowledge them.
ACK_CHECK = 0.05

_default_names = itertools.count(1)


def _positive(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _count(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return value


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
    ) -> None:
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a libpq connection string or URL, got {dsn!r}")
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"channel must be a non-empty string, got {channel!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        self._dsn = dsn
        self._where = describe(dsn)
        self._channel = channel
        self._schema = check_schema_name(schema)
        # The default is unique to this instance, so it cannot resume after a restart.
        self._name = name or f"{socket.gethostname()}-{os.getpid()}-{next(_default_names)}"
        # The sender id (and lease holder) tells two runs of one name apart.
        self._instance = f"{self._name}/{secrets.token_hex(4)}"
        self._codec = codec if codec is not None else WireCodec()
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._statement_timeout = _positive("statement_timeout", statement_timeout)
        if not isinstance(send_deadline, int | float) or send_deadline < 0:
            raise ValueError(f"send_deadline cannot be negative, got {send_deadline!r}")
        self._read_batch = _count("read_batch", read_batch, 1)
        self._read_bytes = _count("read_bytes", read_bytes, 1)
        self._max_len = _count("max_len", max_len, 1)
        self._lease = _positive("lease", lease)
        self._retention = _positive("retention", retention)
        self._housekeeping = _positive("housekeeping_interval", housekeeping_interval)
        self._poll = _positive("poll_interval", poll_interval)
        self._create_schema = bool(create_schema)
        self._notify = f"{self._schema}_{hashlib.md5(channel.encode()).hexdigest()}"  # noqa: S324
        s = self._schema
        self._q_read = (
            f"SELECT id, sender, body FROM {s}.read("
            f"%s, %s, %s, %s::bigint, %s::bigint, %s::integer, %s::bigint)"
        )
        self._q_ack = f"SELECT {s}.ack(%s, %s, %s, %s::bigint, %s)"
        self._q_attach = f"SELECT * FROM {s}.attach(%s, %s, %s, %s::interval)"
        self._q_housekeep = f"SELECT * FROM {s}.housekeep(%s, %s::interval, %s::bigint)"
        self._outbox = Outbox(
            publish=f"SELECT {s}.publish(%s, %s, %s::bigint[], %s::bytea[])",
            channel=channel,
            sender=self._instance,
            deadline=float(send_deadline),
            batch=read_batch,
        )
        self._rejections = RejectionCounter(logger=logger)
        self._tracker = SequenceTracker(dedupe=dedupe, logger=logger, owner=self, count_gaps=False)
        self._seq = 0
        self._received = 0
        self._connected = False
        self._outages = 0
        self._position = self._acknowledged = 0
        # Set when a message of this run will never be handled: the position before it,
        # beyond which this run acknowledges nothing (so that it comes again next time).
        self._hold: int | None = None
        self._host: TransportHost | None = None  # while serving
        self._serving: object = None  # the token of the serve() that set _host
        self._intake: CancelScope | None = None
        self._intake_ended: Event | None = None
        self._relisten = False

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

    def _set_connected(self, connected: bool, why: object = None) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            logger.info("%r: connected", self)
        else:
            self._outages += 1
            logger.warning("%r: lost the server: %s", self, why)

    def counters(self) -> dict[str, object]:
        """The transport's counters, for :class:`~anybus.postgres.PostgresStatistics`."""
        return {
            "connected": self._connected,
            "outages": self._outages,
            "published": self._outbox.published,
            "publish_failures": self._outbox.failures,
            "received": self._received,
            "rejected": self._rejections.counts,
            "gaps": self._tracker.gaps,
            "missed": self._tracker.missed,
            "duplicates": self._tracker.duplicates,
            "position": self._position,
            "acknowledged": self._acknowledged,
        }

    # --- sending ----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then store it (see
        :meth:`Outbox.send <anybus.postgres._outbox.Outbox.send>` for what a failed or
        cancelled send did)."""
        self._seq += 1
        payload = self._codec.encode(message, sender=self._instance, seq=self._seq)
        host = self._host
        if host is not None:
            await host.deliver(message)
        await self._outbox.send(Outgoing(self._seq, payload))

    # --- the transport ----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop reading; return once the reader has ended. What it read and had not
        delivered is not acknowledged, and comes again next time."""
        scope, ended = self._intake, self._intake_ended
        if scope is not None and ended is not None:
            scope.cancel(reason="anybus: the bus stops its intake")
            await ended.wait()
        await checkpoint()

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Connect, make sure of the schema, take this name's lease, then read and write
        until cancelled; then acknowledge what the host handled, give the lease up (shielded,
        bounded) and close."""
        self._host = host
        self._serving = serving = object()
        conns: dict[str, PgConnection] = {}
        unacked: deque[tuple[int, DeliveryMark | None]] = deque()
        try:
            await self._serve(host, conns, unacked, task_status)
        finally:
            if self._serving is serving:
                self._host = None
            self._outbox.close(f"{self!r} stopped before the message was stored")
            with CancelScope(shield=True) as scope:
                scope.deadline = current_time() + 2
                await self._release(host, conns, unacked)
                for conn in conns.values():
                    await conn.close()

    async def _open(self, role: str, *, patient: bool) -> PgConnection:
        """A new connection for ``role``; retrying while the server is away (for
        ``connect_timeout`` seconds when not ``patient``)."""
        delay, last = 0.05, None
        with move_on_after(math.inf if patient else self._connect_timeout):
            while True:
                try:
                    conn = await PgConnection.open(
                        self._dsn,
                        application_name=f"anybus-{role}-{self._instance}",
                        connect_timeout=self._connect_timeout,
                        statement_timeout=self._statement_timeout,
                        # Acknowledgements may be lost in a crash (they come again, and are
                        # dropped as repeats); what is sent never is.
                        durable=role == "write",
                    )
                except TransportError as exc:
                    self._set_connected(False, exc)
                    last = exc
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                self._set_connected(True)
                return conn
        raise TransportError(
            f"postgres at {self._where} is unreachable after {self._connect_timeout} s: check "
            f"that the server runs and the dsn is right ({last})"
        ) from last

    async def _serve(
        self,
        host: TransportHost,
        conns: dict[str, PgConnection],
        unacked: deque[tuple[int, DeliveryMark | None]],
        task_status: TaskStatus[None],
    ) -> None:
        conns["write"] = await self._open("write", patient=False)
        await self._ensure_schema(conns["write"])
        conns["listen"] = await self._open("listen", patient=False)
        await conns["listen"].listen(self._notify)
        self._relisten = False
        conns["read"] = await self._open("read", patient=False)
        await self._attach(conns["read"], first_time=True)
        async with create_task_group() as task_group:
            self._intake = intake = CancelScope()
            self._intake_ended = Event()
            task_group.start_soon(self._read, intake, host, conns, unacked, name="anybus pg reader")
            task_group.start_soon(
                self._outbox.run, self._connector(conns, "write"), name="anybus pg writer"
            )
            task_status.started()

    def _connector(
        self,
        conns: dict[str, PgConnection],
        role: str,
        setup: Callable[[PgConnection], Awaitable[None]] | None = None,
    ) -> Callable[[bool], Awaitable[PgConnection]]:
        async def connection(renew: bool) -> PgConnection:
            """``role``'s connection: a new one (patiently) when it broke or ``renew``,
            set up by ``setup`` before it is used."""
            conn = conns.get(role)
            if conn is not None and not conn.broken and not renew:
                return conn
            if conn is not None:
                self._set_connected(False, "the connection was lost")
                await conn.close()
                del conns[role]
            while True:
                conn = await self._open(role, patient=True)
                try:
                    if setup is not None:
                        await setup(conn)
                except TransportError as exc:
                    if getattr(exc, "sqlstate", None) in (NAME_IN_USE, NOT_OWNER, LEASE_LOST):
                        await conn.close()
                        raise
                    logger.debug("%r: setting up a %s connection failed: %s", self, role, exc)
                    await conn.close()
                    await sleep(0.05)
                    continue
                conns[role] = conn
                return conn

        return connection

    async def _ensure_schema(self, conn: PgConnection) -> None:
        s = self._schema
        rows = await conn.fetch("SELECT to_regprocedure(%s) IS NOT NULL", [f"{s}.schema_version()"])
        if not rows[0][0]:
            if not self._create_schema:
                raise TransportError(
                    f"the anybus schema {s!r} is missing from {self._where}: apply it with "
                    f"`anybus postgres schema --schema {s} | psql ...` (or pass "
                    f"create_schema=True)"
                )
            try:
                await conn.execute_script(schema_sql(s))
            except TransportError as exc:
                raise TransportError(
                    f"the anybus schema {s!r} is missing from {self._where} and this role may "
                    f"not create it ({exc}): have it applied by a role that may, with "
                    f"`anybus postgres schema --schema {s} | psql ...`"
                ) from exc
            logger.info("%r: created the schema %r", self, s)
        version = (await conn.fetch(f"SELECT {s}.schema_version()", []))[0][0]
        if version != SCHEMA_VERSION:
            raise TransportError(
                f"the anybus schema {s!r} on {self._where} is version {version}, this anybus "
                f"needs {SCHEMA_VERSION}: apply `anybus postgres schema --schema {s}`"
            )

    async def _attach(self, conn: PgConnection, *, first_time: bool) -> None:
        """Take this name's lease; learn where to resume and what was lost while away."""
        try:
            rows = await conn.fetch(
                self._q_attach, [self._channel, self._name, self._instance, f"{self._lease} s"]
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
        self._position = self._acknowledged = position
        if created:
            logger.debug("%r: new consumer, starting after message %d", self, last)
        elif first > position + 1:
            self._tracker.report_missed(
                first - position - 1,
                f"on {self._channel!r}: they were trimmed (max_len) or deleted while this "
                f"instance was away",
            )

    # --- reading ----------------------------------------------------------------------------

    async def _read(
        self,
        scope: CancelScope,
        host: TransportHost,
        conns: dict[str, PgConnection],
        unacked: deque[tuple[int, DeliveryMark | None]],
    ) -> None:
        try:
            with scope:
                await self._read_all(host, conns, unacked)
        finally:
            ended = self._intake_ended
            if self._intake is scope:
                self._intake = None
            if ended is not None:
                ended.set()

    async def _read_all(
        self,
        host: TransportHost,
        conns: dict[str, PgConnection],
        unacked: deque[tuple[int, DeliveryMark | None]],
    ) -> None:
        async def reattach(conn: PgConnection) -> None:
            await self._attach(conn, first_time=False)

        reader = self._connector(conns, "read", reattach)
        listener = self._connector(conns, "listen", self._listen)
        self._hold = None
        next_housekeeping = current_time()
        while True:
            ack = self._settle(host, unacked)
            try:
                conn = await reader(False)
                rows = await conn.fetch(
                    self._q_read,
                    [
                        self._channel,
                        self._name,
                        self._instance,
                        ack if ack > self._acknowledged else None,
                        self._position,
                        self._read_batch,
                        self._read_bytes,
                    ],
                )
                self._acknowledged = max(self._acknowledged, ack)
                if current_time() >= next_housekeeping:
                    next_housekeeping = current_time() + self._housekeeping
                    await self._housekeep(conn)
            except TransportError as exc:
                if getattr(exc, "sqlstate", None) in (LEASE_LOST, NOT_OWNER):
                    raise
                logger.debug("%r: reading failed: %s", self, exc)
                await sleep(0.05)
                continue
            size = 0
            for entry_id, sender, body in rows:
                size += len(body)
                await self._take(host, entry_id, sender, body, unacked)
            if len(rows) >= self._read_batch or size >= self._read_bytes:
                continue  # more is waiting
            await self._wait(host, listener, unacked)

    async def _listen(self, conn: PgConnection) -> None:
        await conn.listen(self._notify)
        self._relisten = True  # a new connection may have missed notifications

    async def _take(
        self,
        host: TransportHost,
        entry_id: int,
        sender: str,
        body: bytes,
        unacked: deque[tuple[int, DeliveryMark | None]],
    ) -> None:
        if entry_id > self._position + 1:
            self._tracker.report_missed(
                entry_id - self._position - 1,
                f"on {self._channel!r}: this reader fell more than max_len behind, and they "
                f"were deleted before it read them",
            )
        mark: DeliveryMark | None = None
        if sender != self._instance:
            try:
                envelope = self._codec.decode(bytes(body))
            except MessageRejected as exc:
                self._rejections.record(exc, origin=f"{self._channel!r} id {entry_id}")
            else:
                self._received += 1
                if envelope.sender != self._instance and self._tracker.is_new(envelope):
                    await host.deliver(envelope.message)
                    mark = host.mark()
        # Only now: a delivery cancelled (intake stopped) leaves the position before it.
        self._position = entry_id
        unacked.append((entry_id, mark))

    async def _wait(
        self,
        host: TransportHost,
        listener: Callable[[bool], Awaitable[PgConnection]],
        unacked: deque[tuple[int, DeliveryMark | None]],
    ) -> None:
        """Wait for a notification, for something to acknowledge, or for the safety poll
        (which also keeps the lease)."""
        until = current_time() + min(self._poll, self._lease / 3, self._housekeeping)
        while True:
            step = ACK_CHECK if unacked else until - current_time()
            with move_on_after(max(0.0, step)):
                try:
                    conn = await listener(False)
                    if self._relisten:
                        self._relisten = False
                        return  # read at once: notifications may have been missed
                    await conn.wait_notifies()
                    return
                except TransportError as exc:
                    logger.debug("%r: listening failed: %s", self, exc)
                    self._set_connected(False, exc)
                    await sleep(0.05)
                    return
            if current_time() >= until:
                return
            if unacked and self._settle_would_move(host, unacked):
                return

    def _settle_would_move(
        self, host: TransportHost, unacked: deque[tuple[int, DeliveryMark | None]]
    ) -> bool:
        mark = unacked[0][1]
        return mark is None or host.handled(mark) or host.lost(mark)

    def _settle(self, host: TransportHost, unacked: deque[tuple[int, DeliveryMark | None]]) -> int:
        """The position up to which every message read was handled (or was not for us).

        A message that will never be handled in this run holds the position before it, so
        that it comes again next time."""
        settled = self._acknowledged
        while unacked:
            entry_id, mark = unacked[0]
            if mark is not None and not host.handled(mark):
                if not host.lost(mark):
                    break
                if self._hold is None:
                    self._hold = entry_id - 1
            unacked.popleft()
            settled = entry_id
        else:
            settled = self._position
        return settled if self._hold is None else min(settled, self._hold)

    async def _housekeep(self, conn: PgConnection) -> None:
        rows = await conn.fetch(
            self._q_housekeep, [self._channel, f"{self._retention} s", self._max_len]
        )
        deleted, expired = rows[0]
        if deleted or expired:
            logger.debug(
                "%r: housekeeping deleted %d message(s) and %d idle consumer(s)",
                self,
                deleted,
                expired,
            )

    async def _release(
        self,
        host: TransportHost,
        conns: dict[str, PgConnection],
        unacked: deque[tuple[int, DeliveryMark | None]],
    ) -> None:
        """The last step of the ordered stop: acknowledge exactly what was handled, and give
        the lease up so that the next run of this name may start at once."""
        ack = self._settle(host, unacked)
        left = len(unacked)
        unacked.clear()
        if left:
            logger.info(
                "%r: %d message(s) not handled when the bus stopped: left unacknowledged, they "
                "come again next time",
                self,
                left,
            )
        conn = conns.get("read")
        if conn is None or conn.broken:
            return
        try:
            await conn.fetch(
                self._q_ack, [self._channel, self._name, self._instance, ack, True]
            )
        except TransportError as exc:
            logger.debug("%r: the last acknowledgement failed: %s", self, exc)
            return
        self._acknowledged = max(self._acknowledged, ack)

    def __str__(self) -> str:
        return f"{self._instance!r} on channel {self._channel!r} at {self._where}"

    def __repr__(self) -> str:
        return f"<PostgresTransport {self}>"
