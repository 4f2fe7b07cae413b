"""The client floors of W6 and W7: the bare glide client, no bus, on asyncio or trio.

Usage::

    python benchmarks/anybus_bench/bare_glide.py --workload W6-single --backend trio
    python benchmarks/anybus_bench/bare_glide.py --workload W7 --backend asyncio+trio

with the Python where anybus is installed (for its workload sizes and URL parsing;
``benchmarks/run.py`` runs it so); ``--quick``, ``--messages N`` (W6) and ``--redis-url URL``
as for anybus's own worker ``python -m anybus._bench.network``. Prints one JSON result line of
the same shape as that worker's. The clients are configured as anybus's Redis adapter
(``anybus/redis/_client.py``) configures its own.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from glide import (
    AdvancedGlideClientConfiguration,
    BackoffStrategy,
    GlideClient,
    GlideClientConfiguration,
    NodeAddress,
    ServerCredentials,
)

from anybus._bench._common import Result, Tally, emit
from anybus._bench._network_common import (
    RAW_PAYLOAD_BYTES,
    READY_LINE,
    READY_TIMEOUT,
    ROUND_TRIP_TIMEOUT,
    STALL_TIMEOUT,
    CpuClock,
    backend_pair,
    network_args,
    network_throughput_result,
    round_trip_result,
    unique_key,
)
from anybus.redis import RedisSettings, configure_glide_logging

IMPL = "raw-glide"
#: This file, which a W7 pinger runs again (by path) as its ponger.
SCRIPT = str(__file__)
#: W7's payloads: a kind byte, the round trip's number, padding to ``RAW_PAYLOAD_BYTES``. A
#: pong carries the number of the ping it answers.
PING, PONG, STOP = b"i", b"o", b"s"


def _noop() -> None:
    pass


async def glide_client(
    url: str, *, name: str, channel: str | None = None, on_message: Any = None
) -> GlideClient:
    """A glide client for ``url``; subscribed to ``channel`` with ``on_message`` if given.

    Configured as anybus's adapter (``RedisClient.create``) configures a standalone client:
    created lazily, with the same request timeout, reconnect strategy and resubscription
    interval; then pinged, so that it is connected before anything is measured.
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
        request_timeout=int(settings.request_timeout * 1000),
        reconnect_strategy=BackoffStrategy(
            num_of_retries=settings.reconnect_steps,
            factor=max(1, int(settings.reconnect_first_delay * 1000)),
            exponent_base=settings.reconnect_growth,
            jitter_percent=settings.reconnect_jitter,
        ),
        lazy_connect=True,
        advanced_config=AdvancedGlideClientConfiguration(
            pubsub_reconciliation_interval=max(1, int(settings.resubscribe_interval * 1000))
        ),
    )
    client = await GlideClient.create(configuration)
    with anyio.fail_after(READY_TIMEOUT):
        await client.ping()
    return client


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
        IMPL,
        backend,
        workload,
        messages=n_messages,
        subscribers=1,
        seconds=seconds,
        send_seconds=sent_at - started_at,
        payload_bytes=RAW_PAYLOAD_BYTES,
        cpu=cpu_used,
    )


# --- W7: round trips between two processes ------------------------------------------------


def payload(kind: bytes, number: int) -> bytes:
    """A W7 message of ``RAW_PAYLOAD_BYTES``: ``kind``, then ``number``, then padding."""
    return (kind + b"%08d" % number).ljust(RAW_PAYLOAD_BYTES, b"x")


class PongCatcher:
    """The pinger's subscription callback: notes when the pong to the ping in flight arrives."""

    def __init__(self) -> None:
        self.expected = b""  # the pong that answers the ping in flight
        self.arrived = anyio.Event()
        self.arrived_at = 0.0
        self.mismatched = 0  # pongs that did not answer the ping in flight (none expected)

    def on_message(self, message: Any, context: Any) -> None:
        """glide's callback, on the event loop's thread: note the time of the awaited pong."""
        data: bytes = message.message
        if not data.startswith(PONG):
            return  # our own pings: both processes subscribe to the one channel
        if data != self.expected:
            self.mismatched += 1
            return
        self.arrived_at = perf_counter()
        self.arrived.set()


def lines_of(process: Process) -> Callable[[], Awaitable[str]]:
    """A reader of ``process``'s stdout, one line (without its end) per call."""
    assert process.stdout is not None
    buffered = BufferedByteReceiveStream(process.stdout)

    async def next_line() -> str:
        return (await buffered.receive_until(b"\n", 1 << 16)).decode().strip()

    return next_line


