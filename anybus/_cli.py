"""The ``anybus`` command (the ``cli`` extra: ``pip install 'anybus[cli]'``), on click and rich.

Subcommands: ``demo``, ``pub``, ``sub`` and ``inspect``. Exit codes: 0 success, 1 a runtime
failure (Redis unreachable, a refused command), 2 bad usage. Expected failures print one line
saying what to check, never a traceback.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator
from enum import Enum
from functools import partial
from typing import Any, NoReturn, TextIO

import anyio
import click
from rich.console import Console
from rich.table import Table

from ._demo import run_demo
from ._exceptions import AnybusError, MessageRejected
from ._fields import decode_fields
from ._message_types import default_registry
from ._messages import BusMessage, BusSystemMessage
from ._version import __version__
from ._wire import WireCodec

__all__ = ["cli", "main"]

BACKENDS = ("asyncio", "trio")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_SOURCE = "anybus-cli"


class _Failure(click.ClickException):
    """A runtime failure: one line on stderr, exit code 1."""

    exit_code = 1


class _StderrHandler(logging.Handler):
    """Logs to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _flatten(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _flatten(inner)
    else:
        yield error


def _run(ctx: click.Context, function: Callable[[], Awaitable[object]]) -> Any:
    """Run ``function`` on the chosen backend; turn anybus and connection errors into exit 1."""
    backend: str = ctx.obj["backend"]
    try:
        return anyio.run(function, backend=backend)
    except ModuleNotFoundError as exc:
        if exc.name != backend:
            raise
        raise _Failure(f"{backend} is not installed: pip install 'anybus[{backend}]'") from None
    except (AnybusError, OSError, BaseExceptionGroup) as exc:
        for inner in _flatten(exc):
            if isinstance(inner, click.ClickException):
                raise inner from None
            if isinstance(inner, (AnybusError, OSError)):
                text = " ".join(str(inner).split())
                if "check" not in text:
                    text += " (check the url, and that redis is running)"
                raise _Failure(text) from None
        raise


def _redis() -> Any:
    try:
        from . import redis
    except ModuleNotFoundError:
        raise _Failure(
            "this command needs redis support: pip install 'anybus[redis,cli]'"
        ) from None
    return redis


def _settings(url: str) -> Any:
    try:
        return _redis().RedisSettings.from_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None


def _console() -> Console:
    # Bound to the stream current at the start of the command (so that tests may run commands
    # in threads), with no markup interpretation of message contents.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="anybus", message="%(prog)s %(version)s")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="asyncio",
    show_default=True,
    help="event loop to run on",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="level of anybus's own log lines, on stderr",
)
@click.pass_context
def cli(ctx: click.Context, backend: str, log_level: str) -> None:
    """anybus, a pub/sub worker bus for asyncio and trio."""
    ctx.ensure_object(dict)
    ctx.obj["backend"] = backend
    logger = logging.getLogger("anybus")
    logger.setLevel(log_level.upper())
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


# --- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--backend",
    "demo_backend",
    type=click.Choice([*BACKENDS, "both"]),
    default=None,
    help="event loop(s) to run on (default: the global --backend)",
)
@click.pass_context
def demo(ctx: click.Context, demo_backend: str | None) -> None:
    """Run a runner and two workers on the in-memory bus; a cancel overtakes queued jobs."""
    chosen = demo_backend or ctx.obj["backend"]
    backends = BACKENDS if chosen == "both" else (chosen,)
    out: TextIO = sys.stdout
    for index, backend in enumerate(backends):
        if index:
            out.write("\n")
        ctx.obj["backend"] = backend
        _run(ctx, partial(run_demo, out, backend=backend))


# --- pub ------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _build_message(type_name: str, fields: dict[str, Any]) -> BusMessage:
    """A new message of the registered type ``type_name``, checked against its annotations."""
    try:
        cls = default_registry.lookup(type_name)
    except LookupError as exc:
        known = ", ".join(default_registry)
        raise click.BadParameter(f"{exc}; registered: {known}", param_hint="TYPE") from None
    fields.setdefault("source", DEFAULT_SOURCE)
    try:
        checked = decode_fields(cls, fields, message_id="-", name="-")
    except MessageRejected as exc:
        raise click.UsageError(f"invalid fields: {exc.detail}") from None
    # A fresh copy, so the message gets an id and a name of its own.
    return dataclasses.replace(checked)


def _read_fields(assignments: tuple[str, ...]) -> dict[str, Any]:
    if assignments == ("-",):
        try:
            document = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise click.UsageError(f"stdin is not a JSON document: {exc}") from None
        if not isinstance(document, dict):
            raise click.UsageError(f"stdin must hold a JSON object, got {type(document).__name__}")
        return document
    fields: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key:
            raise click.BadParameter(
                f"expected field=value, got {assignment!r}", param_hint="FIELDS"
            )
        fields[key] = _parse_value(value)
    return fields


