"""What the Redis transports share (identity, encoding, sequence tracking, counters, health),
and the bus class both Redis buses are: a :class:`~anybus.WorkerBus` given a Redis transport."""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from .._bus import WorkerBus
from .._checks import check_optional_name, check_seconds
from .._codec import Codec, check_codec
from .._dispatch import ErrorHook
from .._exceptions import BusOverflowError, MessageRejected
from .._messages import BusMessage
from .._sequence import SequenceTracker
from .._statistics import OverflowPolicy
from .._transport import TransportHost
from .._wire import Envelope, RejectionCounter, WireCodec
from ._client import RedisSettings
from ._monitor import Health

__all__ = ["RedisBusBase", "RedisStatistics", "RedisTransport"]

logger = logging.getLogger("anybus.redis")

#: Failed publishes are logged at most once per this many seconds (and all counted).
FAILURE_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class RedisStatistics:
    """A snapshot of a Redis bus's transport.

    Attributes:
        connected: whether the last health check reached the server.
        outages: how many times the server became unreachable, or the connection to it was
            lost and re-established (however briefly: a changed ``CLIENT INFO`` counts).
        published: messages stored in (or published to) Redis by this bus.
        publish_failures: sends that reached local subscribers but not Redis (or may not
            have: the error said so).
        failed_but_stored: of those, the stream sends whose message was found stored after
            all, at its place in order (the connection broke, or the deadline passed, while
            it was on its way); counted in ``published`` too.
        at_risk: sends that returned before Redis confirmed their message while the
            connection was down: known down at the time (``durability="queued"`` on a stream
            bus), or found down by the next health check (a pub/sub send returns once queued:
            sends since the last check that found the connection unbroken count). They may
            not have reached the other buses.
        unheard: pub/sub publishes that Redis reported nobody received (a resubscribe gap).
        received: messages read from Redis, this bus's own included.
        rejected: input dropped, by reason (``malformed``, ``forged``, ...).
        inbound_overflow: pub/sub messages dropped because the reader fell behind.
        gaps: times messages were lost on the way: a sender's sequence numbers jumped, or
            the stream dropped entries before this bus read them.
        missed: messages lost in those gaps (on a stream, entries trimmed before this bus
            read them, counted from the stream's own counters on Redis 7).
        duplicates: messages received again (redelivered after a crash, or retried sends);
            dropped when ``dedupe`` is on.
        replayed: signed messages refused as replays: stale, or a sender's number taken
            before (see the serialization docs); also in ``rejected``.
        groups_recreated: stream consumer groups recreated after Redis lost them.
    """

    connected: bool
    outages: int
    published: int
    publish_failures: int
    failed_but_stored: int
    at_risk: int
    unheard: int
    received: int
    rejected: dict[str, int]
    inbound_overflow: int
    gaps: int
    missed: int
    duplicates: int
    replayed: int
    groups_recreated: int


class RecentPayloads:
    """A bounded set of the payloads a bus sent, to know its own echoes without decoding.

    Payloads are unique (each carries the sender and a sequence number), so a byte-for-byte
    match is our own message. The oldest are forgotten past ``size``; an echo of one of those
    is still recognised, by decoding it.
    """

    __slots__ = ("_payloads", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._payloads: OrderedDict[bytes, None] = OrderedDict()

    def add(self, payload: bytes) -> None:
        self._payloads[payload] = None
        if len(self._payloads) > self._size:
            self._payloads.popitem(last=False)

    def discard_if_present(self, payload: bytes) -> bool:
        """Forget ``payload`` and return True if it was one of ours."""
        try:
            del self._payloads[payload]
        except KeyError:
            return False
        return True


def instance_id(name: str | None, *, incarnation: bool) -> str:
    """This bus's identity: its name (default: host and pid), and optionally a token that
    tells two runs of the same name apart."""
    base = check_optional_name("name", name) or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}/{secrets.token_hex(4)}" if incarnation else base


def client_name(role: str, instance: str) -> str:
    """The name Redis shows (``CLIENT LIST``) for one of an instance's connections: Redis
    refuses a client name with a space, a control or a non-ASCII character, so each becomes
    ``_`` (the instance's name itself may hold any)."""
    shown = "".join(c if "!" <= c <= "~" else "_" for c in instance.replace("/", "-"))
    return f"anybus-{role}-{shown}"


