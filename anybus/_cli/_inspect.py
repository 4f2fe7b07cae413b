"""``anybus inspect``: a stream's length, groups, pending entries and lag; a channel's
subscribers."""

from __future__ import annotations

import json
from typing import Any

import anyio
import click
from rich.table import Table

from ._common import Failure, redis_module, run, settings_of, stdout_console

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
    settings = settings_of(url)
    client_module = redis_module()._client

    async def query() -> dict[str, Any]:
        client = await client_module.RedisClient.create(settings, name="anybus-cli-inspect")
        try:
            await client.ping()
            if channel is not None:
                reply = _as_dict(await client.command("PUBSUB", "NUMSUB", channel))
                return {"channel": channel, "subscribers": int(reply.get(channel, 0))}
            assert stream is not None
            if not await client.command("EXISTS", stream):
                raise Failure(f"no stream {stream!r} at {settings.address}")
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