def _connect_timeout() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0.0, min_open=True),
        default=5.0,
        show_default=True,
        help="seconds to wait for redis",
    )


@cli.command()
@click.argument("url")
@click.argument("type_name", metavar="TYPE")
@click.argument("fields", nargs=-1, metavar="[FIELD=VALUE ...|-]")
@click.option("--channel", required=True, help="the pub/sub channel (or, with --stream, stream)")
@click.option("--stream", is_flag=True, help="publish on a RedisStreamBus instead of a RedisBus")
@_connect_timeout()
@click.pass_context
def pub(
    ctx: click.Context,
    url: str,
    type_name: str,
    fields: tuple[str, ...],
    channel: str,
    stream: bool,
    connect_timeout: float,
) -> None:
    """Publish one message of a registered TYPE, built from FIELD=VALUE pairs (values parse
    as JSON when they can, else are strings) or from a JSON object on stdin (``-``)."""
    message = _build_message(type_name, _read_fields(fields))
    settings = _settings(url)
    redis = _redis()

    name = f"anybus-cli-{secrets.token_hex(4)}"

    async def publish() -> Any:
        bus: Any
        if stream:
            bus = redis.RedisStreamBus(
                settings, stream=channel, name=name, connect_timeout=connect_timeout
            )
        else:
            bus = redis.RedisBus(
                settings, channel=channel, name="anybus-cli", connect_timeout=connect_timeout
            )
        async with bus:
            await bus.send(message)
            if not stream:
                # RedisBus.send() only queues the message, and leaving the bus cancels a
                # publish in flight: wait for the writer to report on it first.
                with anyio.move_on_after(connect_timeout):
                    # The bus has no event for it: poll its counters, bounded.
                    while True:
                        if _reported(bus.transport_statistics()):
                            break
                        await anyio.sleep(0.005)
        if stream:
            # The bus made itself a consumer group to read with: leave no trace of it.
            await _destroy_group(redis, settings, channel, bus.group)
        return bus.transport_statistics()

    statistics = _run(ctx, publish)
    if statistics.publish_failures or not statistics.published:
        raise _Failure(f"{message.name} was not published: redis refused it")
    where = f"stream {channel!r}" if stream else f"channel {channel!r}"
    _console().print(f"published {type_name} {message.id} on {where} at {settings.address}")


def _reported(statistics: Any) -> bool:
    return bool(statistics.published or statistics.publish_failures)


async def _destroy_group(redis: Any, settings: Any, stream: str, group: str) -> None:
    client = await redis._client.RedisClient.create(settings, name="anybus-cli-pub")
    try:
        await client.command("XGROUP", "DESTROY", stream, group)
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


# --- sub ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _fields_of(message: BusMessage) -> dict[str, Any]:
    skip = {"id", "name", "source", "target"}
    return {
        f.name: _plain(getattr(message, f.name))
        for f in dataclasses.fields(message)
        if f.name not in skip
    }


@cli.command()
@click.argument("url")
@click.option("--channel", required=True, help="the pub/sub channel to listen on")
@click.option("--types", default=None, help="comma-separated type names to show (default: all)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="exit after this many shown messages (undecodable input counts too)",
)
@_connect_timeout()
@click.pass_context
def sub(
    ctx: click.Context,
    url: str,
    channel: str,
    types: str | None,
    as_json: bool,
    count: int | None,
    connect_timeout: float,
) -> None:
    """Print each message published on a channel as it arrives, until interrupted or
    --count messages were shown. Input that does not decode is shown as undecodable."""
    wanted: set[str] | None = None
    if types is not None:
        wanted = {name.strip() for name in types.split(",") if name.strip()}
        unknown = sorted(name for name in wanted if name not in default_registry)
        if unknown:
            raise click.BadParameter(f"not registered: {', '.join(unknown)}", param_hint="--types")
    settings = _settings(url)
    redis = _redis()
    client_module = redis._client
    probe_target = redis._pubsub.PROBE_TARGET
    console = _console()
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    codec = WireCodec()
    tally = {"shown": 0, "undecodable": 0}

    def show(payload: bytes) -> bool:
        """Print one payload unless filtered out; return whether it was shown."""
        try:
            envelope = codec.decode(payload)
        except MessageRejected as exc:
            tally["undecodable"] += 1
            if as_json:
                line = {"undecodable": exc.reason, "detail": exc.detail, "size": len(payload)}
                console.print(json.dumps(line), markup=False)
            else:
                console.print(f"undecodable: {exc.reason}: {exc.detail}", markup=False)
            return True
        message = envelope.message
        if message.target == probe_target:
            if envelope.sender == me:
                confirmed.set()
            return False  # a bus proving its own subscription
        if wanted is not None and envelope.type_name not in wanted:
            return False
        record: dict[str, Any] = {
            "type": envelope.type_name,
            "source": message.source,
            "target": message.target,
            "id": message.id,
            "fields": _fields_of(message),
        }
        if as_json:
            console.print(json.dumps(record, default=str), markup=False)
        else:
            fields = " ".join(
                f"{k}={json.dumps(v, default=str)}" for k, v in record["fields"].items()
            )
            console.print(
                f"{envelope.type_name} source={message.source} target={message.target}"
                + (f" {fields}" if fields else ""),
                markup=False,
            )
        return True

    me = f"anybus-cli-sub/{secrets.token_hex(4)}"
    confirmed = anyio.Event()

    async def confirm(client: Any) -> None:
        """Publish probes until this subscription hears one (glide subscribes lazily)."""
        try:
            with anyio.fail_after(connect_timeout):
                await client.ping()
                for seq in itertools.count(1):
                    probe = BusSystemMessage(source=me, target=probe_target)
                    await client.publish(channel, codec.encode(probe, sender=me, seq=seq))
                    with anyio.move_on_after(0.5):
                        await confirmed.wait()
                        break
        except TimeoutError:
            raise _Failure(
                f"could not subscribe to {channel!r} at {settings.address} within "
                f"{connect_timeout} s (check the url, and that redis is running)"
            ) from None
        err.print(f"subscribed to channel {channel!r} at {settings.address}", markup=False)

    async def listen() -> None:
        send, receive = anyio.create_memory_object_stream[bytes](100_000)

        def on_message(payload: bytes) -> None:
            try:
                send.send_nowait(payload)
            except anyio.WouldBlock:
                tally["undecodable"] += 1  # dropped: counted, never a crash

        client = await client_module.RedisClient.create(
            settings, name="anybus-cli-sub", channels=[channel], on_message=on_message
        )
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(confirm, client)
                with send, receive:
                    async for payload in receive:
                        if show(payload):
                            tally["shown"] += 1
                            if count is not None and tally["shown"] >= count:
                                break
                task_group.cancel_scope.cancel(reason="anybus sub: --count reached")
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()

    try:
        _run(ctx, listen)
    except KeyboardInterrupt:
        pass
    finally:
        err.print(f"{tally['shown']} shown, {tally['undecodable']} undecodable", markup=False)


