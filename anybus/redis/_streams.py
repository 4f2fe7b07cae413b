"""RedisStreamBus: the bus carried over a Redis stream (durable, at-least-once)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import socket
from functools import partial
from typing import Literal, final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    create_task_group,
    current_time,
    fail_after,
    sleep,
    sleep_forever,
)
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from .._checks import check_count, check_name, check_optional_name, check_seconds
from .._codec import Codec
from .._exceptions import TransportError
from .._messages import BusMessage
from .._transport import DeliveryMark, Intake, TransportHost
from ._base import RecentPayloads, RedisStatistics, RedisTransport, client_name, instance_id
from ._client import NoGroupError, RedisClient, RedisSettings
from ._fence import Fence, same_slot_key, skipped_key
from ._lease import Lease
from ._outgoing import Outgoing
from ._stream_acks import StreamAcks
from ._stream_reads import RETRY_DELAY, StreamReads, create_group, oversized
from ._stream_writer import StreamWriter

__all__ = ["Durability", "StreamTransport"]

#: When ``send()`` returns: once Redis has stored the message, or once it is queued for the
#: writer (which stores it, in order, as soon as it can).
Durability = Literal["stored", "queued"]

logger = logging.getLogger("anybus.redis")


#: Numbers the default names of the instances of this process.
_default_names = itertools.count(1)


@final
class StreamTransport(RedisTransport):
    """The transport of :class:`RedisStreamBus`: a Redis stream (see there)."""

    def __init__(
        self,
        url: str | RedisSettings = "redis://127.0.0.1:6379",
        *,
        stream: str = "anybus",
        name: str | None = None,
        codec: Codec | None = None,
        connect_timeout: float | None = 5.0,
        request_timeout: float = 1.0,
        health_interval: float = 0.5,
        max_len: int = 100_000,
        send_deadline: float = 10.0,
        dedupe: int = 10_000,
        read_batch: int = 100,
        durability: Durability = "stored",
        outbox: int = 10_000,
        lease: float = 10.0,
    ) -> None:
        # The default is unique to this instance (so two buses of one process do not share a
        # group, and so each get every message), and so it cannot resume after a restart.
        given = check_optional_name("name", name)
        group = given or f"{socket.gethostname()}-{os.getpid()}-{next(_default_names)}"
        super().__init__(
            url,
            # The sender id carries an incarnation token, so a restarted instance's sequence
            # numbers start afresh without looking like repeats to its peers.
            instance=instance_id(group, incarnation=True),
            codec=codec,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            health_interval=health_interval,
            dedupe=dedupe,
        )
        check_count("max_len", max_len, 1)
        check_seconds("send_deadline", send_deadline)
        check_count("read_batch", read_batch, 1)
        if durability not in ("stored", "queued"):
            raise ValueError(f"durability must be 'stored' or 'queued', got {durability!r}")
        check_count("outbox", outbox, 1)
        self._stream = check_name("stream", stream)
        self._group = group
        self._max_len = max_len
        self._send_deadline = send_deadline
        self._read_batch = read_batch
        self._durability: Durability = durability
        self._writer: RedisClient | None = None
        # Payloads this bus stored, so that it drops them without decoding when it reads them.
        self._own = RecentPayloads(10_000)
        self._caught_up = False  # the reader runs, has read to the end, and waits for more
        self._skipped = skipped_key(stream, group, cluster=self._settings.cluster)
        self._lease = Lease(
            key=same_slot_key(stream, f":anybus:lease:{group}", cluster=self._settings.cluster),
            name=group,
            instance=self._instance,
            seconds=lease,
            what=repr(self),
        )
        fence = Fence(
            stream=stream,
            sender=self._instance,
            group=group,
            skipped=self._skipped,
            lease=self._lease,
            caught_up=lambda: self._caught_up and self._lease.held(),
            own=self._own,
            max_len=max_len,
            cluster=self._settings.cluster,
        )
        self._outbox = StreamWriter(
            codec=self._codec,
            sender=self._instance,
            fence=fence,
            deadline=send_deadline,
            queued=durability == "queued",
            outbox=outbox,
            own=self._own,
            where=self._settings.address,
            connected=lambda: self._health.connected,
            wait_connected=partial(self._health.wait_until, True),
        )
        self._intake = Intake()

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._stream

    @property
    def group(self) -> str:
        """This instance's consumer group (and consumer) name."""
        return self._group

    # --- sending ----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then store it in the stream.

        Returns once Redis has stored it (``durability="stored"``), or once it is queued for
        the writer (``"queued"``). Sends are stored in order, concurrent ones together in one
        round trip. Cancelled, a send whose message was not sent to Redis yet is never
        stored; one that was may have been (then in order), and a line is logged saying so.

        Raises:
            SerializationError: if the message cannot be encoded (nothing was delivered).
            TransportError: if the bus is not running, or Redis did not store the message
                (queued: found no room in the outbox) within ``send_deadline`` seconds; the
                local subscribers have it, and the error says whether the other buses may:
                a send that raised is never stored later, out of order.
        """
        outbox = self._outbox
        seq = outbox.number()
        payload = self._codec.encode(message, sender=self._instance, seq=seq)
        await self._deliver_local(message)
        await outbox.send(Outgoing(message, payload, seq))
        if self._durability == "queued" and not self._health.connected:
            self._at_risk += 1

    async def flush(self) -> None:
        """Return once every message sent so far is stored (see :meth:`RedisStreamBus.flush
        <anybus.redis.RedisStreamBus.flush>`); cancelling the wait changes nothing."""
        await self._outbox.flush()

    def transport_statistics(self) -> RedisStatistics:
        """A snapshot of the transport's counters."""
        outbox = self._outbox
        return dataclasses.replace(
            super().transport_statistics(),
            published=outbox.published,
            publish_failures=outbox.failures,
            failed_but_stored=outbox.raised_but_stored,
        )

    # --- the transport ----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop reading the stream; return once the reader has ended.

        A read in flight is abandoned: the entries it was given stay pending for this
        consumer and come again when an instance of this name reads next. Cancelled while it
        waits for the reader, intake has stopped all the same (the reader's scope is
        cancelled first).
        """
        self._caught_up = False  # what it stores from now on is read by the next to come
        await self._intake.stop()

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Connect, make sure of the consumer group, then read until cancelled; then
        acknowledge what the host handled (shielded, bounded) and close."""
        self._host = host
        self._serving = serving = object()
        try:
            await self._serve(host, task_status)
        finally:
            if self._serving is serving:  # a later serve() may have begun as this one closed
                self._host = None

    async def _serve(self, host: TransportHost, task_status: TaskStatus[None]) -> None:
        settings, instance = self._settings, self._instance
        writer = await RedisClient.create(settings, name=client_name("write", instance))
        # A blocking XREADGROUP holds its connection: the reader has a client of its own.
        reader = await RedisClient.create(settings, name=client_name("read", instance))
        acks = StreamAcks(self._stream, self._group, repr(self))
        leased = False
        writing = CancelScope(shield=True)
        try:
            await self._health.wait_for_server(writer, self._connect_timeout)
            await self._lease.take(writer)
            leased = True
            created = await self._ensure_group(reader)
            logger.debug(
                "%r: consumer group %r %s", self, self._group, "created" if created else "resumed"
            )
            async with create_task_group() as task_group:
                self._intake.start(
                    task_group,
                    self._read_all,
                    host,
                    reader,
                    acks,
                    name="anybus redis stream reader",
                )
                # On the writer's connection: the reader's is held by its blocking reads.
                task_group.start_soon(acks.run, writer, host, name="anybus redis stream acks")
                task_group.start_soon(self._health.watch, writer, name="anybus redis health")
                task_group.start_soon(self._lease.keep, writer, name="anybus redis lease")
                self._outbox.start()
                task_group.start_soon(
                    self._write, writing, writer, name="anybus redis stream writer"
                )
                self._writer = writer
                task_status.started()
                try:
                    await sleep_forever()
                finally:
                    # What was sent before the stop is still stored, within a deadline.
                    self._outbox.finish()
                    writing.deadline = current_time() + self._settings.request_timeout + 1
        finally:
            if self._writer is writer:
                self._writer = None
            self._outbox.close(f"{self!r} stopped before the message was stored")
            with CancelScope(shield=True) as scope:
                scope.deadline = current_time() + 2
                # The last step of the ordered stop: acknowledge exactly what was handled
                # (with the writer: the reader's connection may be held by a cancelled read).
                await acks.finish(writer, host)
                if leased:
                    await self._lease.release(writer)
                await writer.close()
                # Also ends a read the cancellation left blocked on the server.
                await reader.close()

    async def _write(self, scope: CancelScope, client: RedisClient) -> None:
        with scope:
            await self._outbox.run(client)

    async def _ensure_group(self, client: RedisClient) -> bool:
        timeout = math.inf if self._connect_timeout is None else self._connect_timeout
        with fail_after(timeout):
            while True:
                try:
                    return await create_group(
                        client, self._stream, self._group, "$", skipped=self._skipped
                    )
                except TransportError:
                    await sleep(0.05)

    async def _read_all(
        self,
        host: TransportHost,
        client: RedisClient,
        acks: StreamAcks,
    ) -> None:
        reads = StreamReads(
            client,
            self._stream,
            self._group,
            skipped=self._skipped,
            count=self._read_batch,
            max_size=self._codec.max_size,
            max_len=self._max_len,
            where=repr(self),
        )
        pending = True  # first, what was given to this consumer before and never acknowledged
        after = "0"  # in a pending pass: the last pending entry read
        waiting = False  # the last read found nothing new: wait for more
        block = min(1.0, max(0.05, self._settings.request_timeout / 2))
        delay = 0.05
        try:
            while True:
                await self._lease.wait_held()  # while the name may be another's, read nothing
                try:
                    if pending:
                        batch = await reads.pending(after)
                    elif waiting:
                        batch = await reads.wait(block)
                    else:
                        batch = await reads.new()  # and what was trimmed before it was read
                except NoGroupError:
                    await self._recreate_group(client)
                    pending = waiting = False
                    continue
                except TransportError as exc:
                    logger.debug("%r: reading the stream failed: %s", self, exc)
                    # A read whose answer was lost still gave its entries to this consumer: read
                    # what is pending first when the connection is back.
                    pending, after, waiting = True, "0", False
                    reads.forget()
                    await sleep(delay)
                    delay = min(delay * 2, RETRY_DELAY)
                    continue
                delay = 0.05
                entries, lost = batch.entries, batch.lost
                if pending:
                    if not entries:
                        pending = False
                        continue
                    after = entries[-1][0]
                    # Entries this run read before (delivered, not yet handled) keep their place.
                    known = acks.known()
                    entries = [entry for entry in entries if entry[0] not in known]
                    # Given to this consumer, unacknowledged, and trimmed since: lost.
                    lost = sum(payload is None for _, payload in entries)
                else:
                    waiting = not entries or batch.caught_up
                # Read to the end (what it delivers now included): its bus's stores may move
                # its group past their own entries, which it would read and drop.
                self._caught_up = waiting and not pending
                if lost:
                    self._count_trimmed(lost)
                for entry_id, payload in entries:
                    mark: DeliveryMark | None = None
                    if isinstance(payload, int):  # over the size limit: left in Redis, unread
                        self._rejections.record(
                            oversized(payload, self._codec.max_size), origin=self._stream
                        )
                    elif payload is not None and not self._own.discard_if_present(payload):
                        envelope = self._decode(payload, self._stream)
                        if (
                            envelope is not None
                            and envelope.sender != self._instance
                            and self._is_new(envelope, redelivered=pending)
                        ):
                            await self._deliver_received(envelope.message)
                            mark = host.mark()
                    acks.read(entry_id, mark)
                if entries and waiting:
                    # The workers just woken start their handlers before the next read is sent
                    # (which costs as much of this thread as a handler that answers at once).
                    await checkpoint()
        finally:
            self._caught_up = False  # no skipping past anything once the reader is gone

    async def _recreate_group(self, client: RedisClient) -> None:
        while True:
            try:
                await create_group(client, self._stream, self._group, "0", skipped=self._skipped)
            except TransportError:
                await sleep(0.05)
                continue
            break
        self._groups_recreated += 1
        logger.warning(
            "%r: redis lost the stream %r or its consumer group (a restart without "
            "persistence?): recreated it; what was lost shows up as gaps",
            self,
            self._stream,
        )

    def _where(self) -> str:
        return f"stream {self._stream!r} on {self._settings.address}"
