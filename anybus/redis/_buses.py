"""The Redis buses as users write them: a :class:`~anybus.WorkerBus` given a Redis transport.

:class:`RedisBus` is ``WorkerBus(PubSubTransport(...))`` and :class:`RedisStreamBus` is
``WorkerBus(StreamTransport(...))``, with the transports' options and their statistics at hand.
"""

from __future__ import annotations

from typing import final

from .._dispatch import ErrorHook
from .._statistics import OverflowPolicy
from .._codec import Codec
from ._base import RedisBusBase
from ._client import RedisSettings
from ._pubsub import PubSubTransport
from ._streams import StreamTransport

__all__ = ["RedisBus", "RedisStreamBus"]


@final
class RedisBus(RedisBusBase[PubSubTransport]):
    """A bus carried over a Redis pub/sub channel: every bus on the channel gets every
    non-local message.

    Delivery is at-most-once: a bus that is disconnected misses what is published meanwhile.
    Each sender numbers its messages, so receivers detect such gaps, count them and log them.
    Messages sent by this bus reach its own subscribers directly (not through Redis, and
    without a duplicate when the copy comes back), so local delivery keeps working while
    Redis is away.

    ``send()`` does not wait for Redis: it queues the message in an outbox (waiting only when
    ``outbox`` messages are already queued), and a writer task publishes what has queued up
    in one pipelined round trip. A publish that fails is counted (``publish_failures``) and
    logged, and shows as a gap at the receivers. While an outage is known (the health checks
    found Redis unreachable), ``send()`` raises :class:`~anybus.TransportError` instead,
    after delivering locally.

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
        outbox: messages that may wait to be published; beyond it ``send()`` waits.
        health_interval: seconds between health checks (outages are detected by them).
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        max_buffer: as for :class:`~anybus.WorkerBus`.
        overflow: as for :class:`~anybus.WorkerBus`.
        exit_drain: as for :class:`~anybus.WorkerBus`.
        on_handler_error: as for :class:`~anybus.WorkerBus`.
    """

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
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            PubSubTransport(
                url,
                channel=channel,
                name=name,
                codec=codec,
                connect_timeout=connect_timeout,
                request_timeout=request_timeout,
                inbound_buffer=inbound_buffer,
                outbox=outbox,
                health_interval=health_interval,
                dedupe=dedupe,
            ),
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )

    @property
    def channel(self) -> str:
        """The pub/sub channel."""
        return self._redis.channel


@final
class RedisStreamBus(RedisBusBase[StreamTransport]):
    """A bus carried over a Redis stream: durable and at-least-once.

    Every message is added to the stream (``XADD``). Each bus instance reads it through a
    consumer group of its own, named after the instance, so every instance receives every
    message, and acknowledges an entry only once every subscriber has handled its message.
    An instance that disconnects, or whose process restarts under the same ``name``, resumes
    where it left off: entries it had been given but not acknowledged are given again.

    ``send()`` returns only once Redis has stored the message; while Redis is away it retries
    for up to ``send_deadline`` seconds, then raises :class:`~anybus.TransportError`. Sends
    on one bus reach Redis one at a time, in order (so a loop of sends pays one round trip
    per message). A retry
    after a timeout may store a message twice, and a crash may deliver one twice: with
    ``dedupe`` (on by default) a bus drops messages whose id it has seen recently.

    The stream is trimmed to about ``max_len`` entries as messages are added, so Redis memory
    stays bounded; an instance that falls further behind than that loses the oldest entries,
    which its peers' sequence numbers reveal as gaps (counted and logged). Messages sent by
    this bus reach its own subscribers directly, as with :class:`RedisBus`.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``, or ``rediss://`` for TLS; or a
            ready :class:`RedisSettings` (then ``request_timeout`` is taken from it).
        stream: the stream's key.
        name: this instance's name, which names its consumer group: keep it stable across
            restarts to resume (default: host, process id and a count of the instances in
            the process; unique, so it cannot resume).
        max_len: the approximate length the stream is trimmed to.
        send_deadline: seconds a send may keep retrying while Redis is away.
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        read_batch: entries read at a time.
        codec: as for :class:`RedisBus`.
        connect_timeout: as for :class:`RedisBus`.
        request_timeout: as for :class:`RedisBus`.
        health_interval: as for :class:`RedisBus`.
        max_buffer: as for :class:`~anybus.WorkerBus`.
        overflow: as for :class:`~anybus.WorkerBus`.
        exit_drain: as for :class:`~anybus.WorkerBus`.
        on_handler_error: as for :class:`~anybus.WorkerBus`.
    """

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
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            StreamTransport(
                url,
                stream=stream,
                name=name,
                codec=codec,
                connect_timeout=connect_timeout,
                request_timeout=request_timeout,
                health_interval=health_interval,
                max_len=max_len,
                send_deadline=send_deadline,
                dedupe=dedupe,
                read_batch=read_batch,
            ),
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._redis.stream

    @property
    def group(self) -> str:
        """This instance's consumer group (and consumer) name."""
        return self._redis.group