class RedisTransport(ABC):
    """The common part of the pub/sub and the stream transports."""

    @abstractmethod
    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        """See :meth:`anybus.Transport.serve`."""

    @abstractmethod
    async def publish(self, message: BusMessage) -> None:
        """See :meth:`anybus.Transport.publish`."""

    @abstractmethod
    async def stop_intake(self) -> None:
        """See :meth:`anybus.Transport.stop_intake`."""

    def __init__(
        self,
        url: str | RedisSettings,
        *,
        instance: str,
        codec: Codec | None,
        connect_timeout: float | None,
        request_timeout: float,
        health_interval: float,
        dedupe: int,
    ) -> None:
        check_seconds("request_timeout", request_timeout)
        check_seconds("health_interval", health_interval)
        if isinstance(url, RedisSettings):
            self._settings = url
        elif isinstance(url, str):
            self._settings = RedisSettings.from_url(url, request_timeout=request_timeout)
        else:
            raise TypeError(f"url must be a redis:// url (str) or RedisSettings, got {url!r}")
        self._instance = instance
        self._codec = check_codec(codec) or WireCodec()
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout, none=True)
        self._health = Health(self._settings, health_interval)
        self._rejections = RejectionCounter(logger=logger)
        self._seq = 0
        self._sequence = SequenceTracker(
            dedupe=dedupe,
            logger=logger,
            owner=self,
            why_lost="redis was unreachable, a subscription lapsed, or a stream lost them",
            rejections=self._rejections,
            # A PipecatWireCodec has neither: it never signs.
            replay_window=getattr(self._codec, "replay_window", None),
            clock=getattr(self._codec, "clock", time.time),
        )
        self._published = self._publish_failures = self._unheard = 0
        self._failed_but_stored = self._at_risk = 0
        self._last_failure_log = -math.inf
        self._received = self._inbound_overflow = self._groups_recreated = 0
        self._host: TransportHost | None = None  # while serving
        self._serving: object = None  # the token of the serve() that set _host

    @property
    def instance(self) -> str:
        """This bus's identity among the buses it talks to."""
        return self._instance

    def _encode(self, message: BusMessage) -> bytes:
        # Numbered once encoded: a message that cannot be encoded leaves no gap.
        payload = self._codec.encode(message, sender=self._instance, seq=self._seq + 1)
        self._seq += 1
        return payload

    def _decode(self, payload: bytes, origin: str) -> Envelope | None:
        """Decode what came from Redis; count and drop what is refused."""
        try:
            envelope = self._codec.decode(payload)
        except MessageRejected as exc:
            self._rejections.record(exc, origin=origin)
            return None
        except Exception as exc:  # a codec of one's own, which should raise MessageRejected
            detail = f"the codec's decode raised {exc!r} (a codec raises MessageRejected)"
            self._rejections.record("malformed", origin=origin, detail=detail)
            return None
        self._received += 1
        return envelope

    def _is_new(self, envelope: Envelope, *, redelivered: bool = False) -> bool:
        """Track the sender's sequence numbers: report gaps; spot (and maybe drop) repeats;
        refuse replays (``redelivered``: an entry read again; see :class:`SequenceTracker`)."""
        return self._sequence.is_new(envelope, redelivered=redelivered)

    def _count_trimmed(self, lost: int) -> None:
        """Count ``lost`` entries that the stream dropped before this bus read them (from the
        stream's own counters), and log it once."""
        # A sequence gap that spans such a loss is counted already (any_sender).
        self._sequence.report_missed(lost, None, any_sender=True)
        logger.warning(
            "%r: %d entr%s of the stream were trimmed before this instance read them (it was "
            "stopped, or fell more than max_len entries behind): they are lost",
            self,
            lost,
            "y" if lost == 1 else "ies",
        )

    async def _deliver_received(self, message: BusMessage) -> None:
        host = self._host
        if host is not None:
            with suppress(BusOverflowError):  # counted by the subscriptions that refused it
                await host.deliver(message)

    @staticmethod
    def _deliver_now(bus: WorkerBus, message: BusMessage) -> bool:
        """Deliver a received message from a callback, if no inbox must wait for room (see
        :meth:`WorkerBus.deliver_nowait`)."""
        with suppress(BusOverflowError):  # counted by the subscriptions that refused it
            return bus.deliver_nowait(message)
        return True

    def _publish_failed(self, failed: int, error: str) -> None:
        """Count ``failed`` publishes, which reached local subscribers only; log them at most
        once per ``FAILURE_LOG_INTERVAL`` seconds."""
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

    async def _deliver_local(self, message: BusMessage) -> None:
        host = self._host
        if host is not None:
            await host.deliver(message)

    async def wait_connected(self, connected: bool = True) -> None:
        """Wait until the health checks find Redis reachable (or, with ``False``, unreachable).

        Outages are noticed by health checks every ``health_interval`` seconds, at once when
        a connection drops, and by failed publishes. Cancelling the wait changes nothing.
        """
        await self._health.wait_until(connected)

    def transport_statistics(self) -> RedisStatistics:
        """A snapshot of the transport's counters."""
        return RedisStatistics(
            connected=self._health.connected,
            outages=self._health.outages,
            published=self._published,
            publish_failures=self._publish_failures,
            failed_but_stored=self._failed_but_stored,
            at_risk=self._at_risk + self._health.at_risk,
            unheard=self._unheard,
            received=self._received,
            rejected=self._rejections.counts,
            inbound_overflow=self._inbound_overflow,
            gaps=self._sequence.gaps,
            missed=self._sequence.missed,
            duplicates=self._sequence.duplicates,
            replayed=self._sequence.replayed,
            groups_recreated=self._groups_recreated,
        )

    def _where(self) -> str:
        return self._settings.address

    def __str__(self) -> str:
        return f"{self._instance!r} on {self._where()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"


_T = TypeVar("_T", bound=RedisTransport)


class RedisBusBase(WorkerBus, Generic[_T]):
    """A :class:`~anybus.WorkerBus` given a Redis transport: what both Redis buses add."""

    def __init__(
        self,
        transport: _T,
        *,
        max_buffer: int | None,
        overflow: OverflowPolicy | str,
        exit_drain: float | None,
        on_handler_error: ErrorHook | None,
    ) -> None:
        super().__init__(
            transport,
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )
        self._redis: _T = transport

    @property
    def instance(self) -> str:
        """This bus's identity among the buses it talks to."""
        return self._redis.instance

    async def wait_connected(self, connected: bool = True) -> None:
        """Wait until the health checks find Redis reachable (or, with ``False``, unreachable).

        Outages are noticed by health checks every ``health_interval`` seconds, at once when
        a connection drops, and by failed publishes. Cancelling the wait changes nothing.
        """
        await self._redis.wait_connected(connected)

    def transport_statistics(self) -> RedisStatistics:
        """A snapshot of the transport's counters."""
        return self._redis.transport_statistics()
