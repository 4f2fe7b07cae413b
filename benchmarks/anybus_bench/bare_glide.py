"""W6's client floor: the bare glide client, no bus, on asyncio or trio.

Usage: ``python benchmarks/anybus_bench/bare_glide.py --workload W6-single --backend trio
[--quick] [--messages N] [--redis-url URL]``, with the Python where anybus is installed (for
its workload sizes and URL parsing; ``benchmarks/run.py`` runs it so). Prints one JSON result
line, as anybus's own worker ``python -m anybus._bench.network`` does.
"""

from __future__ import annotations

import gc
from functools import partial
from time import perf_counter
from typing import Any

import anyio
from glide import GlideClient, GlideClientConfiguration, NodeAddress, ServerCredentials

from anybus._bench._common import Result, Tally, emit
from anybus._bench._network_common import (
    RAW_PAYLOAD_BYTES,
    READY_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    network_args,
    network_throughput_result,
    unique_key,
)
from anybus.redis import RedisSettings, configure_glide_logging


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


async def wait_for_subscribers(client: GlideClient, channel: str, count: int) -> None:
    """Wait (round trip by round trip, no sleeping) until ``count`` clients subscribe."""
    with anyio.fail_after(READY_TIMEOUT):
        while True:
            reply = await client.custom_command(["PUBSUB", "NUMSUB", channel])
            # RESP3 answers a map {channel: count}, RESP2 a flat list [channel, count].
            found = next(iter(reply.values())) if isinstance(reply, dict) else reply[1]
            if int(found) >= count:
                return


async def wait_done(done: anyio.Event, tally: Tally) -> None:
    """Wait until every message arrived; fail (not measure) if none arrives for a while."""
    while True:
        remaining = tally.remaining
        with anyio.move_on_after(STALL_TIMEOUT):
            await done.wait()
            return
        if tally.remaining == remaining:
            break
    raise RuntimeError(f"{tally.remaining:,} messages still missing, none for {STALL_TIMEOUT:g} s")


async def raw_throughput(workload: str, backend: str, url: str, n_messages: int) -> Result:
    """One glide client publishes the payloads back to back, each ``await``-ed as a bus's
    ``send()`` does, and a second one, subscribed, counts them.

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
        await wait_done(primed, tally)

        done = anyio.Event()
        tally = Tally(n_messages, done.set)
        gc.collect()
        cpu = CpuClock()
        cpu.start()
        started_at = perf_counter()
        for _ in range(n_messages):
            await publisher.publish(payload, key)
        sent_at = perf_counter()
        await wait_done(done, tally)
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


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    configure_glide_logging("off")
    args = network_args(__doc__ or "", impls=["raw-glide"], backends=["asyncio", "trio"])
    if args.workload == "W7":
        raise SystemExit("the bare client is measured on W6 only, not on 'W7'")
    run = partial(raw_throughput, args.workload, args.backend, args.redis_url, args.messages)
    emit(anyio.run(run, backend=args.backend))


if __name__ == "__main__":
    main()