# --- inspect --------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _as_dict(reply: Any) -> dict[str, Any]:
    """A glide reply holding field/value pairs (a dict or a flat list) as a dict of str keys."""
    if isinstance(reply, dict):
        return {str(_text(key)): value for key, value in reply.items()}
    items = list(reply)
    return {str(_text(items[i])): items[i + 1] for i in range(0, len(items) - 1, 2)}


@cli.command()
@click.argument("url")
@click.option("--stream", default=None, help="a stream: length, groups, pending and lag")
@click.option("--channel", default=None, help="a pub/sub channel: its subscribers")
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
@click.pass_context
def inspect(
    ctx: click.Context, url: str, stream: str | None, channel: str | None, as_json: bool
) -> None:
    """Show a stream's length, consumer groups, pending entries and lag, or the number of
    subscribers on a channel."""
    if (stream is None) == (channel is None):
        raise click.UsageError("give exactly one of --stream NAME or --channel NAME")
    settings = _settings(url)
    client_module = _redis()._client

    async def query() -> dict[str, Any]:
        client = await client_module.RedisClient.create(settings, name="anybus-cli-inspect")
        try:
            await client.ping()
            if channel is not None:
                reply = _as_dict(await client.command("PUBSUB", "NUMSUB", channel))
                return {"channel": channel, "subscribers": int(reply.get(channel, 0))}
            assert stream is not None
            if not await client.command("EXISTS", stream):
                raise _Failure(f"no stream {stream!r} at {settings.address}")
            info = _as_dict(await client.command("XINFO", "STREAM", stream))
            groups = []
            for raw in await client.command("XINFO", "GROUPS", stream):
                group = _as_dict(raw)
                lag = group.get("lag")
                groups.append(
                    {
                        "name": _text(group.get("name")),
                        "consumers": group.get("consumers"),
                        "pending": group.get("pending"),
                        "lag": lag,
                        "last_delivered": _text(group.get("last-delivered-id")),
                    }
                )
            return {
                "stream": stream,
                "length": info.get("length"),
                "last_id": _text(info.get("last-generated-id")),
                "groups": groups,
            }
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()

    result = _run(ctx, query)
    console = _console()
    if as_json:
        console.print(json.dumps(result), markup=False)
    elif channel is not None:
        console.print(f"channel {channel!r}: {result['subscribers']} subscriber(s)", markup=False)
    else:
        console.print(
            f"stream {stream!r}: {result['length']} entries, last id {result['last_id']}",
            markup=False,
        )
        table = Table("group", "consumers", "pending", "lag", "last delivered")
        for group in result["groups"]:
            table.add_row(
                *(str(group[key]) for key in ("name", "consumers", "pending", "lag")),
                str(group["last_delivered"]),
            )
        console.print(table)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script's entry point."""
    cli.main(args=argv, prog_name="anybus")
    raise SystemExit(0)  # pragma: no cover - click exits by itself
