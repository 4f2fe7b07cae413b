"""RedisStreamBus: a bus's reader is not woken to read the bus's own entries, and what the
stream loses is still counted exactly.

A bus drops its own messages when it reads them; its stores move its consumer group past
them instead, when the group had read everything before (``anybus/redis/_fence.py``). The
group's read counter then changes behind the reader's back, by a count kept beside the
stream, which the loss accounting takes into account.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

pytest.importorskip("glide")

from anybus import BusDataMessage, BusMessage, WireCodec
from anybus.redis import RedisStreamBus
from anybus.redis._base import client_name
from anybus.redis._client import RedisClient, RedisSettings
from anybus.redis._fence import FENCED_ADD, same_slot_key, skipped_key
from anybus.redis._stream_reads import create_group

from .redis_support import RedisServer, private_server, unique_name
from .test_redis_streams import _command_calls

pytestmark = pytest.mark.anyio

TIMEOUT = 30


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from private_server()


async def group_fields(admin: RedisClient, stream: str, group: str) -> dict[str, object]:
    for entry in await admin.command("XINFO", "GROUPS", stream):
        items = (
            list(entry.items())
            if isinstance(entry, dict)
            else list(zip(entry[::2], entry[1::2], strict=True))
        )
        fields = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in items}
        name = fields["name"]
        if (name.decode() if isinstance(name, bytes) else name) == group:
            return fields
    raise AssertionError(f"no group {group!r} on {stream!r}")


async def reader_blocked(admin: RedisClient, bus: RedisStreamBus) -> bool:
    """Whether ``bus``'s reader is blocked in a read on the server."""
    listing = await admin.command("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return any(
        f"name={client_name('read', bus.instance)} " in line
        and "cmd=xreadgroup" in line
        and " flags=b" in line
        for line in text.splitlines()
    )


async def wait_for_a_blocked_reader(admin: RedisClient, bus: RedisStreamBus) -> None:
    blocked = False
    with anyio.fail_after(TIMEOUT):
        while not blocked:  # a round trip at a time: what the server does signals nothing
            blocked = await reader_blocked(admin, bus)


async def test_a_bus_alone_on_its_stream_is_not_woken_by_its_own_sends(
    server: RedisServer,
) -> None:
    stream, sent = unique_name(), 50
    admin = await RedisClient.create(RedisSettings.from_url(server.url), name="anybus-admin")
    try:
        async with RedisStreamBus(server.url, stream=stream, name="alone") as bus:
            await wait_for_a_blocked_reader(admin, bus)
            await admin.command("CONFIG", "RESETSTAT")
            for _ in range(sent):
                await bus.send(BusDataMessage(source="t"))
            calls = await _command_calls(admin)
            fields = await group_fields(admin, stream, "alone")
            skipped = await admin.command("GET", skipped_key(stream, "alone", cluster=False))
            stats = bus.transport_statistics()
            own = len(bus.transport._own._payloads)  # type: ignore[attr-defined]
        length = int(str(await admin.command("XLEN", stream)))
    finally:
        await admin.close()
    assert length == sent
    # Each send used to wake the reader, which read the entry, dropped it and read again
    # (a blocking read also ends every 0.5 s with nothing).
    assert calls.get("xreadgroup", 0) < sent // 5, calls
    assert (fields["lag"], fields["pending"]) == (0, 0)
    assert int(skipped) == sent
    assert (stats.missed, stats.gaps, stats.duplicates) == (0, 0, 0)
    assert own == 0  # no echo will come to drop them: the payloads are forgotten at once


