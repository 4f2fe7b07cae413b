"""RedisBus: the bus carried over a Redis pub/sub channel (at-most-once, low latency)."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import final

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    WouldBlock,
    create_memory_object_stream,
    create_task_group,
    fail_after,
    move_on_after,
    sleep,
)
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from .._dispatch import ErrorHook
from .._exceptions import TransportError
from .._messages import BusMessage, BusSystemMessage
from .._statistics import OverflowPolicy
from .._wire import WireCodec
from ._base import RedisTransportBus, instance_id
from ._client import MAX_IN_FLIGHT, RedisClient, RedisSettings

__all__ = ["RedisBus"]

logger = logging.getLogger("anybus.redis")


#: The target of the probes a bus publishes to itself, to prove its subscription is in
#: place. Messages with this target are never delivered to subscribers.
PROBE_TARGET = "anybus:probe"


@final
class RedisBus(RedisTransportBus):
    """A bus carried over a Redis pub/sub channel: every bus on the channel gets every
    non-local message.

    Delivery is at-most-once: a bus that is disconnected misses what is published meanwhile.
    Each sender numbers its messages, so receivers detect such gaps, count them and log them.
    Messages sent by this bus reach its own subscribers directly (not through Redis, and
    without a duplicate when the copy comes back), so local delivery keeps working while
    Redis is away.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``, or ``rediss://`` for TLS; or a
            ready :class:`RedisSettings` (then ``request_timeout`` is taken from it).
        channel: the pub/sub channel the buses share.
        name: this bus instance's name on the channel (default: host and process id).
        codec: how messages are encoded (serializer, registry, size limit, signing).
        connect_timeout: seconds to wait for the server when the bus starts before failing
            with :class:`~anybus.TransportError`; ``None`` waits as long as it takes.
        request_timeout: seconds a Redis request may take.
        inbound_buffer: messages read from Redis that may wait for the reader; beyond it
            they are dropped and counted.
        health_interval: seconds between health checks (outages are detected by them).
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        max_buffer, overflow, exit_drain, on_handler_error: as for :class:`~anybus.WorkerBus`.
    """

    def __init__(
        self,
        url: str | RedisSettings = "redis://127.0.0.1:6379",
        *,
        channel: str = "anybus",
        name: str | None = None,
        codec: WireCodec | None = None,
        connect_timeout: float | None = 5.0,
        request_timeout: float = 1.0,
        inbound_buffer: int = 10_000,
        health_interval: float = 0.5,
        dedupe: int = 0,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            url,
            instance=instance_id(name, incarnation=True),
            codec=codec,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            health_interval=health_interval,
            dedupe=dedupe,
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )
        if inbound_buffer < 1:
            raise ValueError(f"inbound_buffer must be at least 1, got {inbound_buffer!r}")
        self._channel = channel
        self._inbound_buffer = inbound_buffer
        self._publisher: RedisClient | None = None
        self._limiter = CapacityLimiter(MAX_IN_FLIGHT)
        self._probe_heard: Event | None = None

    @property
    def channel(self) -> str:
        """The pub/sub channel."""
        return self._channel

    # --- sending ----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to this bus's subscribers, then publish it on the channel.

        Raises:
            SerializationError: if the message cannot be encoded (nothing was delivered).
            TransportError: if Redis could not be reached; the local subscribers have the
                message, the other buses do not.
        """
        payload = self._encode(message)
        await self.deliver(message)
        await self._publish_payload(payload)

    async def _publish_payload(self, payload: bytes) -> None:
        publisher = self._publisher
        if publisher is None:
            self._publish_failures += 1
            raise TransportError(
                f"{self!r} is not connected (run it first): delivered to local subscribers only"
            )
        try:
            async with self._limiter:
                receivers = await publisher.publish(self._channel, payload)
        except TransportError as exc:
            self._publish_failures += 1
            raise TransportError(f"{exc}; delivered to local subscribers only") from exc
        self._published += 1
        if receivers == 0 and not self._settings.cluster:  # a cluster counts per node
            # Our own subscription should have heard it: it is being re-established.
            self._unheard += 1
            logger.warning(
                "%r: redis reports no subscriber on %r (resubscribing?): the message reached "
                "local subscribers only",
                self,
                self._channel,
            )

    # --- the transport ----------------------------------------------------------------------

    async def _serve_transport(self, *, task_status: TaskStatus[None]) -> None:
        inbound_send, inbound_receive = create_memory_object_stream[bytes](self._inbound_buffer)

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
                    task_group.start_soon(self._read, inbound_receive, name="anybus redis reader")
                    self._publisher = publisher
                    await self._probe()
                    task_group.start_soon(
                        self._health.watch, publisher, self._probe, name="anybus redis health"
                    )
                    logger.debug("%r: subscribed to %r", self, self._channel)
                    task_status.started()
        finally:
            self._publisher = None
            with CancelScope(shield=True), move_on_after(2):
                await publisher.close()
                await subscriber.close()

    async def _probe(self) -> None:
        """Publish a probe and wait for our own subscription to hear it."""
        timeout = self._connect_timeout if self._connect_timeout is not None else math.inf
        try:
            with fail_after(timeout):
                while True:
                    heard = self._probe_heard = Event()
                    probe = BusSystemMessage(source=self._instance, target=PROBE_TARGET)
                    payload = self._encode(probe)
                    with contextlib.suppress(TransportError):
                        await self._publish_payload(payload)
                    with move_on_after(0.5):
                        await heard.wait()
                        return
                    await sleep(0.05)
        except TimeoutError:
            raise TransportError(
                f"{self!r}: the subscription to {self._channel!r} on "
                f"{self._settings.address} was not confirmed within {timeout} s"
            ) from None

    async def _read(self, inbound: MemoryObjectReceiveStream[bytes]) -> None:
        async for payload in inbound:
            envelope = self._decode(payload, self._channel)
            if envelope is None:
                continue
            message = envelope.message
            probe = message.target == PROBE_TARGET
            if envelope.sender == self._instance:
                # Our own message, already delivered locally when it was sent.
                if probe and self._probe_heard is not None:
                    self._probe_heard.set()
                continue
            if self._is_new(envelope) and not probe:
                await self._deliver_received(message)

    def _where(self) -> str:
        return f"{self._channel!r} on {self._settings.address}"
