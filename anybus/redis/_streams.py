"""RedisStreamBus: the bus carried over a Redis stream (durable, at-least-once)."""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
from collections import deque
from typing import final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    CapacityLimiter,
    Lock,
    create_task_group,
    current_time,
    fail_after,
    move_on_after,
    sleep,
)
from anyio.abc import TaskStatus

from .._exceptions import TransportError
from .._messages import BusMessage
from .._transport import DeliveryMark, Intake, TransportHost
from .._codec import Codec
from ._base import RecentPayloads, RedisTransport, instance_id
from ._client import MAX_IN_FLIGHT, NoGroupError, RedisClient, RedisSettings

__all__ = ["StreamTransport"]

logger = logging.getLogger("anybus.redis")

#: Longest pause between two tries of a send or a read while Redis is away, in seconds.
MAX_RETRY_DELAY = 1.0


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
    ) -> None:
        # The default is unique to this instance (so two buses of one process do not share a
        # group, and so each get every message), and so it cannot resume after a restart.
        group = name or f"{socket.gethostname()}-{os.getpid()}-{next(_default_names)}"
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
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len!r}")
        if send_deadline < 0:
            raise ValueError(f"send_deadline cannot be negative, got {send_deadline!r}")
        if read_batch < 1:
            raise ValueError(f"read_batch must be at least 1, got {read_batch!r}")
        self._stream = stream
        self._group = group
        self._max_len = max_len
        self._send_deadline = send_deadline
        self._read_batch = read_batch
        self._writer: RedisClient | None = None
        self._limiter = CapacityLimiter(MAX_IN_FLIGHT)
        self._send_lock = Lock()
        # Payloads this bus stored, so that it drops them without decoding when it reads them.
        self._own = RecentPayloads(10_000)
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

        Returns once Redis has stored it. Cancel-safe in the sense that matters: a cancelled
        send may or may not have been stored, and is never reported as stored.

        Raises:
            SerializationError: if the message cannot be encoded (nothing was delivered).
            TransportError: if Redis did not store it within ``send_deadline`` seconds; the
                local subscribers have it, the other buses do not.
        """
        # Encoded once up front so that a message that cannot be encoded is refused before
        # anything is delivered; encoded again, numbered, in turn below.
        self._codec.encode(message, sender=self._instance, seq=0)
        await self._deliver_local(message)
        # One send at a time per bus: entries reach the stream in the order of their sequence
        # numbers, so receivers never mistake a reordering for a loss.
        async with self._send_lock:
            payload = self._encode(message)
            await self._store(payload)
        self._own.add(payload)

    async def _store(self, payload: bytes) -> None:
        writer = self._writer
        if writer is None:
            self._publish_failures += 1
            raise TransportError(
                f"{self!r} is not connected (run it first): delivered to local subscribers only"
            )
        delay = 0.05
        last_error: TransportError | None = None
        with move_on_after(self._send_deadline):
            while True:
                try:
                    async with self._limiter:
                        await writer.add(self._stream, payload, max_len=self._max_len)
                except TransportError as exc:
                    last_error = exc
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                self._published += 1
                return
        self._publish_failures += 1
        raise TransportError(
            f"redis did not store the message within {self._send_deadline} s; delivered to "
            f"local subscribers only"
        ) from last_error

    # --- the transport ----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop reading the stream; return once the reader has ended.

        A read in flight is abandoned: the entries it was given stay pending for this
        consumer and come again when an instance of this name reads next. Cancelled while it
        waits for the reader, intake has stopped all the same (the reader's scope is
        cancelled first).
        """
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
        name = self._instance.replace("/", "-")
        writer = await RedisClient.create(self._settings, name=f"anybus-write-{name}")
        # A blocking XREADGROUP holds its connection: the reader has a client of its own.
        reader = await RedisClient.create(self._settings, name=f"anybus-read-{name}")
        # Entries this run read and did not acknowledge yet, in read order, each with the
        # host's mark taken just after its message was delivered (None: nothing to wait for).
        unacked: deque[tuple[str, DeliveryMark | None]] = deque()
        try:
            await self._health.wait_for_server(writer, self._connect_timeout)
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
                    unacked,
                    name="anybus redis stream reader",
                )
                task_group.start_soon(self._health.watch, writer, name="anybus redis health")
                self._writer = writer
                task_status.started()
        finally:
            if self._writer is writer:
                self._writer = None
            with CancelScope(shield=True) as scope:
                scope.deadline = current_time() + 2
                # The last step of the ordered stop: acknowledge exactly what was handled
                # (with the writer: the reader's connection may be held by a cancelled read).
                await self._settle(writer, host, unacked, final=True)
                await writer.close()
                # Also ends a read the cancellation left blocked on the server.
                await reader.close()

    async def _settle(
        self,
        client: RedisClient,
        host: TransportHost,
        unacked: deque[tuple[str, DeliveryMark | None]],
        *,
        final: bool,
    ) -> None:
        """Acknowledge the entries read so far whose messages every subscriber handled, in
        read order up to the first that is still being handled. An entry whose message may
        never be handled in this run (``host.lost()``) is left unacknowledged, to come again
        next time."""
        done: list[str] = []
        while unacked:
            entry_id, mark = unacked[0]
            if mark is not None and not host.handled(mark):
                if not host.lost(mark):
                    break
            else:
                done.append(entry_id)
            unacked.popleft()
        if final:
            left = len(unacked)
            if left:
                logger.info(
                    "%r: %d entr%s not handled when the bus stopped: left unacknowledged, "
                    "they come again next time",
                    self,
                    left,
                    "y" if left == 1 else "ies",
                )
            unacked.clear()
        if not done:
            return
        try:
            await client.ack(self._stream, self._group, done)
        except TransportError as exc:
            # Not acknowledged: they will be given again, and dropped as repeats.
            logger.debug("%r: acknowledging failed: %s", self, exc)

    async def _ensure_group(self, client: RedisClient) -> bool:
        timeout = math.inf if self._connect_timeout is None else self._connect_timeout
        with fail_after(timeout):
            while True:
                try:
                    return await client.create_group(self._stream, self._group, "$")
                except TransportError:
                    await sleep(0.05)

    async def _read_all(
        self,
        host: TransportHost,
        client: RedisClient,
        unacked: deque[tuple[str, DeliveryMark | None]],
    ) -> None:
        pending = True  # first, what was given to this consumer before and never acknowledged
        after = "0"  # in a pending pass: the last pending entry read
        delay = 0.05
        while True:
            await self._settle(client, host, unacked, final=False)
            try:
                entries = await client.read_group(
                    self._stream,
                    self._group,
                    self._group,
                    pending=pending,
                    count=self._read_batch,
                    block=min(1.0, max(0.05, self._settings.request_timeout / 2)),
                    after=after,
                )
            except NoGroupError:
                await self._recreate_group(client)
                pending = False
                continue
            except TransportError as exc:
                logger.debug("%r: reading the stream failed: %s", self, exc)
                # A read whose answer was lost still gave its entries to this consumer: read
                # what is pending first when the connection is back.
                pending, after = True, "0"
                await sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = 0.05
            if pending:
                if not entries:
                    pending = False
                    continue
                after = entries[-1][0]
                # Entries this run read before (delivered, not yet handled) keep their place.
                known = {entry_id for entry_id, _ in unacked}
                entries = [entry for entry in entries if entry[0] not in known]
            for entry_id, payload in entries:
                mark: DeliveryMark | None = None
                if payload is not None and not self._own.discard_if_present(payload):
                    envelope = self._decode(payload, self._stream)
                    if (
                        envelope is not None
                        and envelope.sender != self._instance
                        and self._is_new(envelope)
                    ):
                        await self._deliver_received(envelope.message)
                        mark = host.mark()
                unacked.append((entry_id, mark))

    async def _recreate_group(self, client: RedisClient) -> None:
        while True:
            try:
                await client.create_group(self._stream, self._group, "0")
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
