"""``anybus workers``: the workers that announce themselves on a channel — a live table that
follows the bus's directory of workers, or one JSON snapshot."""

from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import anyio
import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._directory import WorkerChange, WorkerDirectory, WorkerEvent, WorkerInfo
from .._presence import worker_directory
from ._common import (
    BadInput,
    BusTarget,
    Seconds,
    bus_target,
    non_empty,
    open_bus,
    run,
    stdout_console,
)

__all__ = ["workers"]

#: Seconds ``--json`` collects announcements by default: a bit over one default heartbeat
#: (workers answer the command's query at once; this catches one that missed it).
DEFAULT_WAIT: Final = 1.5
#: Seconds between two refreshes of the table when nothing changes (the ages move on).
AGE_REFRESH: Final = 0.5
#: Fewest seconds between two refreshes: a burst of heartbeats is drawn once.
MIN_REFRESH: Final = 0.1

_TRANSPORTS: Final = {"pubsub": "redis", "stream": "redis-stream", "postgres": "postgres"}


def _jobs(info: WorkerInfo) -> list[str]:
    return [job or "(default)" for job in info.jobs]


def record(info: WorkerInfo, now: float) -> dict[str, Any]:
    """``info`` as the JSON of ``--json`` (``last_heartbeat``: seconds ago, at ``now``)."""
    return {
        "name": info.name,
        "pool": info.pool,
        "jobs": list(info.jobs),
        "concurrency": info.concurrency,
        "load": info.load,
        "heartbeat": info.heartbeat,
        "process": info.process,
        "incarnation": info.incarnation,
        "last_heartbeat": round(max(0.0, now - info.seen_at), 3),
    }


def snapshot(target: BusTarget, workers: Sequence[WorkerInfo], now: float) -> dict[str, Any]:
    """What ``--json`` prints."""
    where = "stream" if target.kind == "stream" else "channel"
    return {
        "transport": _TRANSPORTS[target.kind],
        "at": target.where,
        where: target.channel,
        "workers": [record(info, now) for info in workers],
    }


def worker_table(
    target: BusTarget, workers: Sequence[WorkerInfo], now: float, caption: str | None = None
) -> Table:
    """The live table: one row a worker, the pools' members first, together."""
    live = f"{len(workers)} worker{'' if len(workers) == 1 else 's'}"
    if caption is None and not workers:
        caption = "waiting for workers to announce themselves"
    table = Table(
        "worker",
        "pool",
        "jobs",
        "load",
        "process",
        "last heartbeat",
        title=Text(f"{live} on {target.describe()}"),
        caption=Text(caption) if caption else None,
    )
    for info in sorted(workers, key=lambda info: (info.pool is None, info.pool or "", info.name)):
        table.add_row(
            Text(info.name),
            Text(info.pool or "-"),
            Text(", ".join(_jobs(info))),
            Text(f"{info.load}/{info.concurrency}"),
            Text(info.process),
            Text(f"{max(0.0, now - info.seen_at):.1f} s ago"),
        )
    return table


def change_line(event: WorkerEvent) -> str | None:
    """The line a change prints when stdout is not a terminal (``None``: not worth one)."""
    info = event.worker
    if event.change is WorkerChange.JOINED:
        pool = f"pool {info.pool!r}, " if info.pool else ""
        return (
            f"joined {info.name}: {pool}jobs {', '.join(_jobs(info)) or '-'}, load "
            f"{info.load}/{info.concurrency}, process {info.process}, heartbeat "
            f"{info.heartbeat:g} s"
        )
    if event.change is WorkerChange.LEFT:
        return f"left {info.name}: {event.why}"
    return None  # a heartbeat


