"""The Redis buses as users write them: a :class:`~anybus.WorkerBus` given a Redis transport.

:class:`RedisBus` is ``WorkerBus(PubSubTransport(...))`` and :class:`RedisStreamBus` is
``WorkerBus(StreamTransport(...))``, with the transports' options and their statistics at hand.
"""

from __future__ import annotations

from typing import final

from .._codec import Codec
from .._dispatch import ErrorHook
from .._statistics import OverflowPolicy
from ._base import RedisBusBase
from ._client import RedisSettings
from ._pubsub import PubSubTransport
from ._streams import Durability, StreamTransport

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

    One name has one running instance: an instance holds a lease on its name (a key beside
    the stream), renewed every third of ``lease`` seconds; a second instance started under a
    name in use is refused (its start raises :class:`~anybus.TransportError`). The lease of
    an instance that died runs out after ``lease`` seconds; one that stops gives it up at
    once. An instance that cannot renew its lease for a whole lease reads nothing until it
    has; if another instance took the name meanwhile, it stops with a
    :class:`~anybus.TransportError`.

    ``send()`` delivers to this bus's subscribers, then returns once Redis has stored the
    message (``durability="stored"``, the default). Sends are stored in order; concurrent
    sends on one bus are stored together, in one round trip. While Redis is away a send waits
    for up to ``send_deadline`` seconds, then raises :class:`~anybus.TransportError`, which
    says whether the message may have been stored; a send that raised is never stored later
    after messages sent after it (each sender's entries are fenced by their sequence
    numbers), and one found not stored leaves no gap at the receivers.

    With ``durability="queued"``, ``send()`` returns once the message is queued for the
    writer, which stores what queues up in order, pipelined, however long Redis is away; a
    send waits only while ``outbox`` messages are queued (and raises after ``send_deadline``
    seconds of that). :meth:`flush` waits until everything sent so far is stored. What is
    still queued when the bus stops is stored within a deadline, or counted
    (``publish_failures``) and logged as lost.

    A crash may deliver a message twice: with ``dedupe`` (on by default) a bus drops
    messages whose id it has seen recently.

    The stream is trimmed to about ``max_len`` entries as messages are added, so Redis memory
    stays bounded; an instance that falls further behind than that (or comes back after they
    were trimmed) loses the oldest entries, and counts exactly how many as ``missed`` from the
    stream's own counters (Redis 7), logged once. Reads are bounded by bytes as well as
    count; an entry over the codec's ``max_size`` is left unread and counted as rejected
    (``oversized``). Messages sent by
    this bus reach its own subscribers directly, as with :class:`RedisBus`.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``, or ``rediss://`` for TLS; or a
            ready :class:`RedisSettings` (then ``request_timeout`` is taken from it).
        stream: the stream's key.
        name: this instance's name, which names its consumer group: keep it stable across
            restarts to resume (default: host, process id and a count of the instances in
            the process; unique, so it cannot resume).
        max_len: the approximate length the stream is trimmed to.
        send_deadline: seconds a send may wait to be stored (queued: for room) while Redis is
            away.
        durability: ``"stored"``: ``send()`` returns once Redis has stored the message;
            ``"queued"``: once it is queued for the writer.
        outbox: with ``durability="queued"``, the messages that may wait to be stored;
            beyond it ``send()`` waits.
        lease: seconds the lease on ``name`` lasts unless renewed.
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        read_batch: entries read at a time, at most (reads also stop at about 4 MiB).
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
        durability: Durability = "stored",
        outbox: int = 10_000,
        lease: float = 10.0,
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
                durability=durability,
                outbox=outbox,
                lease=lease,
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

    async def flush(self) -> None:
        """Return once every message sent on this bus so far is stored in Redis (with
        ``durability="queued"``; with ``"stored"``, once the sends in progress are done).

        Cancelling the wait changes nothing.

        Raises:
            TransportError: if the bus stopped before some queued messages were stored
                (they reached local subscribers only).
        """
        await self._redis.flush()
