"""``anybus pub`` and ``anybus sub``: publish a message by hand, watch a channel."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import itertools
import json
import os
import secrets
import sys
from collections.abc import Callable
from contextlib import suppress
from enum import Enum
from typing import Any

import anyio
import click
from rich.console import Console

from .._exceptions import MessageRejected
from .._fields import decode_fields
from .._message_types import default_registry
from .._messages import BusMessage, BusSystemMessage
from .._wire import WireCodec
from ._common import (
    BadInput,
    Failure,
    connect_timeout_option,
    forget_group,
    non_empty,
    open_client,
    redis_module,
    run,
    settings_of,
    stdout_console,
)

__all__ = ["pub", "sub"]

DEFAULT_SOURCE = "anybus-cli"

#: The value of a bare ``--stream`` (the old spelling ``pub --stream --channel NAME``).
_STREAM_FLAG = "\0--stream"


def _import_modules(ctx: click.Context, param: click.Parameter, modules: tuple[str, ...]) -> None:
    """Import each ``--import`` module, so that the message types it registers are known."""
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` would: the user's own modules
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise BadInput(
                f"--import {module!r} failed: {detail}; check the module's name, and run from "
                f"the directory it is in"
            ) from None


def import_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The repeatable ``--import MODULE`` option of ``pub`` and ``sub``."""
    return click.option(
        "--import",
        "modules",
        metavar="MODULE",
        multiple=True,
        expose_value=False,
        callback=_import_modules,
        help="import this module first, for the message types it registers (repeatable)",
    )


def _unknown_type(name: str) -> str:
    """Why ``name`` is not a registered type, with the nearest names if any are close."""
    names = list(default_registry)
    by_lower = {known.lower(): known for known in names}
    close = [by_lower[match] for match in difflib.get_close_matches(name.lower(), by_lower)]
    if close:
        *first, last = (repr(known) for known in close)
        return f"{name!r}; did you mean {', '.join(first) + ' or ' if first else ''}{last}?"
    return (
        f"{name!r} ({len(names)} types are, e.g. {', '.join(names[:3])}); check the name, or "
        f"--import the module that registers it"
    )


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _build_message(type_name: str, fields: dict[str, Any]) -> BusMessage:
    """A new message of the registered type ``type_name``, checked against its annotations."""
    try:
        cls = default_registry.lookup(type_name)
    except LookupError:
        raise click.BadParameter(
            f"no message type is registered under the name {_unknown_type(type_name)}",
            param_hint="TYPE",
        ) from None
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


@click.command()
@click.argument("url")
@click.argument("type_name", metavar="TYPE")
@click.argument("fields", nargs=-1, metavar="[FIELD=VALUE ...|-]")
@click.option(
    "--channel",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="publish on this pub/sub channel (RedisBus)",
)
@click.option(
    "--stream",
    callback=non_empty,
    metavar="NAME",
    default=None,
    is_flag=False,
    flag_value=_STREAM_FLAG,
    help="store in this stream instead (RedisStreamBus)",
)
@import_option()
@connect_timeout_option()
@click.pass_context
def pub(
    ctx: click.Context,
    url: str,
    type_name: str,
    fields: tuple[str, ...],
    channel: str | None,
    stream: str | None,
    connect_timeout: float,
) -> None:
    """Publish one message of a registered TYPE on a channel (--channel NAME) or a stream
    (--stream NAME).

    The fields come from FIELD=VALUE pairs (a value is parsed as JSON when it can be, else
    taken as a string) or, with a single -, from a JSON object on stdin.
    """
    if stream == _STREAM_FLAG:
        if channel is None:
            raise click.UsageError("--stream takes the stream's name: --stream NAME")
        click.echo(
            f"warning: --stream --channel NAME is deprecated, write --stream {channel}",
            err=True,
        )
        stream, channel = channel, None
    if (stream is None) == (channel is None):
        raise click.UsageError("give exactly one of --channel NAME or --stream NAME")
    message = _build_message(type_name, _read_fields(fields))
    settings = settings_of(url)
    redis = redis_module()

    name = f"anybus-cli-{secrets.token_hex(4)}"

    async def publish() -> Any:
        bus: Any
        if stream is not None:
            bus = redis.RedisStreamBus(
                settings, stream=stream, name=name, connect_timeout=connect_timeout
            )
        else:
            bus = redis.RedisBus(
                settings, channel=channel, name="anybus-cli", connect_timeout=connect_timeout
            )
        async with bus:
            await bus.send(message)
            if stream is None:
                # RedisBus.send() only queues the message, and leaving the bus cancels a
                # publish in flight: wait for the writer to report on it first.
                with anyio.move_on_after(connect_timeout):
                    # The bus has no event for it: poll its counters, bounded.
                    while True:
                        if _reported(bus.transport_statistics()):
                            break
                        await anyio.sleep(0.005)
        if stream is not None:
            # The bus made itself a consumer group to read with: leave no trace of it.
            await _destroy_group(settings, stream, bus.group, connect_timeout)
        return bus.transport_statistics()

    statistics = run(ctx, publish)
    if statistics.publish_failures or not statistics.published:
        raise Failure(f"{message.name} was not published: redis refused it")
    where = f"stream {stream!r}" if stream is not None else f"channel {channel!r}"
    stdout_console().print(
        f"published {type_name} {message.id} on {where} at {settings.address}", markup=False
    )


