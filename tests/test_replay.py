"""Replay protection for signed traffic: the rules, on a SequenceTracker and a WireCodec; and on
RedisBus, RedisStreamBus and PostgresBus against real servers: a captured signed message
published again by hand (PUBLISH, XADD or the publish function, with a raw client) is refused
as ``replayed``, inside or outside the dedupe window, and so is a stale one; legit traffic, a
restarted sender and a redelivery to a restarted receiver pass; unsigned traffic is as before.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import psycopg
import pytest
from anyio import fail_after, to_thread

from anybus import BusDataMessage, BusMessage, MessageRejected, WireCodec
from anybus._sequence import SEQ_WINDOW, SequenceTracker
from anybus.postgres import PostgresBus
from anybus.redis import RedisBus, RedisSettings, RedisStreamBus
from anybus.redis._client import RedisClient
from anybus.testing import RecordingSubscriber

from .postgres_support import unique_channel
from .redis_support import unique_name

TIMEOUT = 20
KEYS = {"k1": b"r" * 32}
WINDOW = 300.0
KINDS = ["pubsub", "stream", "postgres"]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the rules, without a server ----------------------------------------------------------


def tracker(clock: Callable[[], float], *, dedupe: int = 0) -> SequenceTracker:
    return SequenceTracker(
        dedupe=dedupe,
        logger=logging.getLogger("anybus.test-replay"),
        owner="receiver",
        replay_window=WINDOW,
        clock=clock,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def codec(clock: FakeClock) -> WireCodec:
    return WireCodec(signing_keys=KEYS, replay_window=WINDOW, clock=clock)


def test_a_signed_envelope_carries_its_time_under_the_signature(
    codec: WireCodec, clock: FakeClock
) -> None:
    data = codec.encode(BusDataMessage(source="s"), sender="b/1", seq=1)
    assert b',"time_ms":1800000000000}' in data
    assert codec.decode(data).timestamp == clock.now
    with pytest.raises(MessageRejected, match="forged"):
        codec.decode(data.replace(b"1800000000000", b"1800000999000"))
    # Unsigned envelopes are as before: no timestamp.
    unsigned = WireCodec().encode(BusDataMessage(source="s"), sender="b/1", seq=1)
    assert b"time_ms" not in unsigned
    assert WireCodec().decode(unsigned).timestamp is None


def test_replay_window_is_on_by_default_when_signing(clock: FakeClock) -> None:
    assert WireCodec(signing_keys=KEYS).replay_window == 300
    assert WireCodec().replay_window is None  # nothing to protect without signatures
    assert WireCodec(signing_keys=KEYS, replay_window=None).replay_window is None
    assert repr(WireCodec(signing_keys=KEYS)).endswith("types, replay_window=300.0 s]>")
    for bad in (0, -1, float("inf"), float("nan"), True, "300"):
        with pytest.raises(ValueError, match="replay_window must be a positive number"):
            WireCodec(signing_keys=KEYS, replay_window=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dedupe", [0, 100])
def test_a_copy_is_replayed_inside_or_outside_the_dedupe_window(
    codec: WireCodec, clock: FakeClock, dedupe: int
) -> None:
    seen = tracker(clock, dedupe=dedupe)
    data = [codec.encode(BusDataMessage(source="s"), sender="b/1", seq=n) for n in (1, 2)]
    assert [seen.is_new(codec.decode(d)) for d in data] == [True, True]
    assert not seen.is_new(codec.decode(data[0]))
    assert not seen.is_new(codec.decode(data[1]))
    assert (seen.replayed, seen.duplicates) == (2, 0)


def test_a_redelivered_entry_is_a_duplicate_not_a_replay(
    codec: WireCodec, clock: FakeClock
) -> None:
    seen = tracker(clock)
    data = codec.encode(BusDataMessage(source="s"), sender="b/1", seq=1)
    assert seen.is_new(codec.decode(data), redelivered=True)  # not taken before: taken
    assert not seen.is_new(codec.decode(data), redelivered=True)
    assert (seen.replayed, seen.duplicates) == (0, 1)


def test_stale_future_and_untimed_messages_are_replayed(
    codec: WireCodec, clock: FakeClock
) -> None:
    seen = tracker(clock)
    start = clock.now

    def sent_at(when: float, sender: str) -> bytes:
        clock.now = when
        return codec.encode(BusDataMessage(source="s"), sender=sender, seq=1)

    old, fresh = sent_at(start, "old/1"), sent_at(start + 1, "fresh/1")
    far_ahead = sent_at(start + 2 * WINDOW + 1, "far/1")
    ahead = sent_at(start + 2 * WINDOW - 1, "ahead/1")
    clock.now = start + WINDOW + 0.5
    assert not seen.is_new(codec.decode(old))  # 300.5 s old
    assert seen.is_new(codec.decode(fresh))  # 299.5 s old
    assert not seen.is_new(codec.decode(far_ahead))  # 300.5 s ahead: a clock too far off
    assert seen.is_new(codec.decode(ahead))  # 299.5 s ahead
    assert seen.replayed == 2
    # Signed by an anybus without timestamps:
    untimed = dataclasses.replace(
        codec.decode(sent_at(start + WINDOW, "untimed/1")), timestamp=None
    )
    assert not seen.is_new(untimed)
    assert seen.replayed == 3


def test_the_sequence_window(codec: WireCodec, clock: FakeClock) -> None:
    seen = tracker(clock)

    def take(seq: int) -> bool:
        return seen.is_new(
            codec.decode(codec.encode(BusDataMessage(source="s"), sender="b", seq=seq))
        )

    assert take(100)  # the first number taken from a sender...
    assert not take(99)  # ... and the ones before it count as taken
    assert take(103)  # a jump: 101 and 102 may still come, once
    assert take(101)
    assert not take(101)
    assert take(103 + SEQ_WINDOW)
    assert take(103 + SEQ_WINDOW - 1)  # skipped by the jump, within the window
    assert not take(102)  # skipped too, but more than SEQ_WINDOW behind now
    assert take(2**63)  # a jump of any size
    assert not take(2**63 - SEQ_WINDOW)
    assert seen.replayed == 4


def test_a_sender_is_forgotten_once_its_messages_are_stale(
    codec: WireCodec, clock: FakeClock
) -> None:
    seen = tracker(clock)
    data = codec.encode(BusDataMessage(source="s"), sender="b/1", seq=1)
    assert seen.is_new(codec.decode(data))
    clock.now += WINDOW + 1
    other = codec.encode(BusDataMessage(source="s"), sender="c/1", seq=1)
    assert seen.is_new(codec.decode(other))
    assert list(seen._windows) == ["c/1"]
    assert not seen.is_new(codec.decode(data))  # forgotten, and refused for its age
    assert seen.replayed == 1


def test_unsigned_messages_and_codecs_without_keys_are_not_checked(clock: FakeClock) -> None:
    seen = tracker(clock)
    unsigned = WireCodec()
    data = unsigned.encode(BusDataMessage(source="s"), sender="b/1", seq=1)
    assert seen.is_new(unsigned.decode(data))
    assert seen.is_new(unsigned.decode(data))  # dedupe 0: taken again, counted
    signed = WireCodec(signing_keys=KEYS, clock=clock).encode(
        BusDataMessage(source="s"), sender="c/1", seq=1
    )
    assert seen.is_new(unsigned.decode(signed))  # not verified here: key_id is None
    assert seen.is_new(unsigned.decode(signed))
    assert (seen.replayed, seen.duplicates) == (0, 2)


def test_a_loss_of_any_sender_is_not_counted_again_as_a_gap(
    codec: WireCodec, clock: FakeClock
) -> None:
    seen = SequenceTracker(dedupe=0, logger=logging.getLogger("anybus.test"), owner="r")

    def take(sender: str, seq: int) -> None:
        seen.is_new(codec.decode(codec.encode(BusDataMessage(source="s"), sender=sender, seq=seq)))

    take("a", 1)
    take("b", 1)
    seen.report_missed(5, None, any_sender=True)  # a trimmed stream: 5 of any sender lost
    take("a", 4)
    take("b", 5)
    assert (seen.gaps, seen.missed) == (1, 5)
    take("a", 6)  # after the loss: a jump counts
    assert (seen.gaps, seen.missed) == (2, 6)


# --- the buses, against real servers ------------------------------------------------------


AnyNetworkBus = RedisBus | RedisStreamBus | PostgresBus


class Network:
    """One kind of bus on a fresh channel, and a raw client that captures what goes over it
    and publishes bytes again, as an attacker with write access would."""

    def __init__(self, kind: str, redis_url: str, postgres_dsn: str | None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.dsn = postgres_dsn
        self.channel = unique_channel() if kind == "postgres" else unique_name()
        self.captured: list[bytes] = []  # pub/sub: what the raw subscriber heard
        self._heard = anyio.Event()
        self._client: RedisClient | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._replays = 0

    def bus(self, name: str, codec: WireCodec | None, **options: Any) -> AnyNetworkBus:
        if self.kind == "pubsub":
            return RedisBus(
                self.redis_url, channel=self.channel, name=name, codec=codec, **options
            )
        if self.kind == "stream":
            return RedisStreamBus(
                self.redis_url, stream=self.channel, name=name, codec=codec, **options
            )
        assert self.dsn is not None
        return PostgresBus(self.dsn, channel=self.channel, name=name, codec=codec, **options)

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Network]:
        if self.kind == "postgres":
            assert self.dsn is not None
            connect = partial(psycopg.connect, self.dsn, autocommit=True)
            self._conn = await to_thread.run_sync(connect)
            try:
                yield self
            finally:
                await to_thread.run_sync(self._conn.close)
            return
        settings = RedisSettings.from_url(self.redis_url)
        channels = [self.channel] if self.kind == "pubsub" else []
        client = await RedisClient.create(
            settings, name="anybus-test-tap", channels=channels, on_message=self._hear
        )
        self._client = client
        try:
            await client.ping()
            if self.kind == "pubsub":  # wait until the server has the subscription
                with fail_after(TIMEOUT):
                    while not await self._subscribed():  # noqa: ASYNC110 - the server's state
                        await anyio.sleep(0.01)
            yield self
        finally:
            if self.kind == "stream":
                await client.command("DEL", self.channel)
            await client.close()

    def _hear(self, payload: bytes) -> None:
        self.captured.append(payload)
        self._heard.set()
        self._heard = anyio.Event()

    async def _subscribed(self) -> bool:
        assert self._client is not None
        counts = await self._client.command("PUBSUB", "NUMSUB", self.channel)
        return bool(counts[self.channel.encode()])

    async def payloads(self) -> list[bytes]:
        """Every payload that went over the channel so far, in order."""
        if self.kind == "pubsub":
            return list(self.captured)
        if self.kind == "stream":
            assert self._client is not None
            entries = await self._client.command("XRANGE", self.channel, "-", "+")
            return [dict(fields)[b"m"] for fields in entries.values()]
        rows = await self._sql(
            "SELECT body FROM anybus.messages WHERE channel = %s ORDER BY id", [self.channel]
        )
        return [bytes(row[0]) for row in rows]

    async def captured_payload(self, codec: WireCodec, message: BusMessage) -> bytes:
        """The bytes ``message`` went over the channel as (pub/sub: waits until heard)."""
        while True:
            heard = self._heard
            for payload in await self.payloads():
                try:
                    if codec.decode(payload).message.id == message.id:
                        return payload
                except MessageRejected:
                    continue
            if self.kind != "pubsub":
                raise AssertionError(f"{message} was not stored")
            await heard.wait()

    async def publish_again(self, payload: bytes) -> None:
        """Publish ``payload`` again, by hand."""
        self._replays += 1
        if self.kind == "pubsub":
            assert self._client is not None
            await self._client.publish(self.channel, payload)
        elif self.kind == "stream":
            assert self._client is not None
            await self._client.command("XADD", self.channel, "*", "m", payload)
        else:
            await self._sql(
                "SELECT anybus.publish(%s, 'mallory', %s::bigint[], %s::bytea[])",
                [self.channel, [self._replays], [payload]],
            )

    async def _sql(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        conn = self._conn
        assert conn is not None

        def work() -> list[tuple[Any, ...]]:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

        return await to_thread.run_sync(work)


@pytest.fixture(params=KINDS)
def network(request: pytest.FixtureRequest, redis_url: str) -> Network:
    kind = str(request.param)
    dsn = request.getfixturevalue("postgres_dsn") if kind == "postgres" else None
    return Network(kind, redis_url, dsn)


@pytest.mark.anyio
@pytest.mark.parametrize("within_dedupe", [True, False], ids=["in-dedupe", "after-dedupe"])
async def test_a_captured_signed_message_published_again_is_refused_as_replayed(
    network: Network, within_dedupe: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus")
    codec = WireCodec(signing_keys=KEYS)
    received = RecordingSubscriber("r")
    # dedupe=1: the message is out of the dedupe window once the next one came.
    dedupe = 100 if within_dedupe else 1
    async with (
        network.opened(),
        network.bus("receiver", codec, dedupe=dedupe) as receiver,
        network.bus("sender", codec) as sender,
    ):
        await receiver.subscribe(received)
        sent = [BusDataMessage(source="t") for _ in range(1 if within_dedupe else 4)]
        for message in sent:
            await sender.send(message)
        with fail_after(TIMEOUT):
            await received.wait_for_count(len(sent))
            payload = await network.captured_payload(codec, sent[0])
        await network.publish_again(payload)
        await network.publish_again(payload)
        # What is published after the replays is read after them.
        await sender.send(after := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: after in seen)
        stats = receiver.transport_statistics()
    assert [m.id for m in received.messages] == [m.id for m in [*sent, after]]
    assert (stats.replayed, stats.duplicates, stats.rejected) == (2, 0, {"replayed": 2})
    lines = [r.getMessage() for r in caplog.records if "as replayed" in r.getMessage()]
    assert len(lines) == 1  # the second within the log interval: counted, not logged
    assert lines[0].startswith("rejected 1 message(s) as replayed so far")
    assert f"from {sender.instance!r}: a number taken before" in lines[0]


@pytest.mark.anyio
async def test_a_stale_signed_message_is_refused_as_replayed(network: Network) -> None:
    codec = WireCodec(signing_keys=KEYS)
    behind = WireCodec(signing_keys=KEYS, clock=lambda: time.time() - WINDOW - 60)
    ahead = WireCodec(signing_keys=KEYS, clock=lambda: time.time() + WINDOW + 60)
    received = RecordingSubscriber("r")
    async with (
        network.opened(),
        network.bus("receiver", codec) as receiver,
        network.bus("behind", behind) as sender_behind,
        network.bus("ahead", ahead) as sender_ahead,
        network.bus("sender", codec) as sender,
    ):
        await receiver.subscribe(received)
        await sender_behind.send(BusDataMessage(source="behind"))
        await sender_ahead.send(BusDataMessage(source="ahead"))
        await sender.send(after := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: after in seen)
        stats = receiver.transport_statistics()
    assert [m.id for m in received.messages] == [after.id]
    # On pub/sub, the probes the skewed buses publish to confirm their subscriptions too.
    replayed = 2 if network.kind != "pubsub" else max(2, stats.replayed)
    assert (stats.replayed, stats.rejected) == (replayed, {"replayed": replayed})


@pytest.mark.anyio
async def test_legit_traffic_and_a_restarted_sender_pass(network: Network) -> None:
    codec = WireCodec(signing_keys=KEYS)
    received = RecordingSubscriber("r")
    sent = [BusDataMessage(source="t") for _ in range(60)]
    async with network.opened(), network.bus("receiver", codec) as receiver:
        await receiver.subscribe(received)
        for run in range(3):  # the same name thrice: a new incarnation, numbered from 1 again
            async with network.bus("sender", codec) as sender, anyio.create_task_group() as tg:
                for message in sent[run * 20 : run * 20 + 20]:
                    tg.start_soon(sender.send, message)
            with fail_after(TIMEOUT):
                await received.wait_for_count(run * 20 + 20)
        stats = receiver.transport_statistics()
    assert sorted(m.id for m in received.messages) == sorted(m.id for m in sent)
    assert (stats.replayed, stats.duplicates, stats.rejected) == (0, 0, {})


@pytest.mark.anyio
@pytest.mark.parametrize("network", ["stream", "postgres"], indirect=True)  # pub/sub: at most once
async def test_a_redelivery_to_a_restarted_receiver_is_taken_and_a_replay_then_is_not(
    network: Network,
) -> None:
    codec = WireCodec(signing_keys=KEYS)
    stuck = RecordingSubscriber("r", handler=lambda message: anyio.sleep_forever())
    again = RecordingSubscriber("r")
    async with network.opened(), network.bus("sender", codec) as sender:
        async with network.bus("receiver", codec, exit_drain=0.1) as receiver:
            await receiver.subscribe(stuck)
            await sender.send(message := BusDataMessage(source="t"))
            with fail_after(TIMEOUT):
                await stuck.wait_for_count(1)
        # Never handled: not acknowledged, so the next run of the name reads it again, as
        # soon as it runs: subscribed before then.
        receiver = network.bus("receiver", codec)
        await receiver.subscribe(again)
        async with receiver:
            with fail_after(TIMEOUT):
                await again.wait_for_count(1)
                payload = await network.captured_payload(codec, message)
            await network.publish_again(payload)  # but a copy, in that run, is a replay
            await sender.send(after := BusDataMessage(source="t"))
            with fail_after(TIMEOUT):
                await again.wait_for(lambda seen: after in seen)
            stats = receiver.transport_statistics()
    assert [m.id for m in again.messages] == [message.id, after.id]
    assert (stats.replayed, stats.duplicates) == (1, 0)


@pytest.mark.anyio
async def test_unsigned_traffic_is_as_before(network: Network) -> None:
    received = RecordingSubscriber("r")
    async with (
        network.opened(),
        network.bus("receiver", None) as receiver,
        network.bus("sender", None) as sender,
    ):
        await receiver.subscribe(received)
        await sender.send(message := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for_count(1)
            payload = await network.captured_payload(WireCodec(), message)
        await network.publish_again(payload)
        await sender.send(after := BusDataMessage(source="t"))
        with fail_after(TIMEOUT):
            await received.wait_for(lambda seen: after in seen)
        stats = receiver.transport_statistics()
    # RedisBus (dedupe off by default) delivers a repeat again; the durable buses drop it.
    repeats = [message.id] if network.kind == "pubsub" else []
    assert [m.id for m in received.messages] == [message.id, *repeats, after.id]
    assert (stats.replayed, stats.duplicates, stats.rejected) == (0, 1, {})
