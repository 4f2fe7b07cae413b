"""Talking to Redis with the bare glide client: W6's client ceiling, and cleaning up after a run.

``python -m anybus._bench.network --impl raw-glide`` runs :func:`raw_throughput`; the bus
workers use the rest.
"""

from __future__ import annotations

import gc
from time import perf_counter
from typing import Any

import anyio
from glide import GlideClient, GlideClientConfiguration, NodeAddress, ServerCredentials

from ..redis import RedisBus, RedisSettings, RedisStreamBus
from ._common import Result, Tally
from ._network_common import (
    RAW_PAYLOAD_BYTES,
    READY_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    network_throughput_result,
    unique_key,
)

__all__ = ["delete_keys", "glide_client", "raw_throughput", "wait_done", "wait_for_subscribers"]

NetworkBus = RedisBus | RedisStreamBus


def _noop() -> None:
    pass


async def glide_client(
    url: str, *, name: str, channel: str | None = None, on_message: Any = None
) -> GlideClient:
    """A glide client for ``url``; subscribed to ``channel`` with ``on_message`` if given.

    Created eagerly (it connects before returning): fine here, where nothing else runs yet.
    """
    settings = RedisSettings.from_url(url)
    subscriptions = None
    if channel is not None:
        subscriptions = GlideClientConfiguration.PubSubSubscriptions(
            channels_and_patterns={GlideClientConfiguration.PubSubChannelModes.Exact: {channel}},
            callback=on_message,
            context=None,
        )
    credentials = None
    if settings.password is not None:
        credentials = ServerCredentials(password=settings.password, username=settings.username)
    configuration = GlideClientConfiguration(
        [NodeAddress(settings.host, settings.port)],
        use_tls=settings.tls,
        credentials=credentials,
        database_id=settings.database or None,
        client_name=name,
        pubsub_subscriptions=subscriptions,
    )
    return await GlideClient.create(configuration)


async def delete_keys(url: str, *keys: str) -> None:
    """Delete the keys a run created (streams; pub/sub channels leave none)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        client = await glide_client(url, name="anybus-bench-cleanup")
        try:
            await client.custom_command(["DEL", *keys])
        finally:
            await client.close()


async def wait_for_subscribers(client: GlideClient, channel: str, count: int) -> None:
    """Wait (round trip by round trip, no sleeping) until ``count`` clients subscribe."""
    with anyio.fail_after(READY_TIMEOUT):
        while True:
            reply = await client.custom_command(["PUBSUB", "NUMSUB", channel])
            # RESP3 answers a map {channel: count}, RESP2 a flat list [channel, count].
            found = next(iter(reply.values())) if isinstance(reply, dict) else reply[1]
            if int(found) >= count:
                return


async def wait_done(done: anyio.Event, tally: Tally, receiver: NetworkBus | None) -> None:
    """Wait until every delivery arrived; fail (not measure) if none arrives for a while.

    The wait wakes up once every ``STALL_TIMEOUT`` seconds at most, to check for progress.
    """
    while True:
        remaining = tally.remaining
        with anyio.move_on_after(STALL_TIMEOUT):
            await done.wait()
            return
        if tally.remaining == remaining:
            break
    stats = "" if receiver is None else f"; receiver: {receiver.transport_statistics()}"
    raise RuntimeError(
        f"{tally.remaining:,} deliveries still missing, none for {STALL_TIMEOUT:g} s{stats}"
    )


async def raw_throughput(workload: str, backend: str, url: str, n_messages: int) -> Result:
    """W6's client ceiling: one glide client publishes the payloads back to back, each
    ``await``-ed as a bus's ``send()`` does, and a second one, subscribed, counts them.

    No bus, no encoding, no dispatch: the fastest a bus that awaits one ``PUBLISH`` per send
    can go with this client. ``subscribers`` is 1 whatever the workload.
    """
    key = unique_key(f"{workload}-raw")
    payload = b"x" * RAW_PAYLOAD_BYTES
    tally = Tally(0, _noop)

    def on_message(message: Any, context: Any) -> None:  # glide calls it on the loop's thread
        tally.hit()

    publisher = await glide_client(url, name="anybus-bench-raw-pub")
    subscriber = await glide_client(
        url, name="anybus-bench-raw-sub", channel=key, on_message=on_message
    )
    try:
        await wait_for_subscribers(publisher, key, 1)
        primed = anyio.Event()
        tally = Tally(1, primed.set)
        await publisher.publish(payload, key)
        await wait_done(primed, tally, None)

        done = anyio.Event()
        tally = Tally(n_messages, done.set)
        gc.collect()
        cpu = CpuClock()
        cpu.start()
        started_at = perf_counter()
        for _ in range(n_messages):
            await publisher.publish(payload, key)
        sent_at = perf_counter()
        await wait_done(done, tally, None)
        cpu_used = cpu.stop()
        seconds = tally.finished_at - started_at
    finally:
        with anyio.CancelScope(shield=True):
            await publisher.close()
            await subscriber.close()
    return network_throughput_result(
        "raw-glide",
        backend,
        workload,
        messages=n_messages,
        subscribers=1,
        seconds=seconds,
        send_seconds=sent_at - started_at,
        payload_bytes=RAW_PAYLOAD_BYTES,
        cpu=cpu_used,
    )