class _Watch:
    """Follows a directory until interrupted: redraws the table (on a terminal) or prints
    a line a change (otherwise)."""

    def __init__(self, target: BusTarget, directory: WorkerDirectory, console: Console) -> None:
        self.target = target
        self.directory = directory
        self.console = console
        self.changed = anyio.Event()
        self.last_left: WorkerEvent | None = None
        self.left_at = 0.0

    async def run(self) -> None:
        async with anyio.create_task_group() as task_group:
            if threading.current_thread() is threading.main_thread():
                task_group.start_soon(self._until_interrupted, task_group.cancel_scope)
            if self.console.is_terminal:
                task_group.start_soon(self._follow)
                await self._draw()
            else:
                await self._print()

    async def _until_interrupted(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                scope.cancel(reason=f"anybus workers: {signal.Signals(signum).name}")

    async def _print(self) -> None:
        async for event in self.directory.changes():
            line = change_line(event)
            if line is not None:
                self.console.print(line, markup=False)

    async def _follow(self) -> None:
        async for event in self.directory.changes():
            if event.change is WorkerChange.LEFT:
                self.last_left, self.left_at = event, time.time()
            self.changed.set()

    def _table(self) -> Table:
        now = time.time()
        caption = None
        if self.last_left is not None:
            caption = (
                f"{self.last_left.worker.name} left {now - self.left_at:.0f} s ago: "
                f"{self.last_left.why}"
            )
        return worker_table(self.target, self.directory.workers(), now, caption)

    async def _draw(self) -> None:
        with Live(self._table(), console=self.console, auto_refresh=False) as live:
            while True:
                with anyio.move_on_after(AGE_REFRESH):
                    await self.changed.wait()
                self.changed = anyio.Event()
                live.update(self._table(), refresh=True)
                await anyio.sleep(MIN_REFRESH)


@click.command()
@click.argument("url")
@click.option(
    "--channel",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="the channel the workers' buses are on (default: anybus, the buses' default)",
)
@click.option(
    "--stream",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="a redis stream instead (RedisStreamBus)",
)
@click.option(
    "--schema",
    callback=non_empty,
    metavar="NAME",
    default=None,
    help="a postgres bus's anybus schema (default: anybus, the bus's default)",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="print one JSON snapshot after --wait seconds, and exit",
)
@click.option(
    "--wait",
    type=Seconds(),
    metavar="SECONDS",
    default=None,
    help=f"with --json: seconds to collect the workers' announcements [default: {DEFAULT_WAIT:g}]",
)
@click.option(
    "--connect-timeout",
    type=Seconds(positive=True),
    metavar="SECONDS",
    default=5.0,
    show_default=True,
    help="seconds to wait for the server to answer",
)
@click.pass_context
def workers(
    ctx: click.Context,
    url: str,
    channel: str | None,
    stream: str | None,
    schema: str | None,
    as_json: bool,
    wait: float | None,
    connect_timeout: float,
) -> None:
    """Show the workers that announce themselves on a channel: their pool, jobs, load and
    last heartbeat.

    URL is a redis:// url or a postgresql:// dsn. On a terminal, a table that follows the
    workers as they come, report their load and go, until interrupted; piped, one line as
    each worker joins or leaves. With --json, one snapshot, then exit.
    """
    if wait is not None and not as_json:
        raise BadInput("--wait goes with --json: the table follows the workers until interrupted")
    target = bus_target(url, channel=channel, stream=stream, schema=schema)
    name = f"anybus-cli-workers-{secrets.token_hex(4)}"
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    async def collect() -> dict[str, Any]:
        async with open_bus(target, name=name, connect_timeout=connect_timeout) as bus:
            directory = await worker_directory(bus)
            await anyio.sleep(DEFAULT_WAIT if wait is None else wait)
            return snapshot(target, directory.workers(), time.time())

    async def watch() -> None:
        async with open_bus(target, name=name, connect_timeout=connect_timeout) as bus:
            directory = await worker_directory(bus)
            err.print(f"watching the workers on {target.describe()}", markup=False)
            await _Watch(target, directory, stdout_console()).run()

    if as_json:
        stdout_console().print(json.dumps(run(ctx, collect)), markup=False)
    else:
        run(ctx, watch)
