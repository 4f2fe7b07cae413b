"""RedisBus: the bus carried over a Redis pub/sub channel (at-most-once, low latency)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from functools import partial
from typing import cast, final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    create_task_group,
    current_time,
    fail_after,
    get_cancelled_exc_class,
    move_on_after,
    sleep,
    sleep_forever,
)
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from .._bus import WorkerBus
from .._checks import check_count, check_name
from .._codec import Codec
from .._exceptions import TransportError
from .._messages import BusMessage, BusSystemMessage
from .._transport import Intake, TransportHost
from ._base import RecentPayloads, RedisTransport, client_name, instance_id
from ._client import RedisClient, RedisSettings, StartedPublish

__all__ = ["PubSubTransport"]

logger = logging.getLogger("anybus.redis")


#: Most messages the writer publishes in one pipelined round trip.
WRITE_BATCH = 256
#: The reader yields to the scheduler after this many messages in a row.
READ_BATCH = 128

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
        codec: Codec | None = None,
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
        check_count("inbound_buffer", inbound_buffer, 1)
        check_count("outbox", outbox, 1)
        self._channel = check_name("channel", channel)
        self._inbound_buffer = inbound_buffer
        self._outbox_size = outbox
        # Payloads queued by send() for the writer task; None while not publishing.
        self._outbox: deque[bytes | StartedPublish] | None = None
        self._publisher: RedisClient  # set by serve(), before the outbox opens
        self._outbox_room: Event | None = None  # set when the writer takes from the outbox
        self._writer_waiter: Event | None = None  # set by a send when the writer is parked
        self._reader_waiter: Event | None = None  # set by glide's callback: the reader's turn
        self._reader_busy = False  # the reader is delivering one of its queue
        # Payloads this bus published, so that their echoes are dropped without decoding.
        self._own = RecentPayloads(outbox * 2)
        self._probe_heard: Event | None = None
        self._intake = Intake()

    @property
    def channel(self) -> str:
        """The pub/sub channel."""
        return self._channel

    # --- sending ----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then queue it for publishing.

        Waits only when the outbox (or a bounded inbox) is full. A send cancelled while it
        waits for room in the outbox has gone nowhere; one cancelled later (waiting for room
        in a local inbox) is on its way to Redis but may not have reached every local
        subscriber, and a line is logged saying so.

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
        while len(outbox) >= self._outbox_size and self._outbox is outbox:
            room = self._outbox_room = self._outbox_room or Event()
            await room.wait()  # cancelled here: queued nowhere
        if self._outbox is not outbox:  # the bus stopped as this send waited for room
            await self._deliver_local(message)
            self._publish_failures += 1
            raise TransportError(
                f"{self!r} stopped before it could publish: delivered to local subscribers only"
            )
        # Queued before the local delivery (which may wait for room): the outbox is FIFO, so
        # payloads go out in the order their sequence numbers were given.
        writer = self._writer_waiter
        if writer is None:
            outbox.append(payload)
        else:
            # The writer is parked: nothing is queued or on its way. Hand the PUBLISH to the
            # client now, in this task, rather than after a task switch to the writer; the
            # writer awaits its answer.
            self._writer_waiter = None
            started = None
            try:
                started = self._publisher.start_publish(self._channel, payload)
            finally:  # whatever happened, the writer wakes to what was queued
                outbox.append(payload if started is None else started)
                writer.set()
        self._own.add(payload)
        self._health.sent()  # returned before Redis had it: at risk if an outage is found
        try:
            await self._deliver_local(message)
        except get_cancelled_exc_class():
            logger.info(
                "%r: a send cancelled as it waited for room in a local inbox: it is "
                "published all the same, but some local subscribers lack it",
                self,
            )
            raise

    async def _write(self, publisher: RedisClient, outbox: deque[bytes | StartedPublish]) -> None:
        """Publish what queues up in the outbox, a pipelined batch at a time, until the
        outbox is closed and empty.

        It runs shielded (see ``_serve``): a batch taken out of the outbox is published even
        if the bus stops meanwhile, for a ``send()`` that returned must not vanish in
        silence; and what was queued before the stop still goes out, within a deadline.
        """
        batch: list[bytes | StartedPublish] = []
        try:
            while True:
                if not outbox:
                    if self._outbox is not outbox:
                        return  # closed, and everything queued went out
                    waiter = self._writer_waiter = Event()
                    await waiter.wait()
                    continue
                take = outbox.popleft
                if isinstance(outbox[0], bytes):
                    batch = [take() for _ in range(min(len(outbox), WRITE_BATCH))]
                else:  # handed over by send(), which found the writer parked: alone, first
                    batch = [take()]
                room = self._outbox_room
                if room is not None:
                    self._outbox_room = None
                    room.set()
                await self._publish_batch(publisher, batch)
                batch = []
        finally:
            self._writer_waiter = None
            lost = len(batch) + len(outbox)
            if lost:  # the stop's deadline passed first
                outbox.clear()
                self._publish_failures += lost
                logger.warning(
                    "%r: %d message(s) not published: the bus stopped first; they reached "
                    "local subscribers only",
                    self,
                    lost,
                )

    async def _publish_batch(
        self, publisher: RedisClient, batch: list[bytes | StartedPublish]
    ) -> None:
        receivers: list[int | None]
        try:
            # One batch in flight at a time (the writer awaits each): no limiter needed.
            first = batch[0]
            if isinstance(first, StartedPublish):
                receivers = [await first.result()]
            elif len(batch) == 1:  # no pipeline for one: a plain PUBLISH costs less
                receivers = [await publisher.publish(self._channel, first)]
            else:
                # Only the first item of a batch can have been handed over (see _write).
                receivers = await publisher.publish_many(self._channel, cast(list[bytes], batch))
        except TransportError as exc:
            receivers = [None] * len(batch)
            error = str(exc)
            self._health.lost(f"publishing failed: {error}")
        else:
            error = "redis refused it"
        failed = receivers.count(None)
        self._published += len(batch) - failed
        if failed:
            self._publish_failed(failed, error)
        if 0 in receivers and not self._settings.cluster:  # a cluster counts per node
            # Our own subscription should have heard it: it is being re-established.
            self._unheard += receivers.count(0)
            self._health.lost(f"redis reports no subscriber on {self._channel!r}")
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
        await self._intake.stop()

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """Connect, subscribe, confirm the subscription with a probe, then publish and read
        until cancelled; what ``send()`` queued before that is still published (shielded,
        bounded)."""
        self._host = host
        self._serving = serving = object()
        try:
            await self._serve(host, task_status)
        finally:
            if self._serving is serving:  # a later serve() may have begun as this one closed
                self._host = None

    async def _serve(self, host: TransportHost, task_status: TaskStatus[None]) -> None:
        inbound: deque[bytes | BusMessage] = deque()
        outbox: deque[bytes | StartedPublish] = deque()
        # A bus can take a message in glide's callback, without a task switch; other hosts
        # get every message through the reader task.
        bus = host if isinstance(host, WorkerBus) else None
        intake = self._intake

        def on_message(payload: bytes) -> None:  # called by glide on the event loop's thread
            if not inbound and not self._reader_busy and bus is not None and not intake.stopped:
                # Nothing ahead of it: deliver it here and now, unless an inbox would make
                # it wait (then the reader delivers it, and what comes after it).
                try:
                    message = self._accept(payload)
                    if message is None or self._deliver_now(bus, message):
                        return
                except Exception as exc:  # glide would swallow it
                    logger.error("%r: taking a message failed", self, exc_info=exc)
                    return
                inbound.append(message)
            elif len(inbound) < self._inbound_buffer:
                inbound.append(payload)
            else:
                self._inbound_overflow += 1
                self._rejections.record("inbound-overflow", origin=self._channel)
                return
            reader = self._reader_waiter
            if reader is not None:
                self._reader_waiter = None
                reader.set()

        publisher = await RedisClient.create(
            self._settings, name=client_name("pub", self._instance)
        )
        subscriber = await RedisClient.create(
            self._settings,
            name=client_name("sub", self._instance),
            channels=[self._channel],
            on_message=on_message,
        )
        writing = CancelScope(shield=True)
        try:
            await self._health.wait_for_server(publisher, self._connect_timeout)
            # glide connects lazily: the subscribing client connects (and subscribes) on its
            # first command.
            await self._health.wait_for_server(subscriber, self._connect_timeout)
            async with create_task_group() as task_group:
                intake.start(task_group, self._read_all, inbound, name="anybus redis reader")
                await self._probe(publisher)
                self._outbox = outbox
                self._publisher = publisher
                task_group.start_soon(
                    self._write_shielded, writing, publisher, outbox, name="anybus redis writer"
                )
                task_group.start_soon(
                    partial(
                        self._health.watch,
                        publisher,
                        partial(self._probe, publisher),
                        also=[subscriber],  # a subscription lapses when its client reconnects
                    ),
                    name="anybus redis health",
                )
                logger.debug("%r: subscribed to %r", self, self._channel)
                task_status.started()
                try:
                    await sleep_forever()
                finally:
                    # What send() queued before the bus stopped is still published: the
                    # writer empties the outbox, then ends (within a deadline).
                    self._close_outbox(outbox, writing)
        finally:
            self._close_outbox(outbox, writing)
            self._reader_waiter = None
            self._reader_busy = False
            with CancelScope(shield=True), move_on_after(2):
                await publisher.close()
                await subscriber.close()

    def _close_outbox(self, outbox: deque[bytes | StartedPublish], writing: CancelScope) -> None:
        if self._outbox is outbox:
            self._outbox = None
            writing.deadline = current_time() + self._settings.request_timeout + 1
        for waiter in (self._writer_waiter, self._outbox_room):
            if waiter is not None:
                waiter.set()
        self._writer_waiter = self._outbox_room = None

    async def _write_shielded(
        self, scope: CancelScope, publisher: RedisClient, outbox: deque[bytes | StartedPublish]
    ) -> None:
        with scope:
            await self._write(publisher, outbox)

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

    async def _read_all(self, inbound: deque[bytes | BusMessage]) -> None:
        # What glide's callback could not deliver at once, in order: payloads (and at most
        # one message already taken, which an inbox had no room for). Taken without a
        # scheduling round trip per message (as the workers do), so that the workers wake
        # once per batch rather than once per message.
        handled = 0
        while True:
            try:
                item = inbound.popleft()
            except IndexError:
                handled = 0
                waiter = self._reader_waiter = Event()
                await waiter.wait()
                continue
            self._reader_busy = True
            message = self._accept(item) if isinstance(item, bytes) else item
            if message is not None:
                await self._deliver_received(message)
            self._reader_busy = False
            handled += 1
            if handled == READ_BATCH:
                handled = 0
                await checkpoint()

    def _accept(self, payload: bytes) -> BusMessage | None:
        """The message in ``payload``, or ``None`` if it is not for the subscribers (our own,
        a probe, refused, or a repeat that ``dedupe`` drops)."""
        if self._own.discard_if_present(payload):
            return None  # our own message, already delivered locally when it was sent
        envelope = self._decode(payload, self._channel)
        if envelope is None:
            return None
        message = envelope.message
        probe = message.target == PROBE_TARGET
        if envelope.sender == self._instance:
            if probe and self._probe_heard is not None:
                self._probe_heard.set()
            return None
        if self._is_new(envelope) and not probe:
            return message
        return None

    def _where(self) -> str:
        return f"{self._channel!r} on {self._settings.address}"