def _reported(statistics: Any) -> bool:
    return bool(statistics.published or statistics.publish_failures)


async def _destroy_group(settings: Any, stream: str, group: str, connect_timeout: float) -> None:
    async with open_client(
        settings, name="anybus-cli-pub", connect_timeout=connect_timeout
    ) as client:
        await forget_group(client, settings, stream, group)


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


@click.command()
@click.argument("url")
@click.option(
    "--channel",
    callback=non_empty,
    metavar="NAME",
    required=True,
    help="the pub/sub channel to listen on",
)
@click.option("--types", default=None, help="comma-separated type names to show (default: all)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="exit after this many shown messages (undecodable input counts too)",
)
@import_option()
@connect_timeout_option()
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
            raise click.BadParameter(
                f"not registered: {_unknown_type(unknown[0])}", param_hint="--types"
            )
    settings = settings_of(url)
    probe_target = redis_module()._pubsub.PROBE_TARGET
    console = stdout_console()
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
                for seq in itertools.count(1):
                    probe = BusSystemMessage(source=me, target=probe_target)
                    await client.publish(channel, codec.encode(probe, sender=me, seq=seq))
                    with anyio.move_on_after(0.5):
                        await confirmed.wait()
                        break
        except TimeoutError:
            raise Failure(
                f"redis at {settings.address} answers, but did not confirm the subscription "
                f"to {channel!r} within {connect_timeout} s (wait longer with --connect-timeout)"
            ) from None
        err.print(f"subscribed to channel {channel!r} at {settings.address}", markup=False)

    async def listen() -> None:
        send, receive = anyio.create_memory_object_stream[bytes](100_000)

        def on_message(payload: bytes) -> None:
            try:
                send.send_nowait(payload)
            except anyio.WouldBlock:
                tally["undecodable"] += 1  # dropped: counted, never a crash

        with send, receive:
            async with (
                open_client(
                    settings,
                    name="anybus-cli-sub",
                    connect_timeout=connect_timeout,
                    channels=[channel],
                    on_message=on_message,
                ) as client,
                anyio.create_task_group() as task_group,
            ):
                task_group.start_soon(confirm, client)
                async for payload in receive:
                    if show(payload):
                        tally["shown"] += 1
                        if count is not None and tally["shown"] >= count:
                            break
                task_group.cancel_scope.cancel(reason="anybus sub: --count reached")

    with suppress(KeyboardInterrupt):  # Ctrl-C is how sub ends without --count
        run(ctx, listen)
    # Not after a failure (its one line says it all) or a closed stdout (nobody reads on).
    err.print(f"{tally['shown']} shown, {tally['undecodable']} undecodable", markup=False)