async def test_a_trim_during_a_blocking_read_is_counted_exactly_after_own_sends(
    server: RedisServer,
) -> None:
    """The case the reader's own count of its group's reads is for: a blocking read that
    comes back full, the stream trimmed past the group meanwhile. The group was moved past
    three of its bus's own entries first, which its reader did not see happen."""
    stream, burst, kept = unique_name(), 20, 5
    admin = await RedisClient.create(RedisSettings.from_url(server.url), name="anybus-admin")
    # One entry per node: MAXLEN trims to exactly what it is given.
    await admin.command("CONFIG", "SET", "stream-node-max-entries", "1")
    codec = WireCodec()
    others = [BusDataMessage(source="x") for _ in range(burst)]
    payloads = [codec.encode(m, sender="other", seq=n) for n, m in enumerate(others, 1)]
    add_all = (
        f"for i = 1, #ARGV do redis.call('XADD', KEYS[1], 'MAXLEN', '=', {kept}, '*', 'm', "
        f"ARGV[i]) end return 1"
    )
    received: list[BusMessage] = []
    arrived = anyio.Event()

    async def handler(message: BusMessage) -> None:
        if message.source != "x":
            return  # the bus's own sends, delivered to it directly
        received.append(message)
        if len(received) == kept:
            arrived.set()

    try:
        bus = RedisStreamBus(server.url, stream=stream, name="receiver", max_len=kept)
        await bus.subscribe(handler)
        async with bus:
            await wait_for_a_blocked_reader(admin, bus)
            for _ in range(3):
                await bus.send(BusDataMessage(source="t"))
            skipped = await admin.command("GET", skipped_key(stream, "receiver", cluster=False))
            assert int(skipped) == 3  # moved past, not read
            await wait_for_a_blocked_reader(admin, bus)  # the burst comes during a read
            # All at once: the blocked read is served after the script, from what is left.
            await admin.command("EVAL", add_all, "1", stream, *payloads)
            with anyio.fail_after(TIMEOUT):
                await arrived.wait()
                await bus.wait_idle()
            stats = bus.transport_statistics()
    finally:
        await admin.close()
    assert [m.id for m in received] == [m.id for m in others[-kept:]]
    assert stats.missed == burst - kept


async def test_the_cli_forgets_a_group_with_its_count_of_skipped_entries(
    server: RedisServer,
) -> None:
    from anybus._cli._common import forget_group

    stream = unique_name()
    settings = RedisSettings.from_url(server.url)
    admin = await RedisClient.create(settings, name="anybus-admin")
    key = skipped_key(stream, "gone", cluster=False)
    try:
        async with RedisStreamBus(server.url, stream=stream, name="gone") as bus:
            await wait_for_a_blocked_reader(admin, bus)
            await bus.send(BusDataMessage(source="t"))
        assert int(await admin.command("GET", key)) == 1
        await forget_group(admin, settings, stream, "gone")
        assert await admin.command("XINFO", "GROUPS", stream) == []
        assert await admin.command("EXISTS", key) == 0
    finally:
        await admin.close()


async def test_the_store_moves_the_group_only_past_its_own_batch_under_its_lease(
    server: RedisServer,
) -> None:
    """The store's script itself: an entry of another sender the group has not read, or the
    name's lease in another's hands, and the group stays where it is."""
    stream, group = unique_name(), "g"
    admin = await RedisClient.create(RedisSettings.from_url(server.url), name="anybus-admin")
    lease = same_slot_key(stream, f":anybus:lease:{group}", cluster=False)
    skipped = skipped_key(stream, group, cluster=False)
    fence = same_slot_key(stream, ":anybus:sent:me", cluster=False)
    number = 0

    async def store(token: str) -> int:
        nonlocal number
        number += 1
        keys = [stream, fence, skipped, lease]
        args: list[str | bytes] = [str(number), "100", "60000", str(number), group, token]
        reply = await admin.command("EVAL", FENCED_ADD, "4", *keys, *args, b"mine")
        return int(reply[2])

    try:
        await create_group(admin, stream, group, "$", skipped=skipped)
        await admin.command("SET", lease, "mine")
        await admin.command("XADD", stream, "*", "m", b"another's")
        assert await store("mine") == 0  # the group has not read the other's entry
        fields = await group_fields(admin, stream, group)
        assert (fields["lag"], fields["last-delivered-id"]) == (2, b"0-0")
        await admin.command("XREADGROUP", "GROUP", group, "c", "STREAMS", stream, ">")
        assert await store("theirs") == 0  # read to the end, but the name is another's
        assert await admin.command("EXISTS", skipped) == 0
        await admin.command("XREADGROUP", "GROUP", group, "c", "STREAMS", stream, ">")
        assert await store("mine") == 1
        fields = await group_fields(admin, stream, group)
        assert (fields["lag"], fields["entries-read"]) == (0, 4)
        assert int(await admin.command("GET", skipped)) == 1
    finally:
        await admin.close()
