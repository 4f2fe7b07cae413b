"""PostgresBus: the bus carried over Postgres tables (durable, at-least-once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, final

from .._bus import WorkerBus
from .._dispatch import ErrorHook
from .._statistics import OverflowPolicy
from .._wire import WireCodec
from ._transport import PostgresTransport

__all__ = ["Durability", "PostgresBus", "PostgresStatistics"]

#: When ``send()`` returns: once Postgres has stored the message, or once it is queued.
Durability = Literal["stored", "queued"]


@dataclass(frozen=True, slots=True)
class PostgresStatistics:
    """A snapshot of a Postgres bus's transport.

    Attributes:
        connected: whether the last statement reached the server.
        outages: how many times the server became unreachable.
        published: messages this bus stored.
        publish_failures: sends that raised (the local subscribers had the message; the
            error says whether the server may have stored it).
        received: messages read from other buses (decoded).
        rejected: input dropped, by reason (``malformed``, ``forged``, ...).
        gaps: times messages were found missing (deleted before this bus read them).
        missed: messages lost in those gaps: exact, since message ids have no holes.
        duplicates: messages received again (redelivered after a crash); dropped when
            ``dedupe`` is on.
        replayed: signed messages refused as replays: stale, or a sender's number taken
            before (see the serialization docs); also in ``rejected``.
        position: the id of the last message read.
        acknowledged: the id up to which every message was handled and acknowledged.
    """

    connected: bool
    outages: int
    published: int
    publish_failures: int
    received: int
    rejected: dict[str, int]
    gaps: int
    missed: int
    duplicates: int
    replayed: int
    position: int
    acknowledged: int


@final
class PostgresBus(WorkerBus):
    """A bus carried over Postgres: durable and at-least-once, on plain Postgres 13+.

    Every message is stored in a table of the ``schema`` (created on first use when the
    role may; ``anybus postgres schema`` prints it for a DBA). Each bus instance reads the
    channel through a consumer of its own, named ``name``, so every instance receives every
    message; it acknowledges a message only once every subscriber has handled it. An
    instance that restarts under the same ``name`` resumes where it left off: what it had
    read but not acknowledged comes again: at least once, so after a crash a handler may see
    a message it handled just before (``dedupe`` drops repeats within one run). A new name
    starts from now. New messages wake readers through
    ``LISTEN/NOTIFY``; a safety poll every ``poll_interval`` seconds catches a lost
    notification.

    One name has one running instance: an instance holds a lease on its name, renewed as it
    reads; a second instance started under a name in use is refused (its start raises
    :class:`~anybus.TransportError`). The lease of an instance that died runs out after
    ``lease`` seconds; one that stops gives it up at once.

    ``send()`` delivers to this bus's subscribers, then returns once the message is stored
    (committed). Sends are stored in order, in batches (concurrent sends share one
    transaction). While the server is away a send waits for up to ``send_deadline``
    seconds, then raises :class:`~anybus.TransportError`, which says whether the message may
    have been stored; a send that raised is never stored later.

    With ``durability="queued"``, ``send()`` returns once the message is queued for the
    writer, which stores what queues up in order, up to ``read_batch`` a statement, however
    long the server is away; a send waits only while ``outbox`` messages are queued (for up
    to ``send_deadline``). :meth:`flush` waits until everything sent is stored. What is still
    queued when the bus stops is stored within a deadline (the statement timeout and about
    three seconds; ``connect_timeout`` more if it must connect again), or counted
    (``publish_failures``), logged and reported by the next :meth:`flush`: a crash of this
    process can lose what it had queued.

    Messages every consumer acknowledged are deleted every ``housekeeping_interval``
    seconds, and so are those more than ``max_len`` behind the newest: a reader that falls
    that far behind loses the oldest, and reports exactly how many as ``missed``. Consumers
    not seen for ``retention`` seconds are removed.

    Args:
        dsn: a libpq connection string or URL (``postgresql://user@host:5432/dbname``).
        channel: the channel's name; buses on one channel (and schema) talk to each other.
        name: this instance's consumer name: keep it stable across restarts to resume
            (default: host, process id and a count; unique, so it cannot resume).
        schema: the Postgres schema holding anybus's tables and functions.
        codec: the wire codec (signing, limits); see :class:`~anybus.WireCodec`.
        connect_timeout: seconds to wait for the server when the bus starts.
        statement_timeout: seconds one statement may take.
        send_deadline: seconds a send may wait to be stored while the server is away.
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        read_batch: messages read (and stored) at a time, at most.
        read_bytes: stop a read after this many bytes of messages (at least one is read).
        max_len: how far (in messages) a reader may fall behind before it loses the oldest.
        lease: seconds the lease on ``name`` lasts unless renewed.
        retention: seconds a consumer that is not running keeps its place.
        housekeeping_interval: seconds between two housekeeping rounds.
        poll_interval: seconds between two safety polls.
        create_schema: create the schema on first use if it is missing.
        durability: ``"stored"`` (a send returns once stored) or ``"queued"`` (once queued).
        outbox: with ``"queued"``, how many messages may wait to be stored.
        carry_messages: carry small messages in their notification (up to 3,000 bytes of
            bodies a publish), and take those carried by other buses without reading the
            table: a round trip about a third shorter. The notifications go out under a
            secret name, on which only the roles granted the schema's functions can listen
            (and learn it, if they know the channel: see the Postgres docs); ``False``:
            every reader reads the table (and notifications are about 40 bytes).
        max_buffer: as for :class:`~anybus.WorkerBus`.
        overflow: as for :class:`~anybus.WorkerBus`.
        exit_drain: as for :class:`~anybus.WorkerBus`.
        on_handler_error: as for :class:`~anybus.WorkerBus`.

    Raises:
        TypeError, ValueError: an option is of the wrong type or out of range (the message
            names it).
    """

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
        durability: Durability = "stored",
        outbox: int = 10_000,
        carry_messages: bool = True,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        self._postgres = PostgresTransport(
            dsn,
            channel=channel,
            name=name,
            schema=schema,
            codec=codec,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            send_deadline=send_deadline,
            dedupe=dedupe,
            read_batch=read_batch,
            read_bytes=read_bytes,
            max_len=max_len,
            lease=lease,
            retention=retention,
            housekeeping_interval=housekeeping_interval,
            poll_interval=poll_interval,
            create_schema=create_schema,
            durability=durability,
            outbox=outbox,
            carry_messages=carry_messages,
        )
        super().__init__(
            self._postgres,
            max_buffer=max_buffer,
            overflow=overflow,
            exit_drain=exit_drain,
            on_handler_error=on_handler_error,
        )

    @property
    def channel(self) -> str:
        """The channel's name."""
        return self._postgres.channel

    @property
    def name(self) -> str:
        """This instance's consumer name."""
        return self._postgres.name

    @property
    def instance(self) -> str:
        """This bus's identity among the buses it talks to (its name and a run token)."""
        return self._postgres.instance

    async def flush(self) -> None:
        """Wait until every message sent so far is stored (or failed); with
        ``durability="stored"`` each send waited already. Cancelling the wait changes
        nothing: the writer goes on storing what was queued.

        Raises:
            TransportError: if the bus stopped before some queued messages were stored.
        """
        await self._postgres.flush()

    def transport_statistics(self) -> PostgresStatistics:
        """A snapshot of the transport's counters."""
        return PostgresStatistics(**self._postgres.counters())  # type: ignore[arg-type]
