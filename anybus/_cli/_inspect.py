"""``anybus inspect``: a stream's length, groups, pending entries and lag; a channel's
subscribers."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from ._common import (
    Failure,
    connect_timeout_option,
    non_empty,
    open_client,
    redis_module,
    run,
    settings_of,
    stdout_console,
)

__all__ = ["inspect"]


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _as_dict(reply: Any) -> dict[str, Any]:
    """A glide reply holding field/value pairs (a dict or a flat list) as a dict of str keys."""
    if isinstance(reply, dict):
        return {str(_text(key)): value for key, value in reply.items()}
    items = list(reply)
    return {str(_text(items[i])): items[i + 1] for i in range(0, len(items) - 1, 2)}


@click.command()
@click.argument("url")
@click.option(
    "--channel",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="a pub/sub channel: its subscribers",
)
@click.option(
    "--stream",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="a stream: length, groups, pending and lag",
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
@connect_timeout_option()
@click.pass_context
def inspect(
    ctx: click.Context,
    url: str,
    channel: str | None,
    stream: str | None,
    as_json: bool,
    connect_timeout: float,
) -> None:
    """Show a stream's length, consumer groups, pending entries and lag, or the number of
    subscribers on a channel."""
    if (stream is None) == (channel is None):
        raise click.UsageError("give exactly one of --channel NAME or --stream NAME")
    settings = settings_of(url)
    redis_module()  # a failure naming the extra, if redis support is missing

    async def query() -> dict[str, Any]:
        async with open_client(
            settings, name="anybus-cli-inspect", connect_timeout=connect_timeout
        ) as client:
            if channel is not None:
                reply = _as_dict(await client.command("PUBSUB", "NUMSUB", channel))
                return {"channel": channel, "subscribers": int(reply.get(channel, 0))}
            assert stream is not None
            kind = _text(await client.command("TYPE", stream))
            if kind == "none":
                raise Failure(f"no stream {stream!r} at {settings.address}: check the name")
            if kind != "stream":
                raise Failure(
                    f"key {stream!r} at {settings.address} holds a {kind}, not a stream: "
                    f"check the name"
                )
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

    result = run(ctx, query)
    console = stdout_console()
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
