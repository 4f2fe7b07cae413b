"""RedisBus: the bus carried over a Redis pub/sub channel (at-most-once, low latency)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from functools import partial
from typing import final

from anyio import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    CancelScope,
    ClosedResourceError,
    EndOfStream,
    Event,
    WouldBlock,
    create_memory_object_stream,
    create_task_group,
    current_time,
    fail_after,
    move_on_after,
    sleep,
)
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exceptions import TransportError
from .._messages import BusMessage, BusSystemMessage
from .._transport import TransportHost
from .._wire import WireCodec
from ._base import RecentPayloads, RedisTransport, instance_id
from ._client import RedisClient, RedisSettings

__all__ = ["PubSubTransport"]

logger = logging.getLogger("anybus.redis")


#: Most messages the writer publishes in one pipelined round trip.
WRITE_BATCH = 256
#: The reader yields to the scheduler after this many messages in a row.
READ_BATCH = 128
#: Failed publishes are logged at most once per this many seconds (and all counted).
FAILURE_LOG_INTERVAL = 10.0

#: The target of the probes a bus publishes to itself, to prove its subscription is in
#: place. Messages with this target are never delivered to subscribers.
PROBE_TARGET = "anybus:probe"


@final
class PubSubTransport(RedisTransport):
    """The transport of :class:`RedisBus`: a Redis pub/sub channel (see there)."""

    def __init__(
        self,
        url: str | RedisSettings = "redis://127.0.0.1:6379",
        *,
        channel: str = "anybus",
        name: str | None = None,
        codec: WireCodec | None = None,
        connect_timeout: float | None = 5.0,
        request_timeout: float = 1.0,
        inbound_buffer: int = 100_000,
        outbox: int = 10_000,
        health_interval: float = 0.5,
        dedupe: int = 0,
    ) -> None:
        super().__init__(
            url,
            instance=instance_id(name, incarnation=True),
            codec=codec,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            health_interval=health_interval,
            dedupe=dedupe,
        )
        if inbound_buffer < 1:
            raise ValueError(f"inbound_buffer must be at least 1, got {inbound_buffer!r}")
        if outbox < 1:
            raise ValueError(f"outbox must be at least 1, got {outbox!r}")
        self._channel = channel
        self._inbound_buffer = inbound_buffer
        self._outbox_size = outbox
        self._outbox: MemoryObjectSendStream[bytes] | None = None
        # Payloads this bus published, so that their echoes are dropped without decoding.
        self._own = RecentPayloads(outbox * 2)
        self._last_failure_log = -math.inf
        self._probe_heard: Event | None = None
        self._intake: CancelScope | None = None  # the reader's, while it runs
        self._intake_ended: Event | None = None  # set when that reader has ended

    @property
    def channel(self) -> str:
        """The pub/sub channel."""
        return self._channel

    # --- sending ----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then queue it for publishing.

        Waits only when the outbox (or a bounded inbox) is full. A send cancelled while it
        waits for room in the outbox has gone nowhere; one cancelled later is on its way to
        Redis but may not have reached the local subscribers.

        Raises:
            SerializationError: if the message cannot be encoded (nothing was delivered).
            TransportError: if the bus is not connected, or an outage is known; the local
                subscribers have the message, the other buses do not.
        """
        outbox = self._outbox
        if outbox is None or not self._health.connected:
            # Numbered all the same: the receivers see the gap it leaves and report it.
            self._encode(message)
            await self._deliver_local(message)
            self._publish_failures += 1
            state = "is not connected (run it first)" if outbox is None else "has lost redis"
            raise TransportError(f"{self!r} {state}: delivered to local subscribers only")
        payload = self._encode(message)
        # Queued before the local delivery (which may wait for room): the outbox is FIFO, so
        # payloads go out in the order their sequence numbers were given.
        try:
            try:
                outbox.send_nowait(payload)
            except WouldBlock:
                await outbox.send(payload)
        except (BrokenResourceError, ClosedResourceError):
            # The bus stopped while this send waited for room in the outbox.
            await self._deliver_local(message)
            self._publish_failures += 1
            raise TransportError(
                f"{self!r} stopped before it could publish: delivered to local subscribers only"
            ) from None
        self._own.add(payload)
        await self._deliver_local(message)

    async def _write(
        self, publisher: RedisClient, outbox: MemoryObjectReceiveStream[bytes]
    ) -> None:
        """Publish what queues up in the outbox, a pipelined batch at a time."""
        async for first in outbox:
            batch = [first]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(outbox.receive_nowait())
                except WouldBlock:
                    break
            await self._publish_batch(publisher, batch)

    async def _publish_batch(self, publisher: RedisClient, batch: list[bytes]) -> None:
        receivers: list[int | None] = [None] * len(batch)
        error = "the bus stopped while they were being published"
        # A batch taken out of the outbox is published even if the bus stops meanwhile: a
        # send() that returned must not vanish in silence. The shield has a deadline.
        with CancelScope(shield=True) as scope:
            scope.deadline = current_time() + self._settings.request_timeout + 1
            try:
                # One batch in flight at a time (the writer awaits each): no limiter needed.
                receivers = await publisher.publish_many(self._channel, batch)
            except TransportError as exc:
                error = str(exc)
            else:
                error = "redis refused it"
        failed = receivers.count(None)
        self._published += len(batch) - failed
        if failed:
            self._publish_failures += failed
            now = time.monotonic()
            if now - self._last_failure_log >= FAILURE_LOG_INTERVAL:
                self._last_failure_log = now
                logger.warning(
                    "%r: %d message(s) not published (%d so far): %s; they reached local "
                    "subscribers only",
                    self,
                    failed,
                    self._publish_failures,
                    error,
                )
        if 0 in receivers and not self._settings.cluster:  # a cluster counts per node
            # Our own subscription should have heard it: it is being re-established.
            self._unheard += receivers.count(0)
            logger.warning(
                "%r: redis reports no subscriber on %r (resubscribing?): %d message(s) "
                "reached local subscribers only",
                self,
                self._channel,
                receivers.count(0),
            )

    # --- the transport ----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop delivering what arrives on the channel; return once the reader has ended.

        Cancelled while it waits for the reader, intake has stopped all the same (the reader's
        scope is cancelled first).
        """
        scope, ended = self._intake, self._intake_ended
        if scope is not None and ended is not None:
            scope.cancel(reason="anybus: the bus stops its intake")
            await ended.wait()
        await checkpoint()

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Connect, subscribe, confirm the subscription with a probe, then publish and read
        until cancelled; what ``send()`` queued before that is still published (shielded,
        bounded)."""
        self._host = host
        self._serving = serving = object()
        try:
            await self._serve(task_status)
        finally:
            if self._serving is serving:  # a later serve() may have begun as this one closed
                self._host = None

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        inbound_send, inbound_receive = create_memory_object_stream[bytes](self._inbound_buffer)
        outbox_send, outbox_receive = create_memory_object_stream[bytes](self._outbox_size)

        def on_message(payload: bytes) -> None:  # called by glide on the event loop's thread
            try:
                inbound_send.send_nowait(payload)
            except WouldBlock:
                self._inbound_overflow += 1
                self._rejections.record("inbound-overflow", origin=self._channel)

        name = self._instance.replace("/", "-")
        publisher = await RedisClient.create(self._settings, name=f"anybus-pub-{name}")
        subscriber = await RedisClient.create(
            self._settings,
            name=f"anybus-sub-{name}",
            channels=[self._channel],
            on_message=on_message,
        )
        try:
            with inbound_send, inbound_receive:
                await self._health.wait_for_server(publisher, self._connect_timeout)
                # glide connects lazily: the subscribing client connects (and subscribes) on
                # its first command.
                await self._health.wait_for_server(subscriber, self._connect_timeout)
                async with create_task_group() as task_group:
                    self._intake = CancelScope()
                    self._intake_ended = Event()
                    task_group.start_soon(
                        self._read, self._intake, inbound_receive, name="anybus redis reader"
                    )
                    await self._probe(publisher)
                    task_group.start_soon(
                        self._write, publisher, outbox_receive, name="anybus redis writer"
                    )
                    self._outbox = outbox_send
                    task_group.start_soon(
                        self._health.watch,
                        publisher,
                        partial(self._probe, publisher),
                        name="anybus redis health",
                    )
                    logger.debug("%r: subscribed to %r", self, self._channel)
                    task_status.started()
        finally:
            if self._outbox is outbox_send:
                self._outbox = None
            with CancelScope(shield=True), move_on_after(2):
                # What send() queued before the bus stopped is still published.
                left = []
                while True:
                    try:
                        left.append(outbox_receive.receive_nowait())
                    except (WouldBlock, ClosedResourceError, EndOfStream):
                        break
                if left:
                    await self._publish_batch(publisher, left)
                await publisher.close()
                await subscriber.close()
            outbox_send.close()
            outbox_receive.close()

    async def _probe(self, publisher: RedisClient) -> None:
        """Publish a probe and wait for our own subscription to hear it."""
        timeout = self._connect_timeout if self._connect_timeout is not None else math.inf
        try:
            with fail_after(timeout):
                while True:
                    heard = self._probe_heard = Event()
                    probe = BusSystemMessage(source=self._instance, target=PROBE_TARGET)
                    payload = self._encode(probe)
                    with contextlib.suppress(TransportError):
                        await publisher.publish(self._channel, payload)
                    with move_on_after(0.5):
                        await heard.wait()
                        return
                    await sleep(0.05)
        except TimeoutError:
            raise TransportError(
                f"{self!r}: the subscription to {self._channel!r} on "
                f"{self._settings.address} was not confirmed within {timeout} s"
            ) from None

    async def _read(self, scope: CancelScope, inbound: MemoryObjectReceiveStream[bytes]) -> None:
        try:
            with scope:
                await self._read_all(inbound)
        finally:
            ended = self._intake_ended
            if self._intake is scope:
                self._intake = None
            if ended is not None:
                ended.set()

    async def _read_all(self, inbound: MemoryObjectReceiveStream[bytes]) -> None:
        # Take what has arrived without a scheduling round trip per message (as the workers
        # do), so that the workers wake once per batch rather than once per message.
        handled = 0
        while True:
            try:
                payload = inbound.receive_nowait()
            except WouldBlock:
                handled = 0
                try:
                    payload = await inbound.receive()
                except EndOfStream:
                    return
            except EndOfStream:
                return
            await self._take(payload)
            handled += 1
            if handled == READ_BATCH:
                handled = 0
                await checkpoint()

    async def _take(self, payload: bytes) -> None:
        if self._own.discard_if_present(payload):
            return  # our own message, already delivered locally when it was sent
        envelope = self._decode(payload, self._channel)
        if envelope is None:
            return
        message = envelope.message
        probe = message.target == PROBE_TARGET
        if envelope.sender == self._instance:
            if probe and self._probe_heard is not None:
                self._probe_heard.set()
            return
        if self._is_new(envelope) and not probe:
            await self._deliver_received(message)

    def _where(self) -> str:
        return f"{self._channel!r} on {self._settings.address}"