async def pinger(backend: str, url: str, round_trips: int, warmup: int) -> Result:
    """W7's floor, step for step as anybus's ``network.pinger``, with two glide clients per
    process and no bus: each round trip publishes a ping with one client; the ponger's
    subscription callback hands it to a task that publishes the pong; the pinger's callback
    notes the time. The sample runs from just before the ping's ``publish`` to that callback.

    Both processes use one channel, as a ``RedisBus`` does, so each also receives its own
    messages (and ignores them). ``warmup`` round trips are not measured, then
    ``round_trips`` are.
    """
    ping_backend, pong_backend = backend_pair(backend)
    key = unique_key("W7-raw")
    pings = [payload(PING, i) for i in range(warmup + round_trips)]
    catcher = PongCatcher()
    samples: list[float] = []
    command = [
        sys.executable,
        SCRIPT,
        "--workload=W7",
        f"--backend={pong_backend}",
        f"--redis-url={url}",
        "--role=ponger",
        f"--channel={key}",
    ]
    publisher = await glide_client(url, name="anybus-bench-w7-raw-pinger-pub")
    subscriber = await glide_client(
        url, name="anybus-bench-w7-raw-pinger-sub", channel=key, on_message=catcher.on_message
    )
    try:
        await wait_for_subscribers(publisher, key, 1)
        async with await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stderr=None
        ) as process:
            try:
                next_line = lines_of(process)
                with anyio.fail_after(READY_TIMEOUT):
                    ready = await next_line()
                if ready != READY_LINE:
                    raise RuntimeError(f"the ponger said {ready!r} instead of {READY_LINE!r}")
                gc.collect()
                for i, ping in enumerate(pings):
                    catcher.expected = PONG + ping[1:]
                    catcher.arrived = arrived = anyio.Event()
                    sent_at = perf_counter()
                    await publisher.publish(ping, key)
                    with anyio.fail_after(ROUND_TRIP_TIMEOUT):
                        await arrived.wait()
                    if i >= warmup:
                        samples.append(catcher.arrived_at - sent_at)
                await publisher.publish(payload(STOP, 0), key)
                with anyio.fail_after(READY_TIMEOUT):
                    peer: dict[str, object] = json.loads(await next_line())
                    await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
    finally:
        with anyio.CancelScope(shield=True):
            await publisher.close()
            await subscriber.close()
    return round_trip_result(
        IMPL,
        backend,
        samples,
        warmup=warmup,
        mismatched=catcher.mismatched,
        extra={
            "pinger_backend": ping_backend,
            "ponger_backend": pong_backend,
            "answered": peer.get("answered"),
            "payload_bytes": RAW_PAYLOAD_BYTES,
        },
    )


async def ponger(backend: str, url: str, key: str) -> Result:
    """W7's other process: answer every ping with its pong until told to stop, then report.

    The callback hands each ping to the answering task through a memory stream: one ping is
    in flight at a time, so its buffer never fills.
    """
    send, receive = anyio.create_memory_object_stream[bytes](8)

    def on_message(message: Any, context: Any) -> None:  # on the event loop's thread
        data: bytes = message.message
        if not data.startswith(PONG):  # our own pongs come back too
            send.send_nowait(data)

    answered = 0
    publisher = await glide_client(url, name="anybus-bench-w7-raw-ponger-pub")
    subscriber = await glide_client(
        url, name="anybus-bench-w7-raw-ponger-sub", channel=key, on_message=on_message
    )
    try:
        with send, receive:
            # The pinger's subscription and ours.
            await wait_for_subscribers(publisher, key, 2)
            sys.stdout.write(READY_LINE + "\n")
            sys.stdout.flush()
            async for data in receive:
                if data.startswith(STOP):
                    break
                await publisher.publish(PONG + data[1:], key)
                answered += 1
    finally:
        with anyio.CancelScope(shield=True):
            await publisher.close()
            await subscriber.close()
    return {
        "impl": IMPL,
        "backend": backend,
        "workload": "W7",
        "role": "ponger",
        "answered": answered,
    }


def main() -> None:
    """Run the measurement the command line asks for and print its result line."""
    configure_glide_logging("off")
    args = network_args(__doc__ or "", impls=[IMPL], backends=["asyncio", "trio"])
    run: Callable[[], Awaitable[Result]]
    if args.workload == "W7" and args.role == "ponger":
        run = partial(ponger, args.backend, args.redis_url, args.channel)
        backend = args.backend
    elif args.workload == "W7":
        sizes = args.sizes
        run = partial(pinger, args.backend, args.redis_url, sizes.w7_round_trips, sizes.w7_warmup)
        backend = backend_pair(args.backend)[0]
    else:
        run = partial(raw_throughput, args.workload, args.backend, args.redis_url, args.messages)
        backend = args.backend
    emit(anyio.run(run, backend=backend))


if __name__ == "__main__":
    main()
