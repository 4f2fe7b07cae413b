"""``anybus workers``: bad URLs, unreachable servers, the ``--json`` snapshot on every network
bus, and the live view (a table on a terminal, a line a change when piped) following workers
that come and go. The workers are ``presence_peer.py`` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio import fail_after
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

pytest.importorskip("click")
pytest.importorskip("glide")

from click.testing import CliRunner, Result
from rich.console import Console

from anybus import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    WorkerChange,
    WorkerEvent,
    WorkerInfo,
    request,
    worker_directory,
)
from anybus._cli import cli
from anybus._cli._common import bus_target
from anybus._cli._workers import change_line, worker_table

from .presence_peer import drop_stream, make_bus, open_peer
from .redis_support import free_port, unique_name


async def redis_command(url: str, *args: str) -> Any:
    from anybus.redis._client import RedisClient, RedisSettings

    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-cli")
    try:
        return await client.command(*args)
    finally:
        await client.close()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="anybus")


# --- usage and failures: one line each ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["memory"], "'memory': a memory bus is seen only from inside its own process"),
        (["http://x"], "Invalid value for URL: 'http://x' names no bus; give a redis://"),
        (["redis://x:port"], "Invalid value for URL: Port could not be cast"),
        (["redis://x?db=1"], "Invalid value for URL: unknown parameter 'db'"),
        (["host=x bogus"], "Invalid value for URL: not a valid postgres dsn: 'host=x bogus'"),
        (["postgresql://x/db", "--stream", "s"], "--stream is for redis streams"),
        (["redis://x", "--schema", "s"], "--schema is for a postgres bus"),
        (["redis://x", "--stream", "s", "--channel", "c"], "one of --channel NAME or --stream"),
        (["redis://x", "--wait", "1"], "--wait goes with --json"),
        (["redis://x", "--json", "--wait", "-1"], "--wait"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], complaint: str) -> None:
    result = invoke("workers", *args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output
    if "--wait" not in complaint:  # (click's own range check prints the usage too)
        assert len(result.output.splitlines()) == 1, result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://127.0.0.1:{port}",
            "Error: redis at 127.0.0.1:{port} is unreachable after 0.5 s: check that the server "
            "runs and the url is right (or wait longer with --connect-timeout)",
        ),
        (
            "postgresql://postgres@127.0.0.1:{port}/test",
            "Error: postgres at 127.0.0.1:{port}/test is unreachable after 0.5 s: check that the "
            "server runs and the dsn is right",
        ),
    ],
)
def test_an_unreachable_server_exits_1_with_one_line(url: str, expected: str) -> None:
    port = free_port()
    result = invoke("workers", url.format(port=port), "--json", "--connect-timeout", "0.5")
    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith(expected.format(port=port))


def test_a_missing_schema_is_reported_not_created(postgres_dsn: str) -> None:
    from .postgres_roles import admin, dropped_schema

    with dropped_schema() as schema:
        result = invoke("workers", postgres_dsn, "--schema", schema, "--json", "--wait", "0")
        made = admin("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema])
    assert result.exit_code == 1, result.output
    assert f"the anybus schema '{schema}' is missing" in result.output
    assert made == [(0,)]  # a command that looks creates nothing


@pytest.mark.anyio
async def test_json_finds_the_workers_of_another_schema(postgres_dsn: str) -> None:
    from anybus import JobWorker
    from anybus.postgres import PostgresBus

    from .postgres_roles import dropped_schema

    async def echo(job: Any) -> None:
        pass

    channel = unique_name()
    with dropped_schema() as schema:
        bus = PostgresBus(postgres_dsn, channel=channel, schema=schema)
        await bus.subscribe(JobWorker("elsewhere", handlers={None: echo}))
        async with bus:
            args = ["workers", postgres_dsn, "--channel", channel, "--schema", schema]
            with fail_after(30):
                result = await anyio.run_process(
                    [sys.executable, "-m", "anybus", *args, "--json", "--wait", "1.5"], check=False
                )
    assert result.returncode == 0, result.stderr.decode()
    assert [w["name"] for w in json.loads(result.stdout)["workers"]] == ["elsewhere"]


def test_the_help_reads_as_plain_text() -> None:
    result = invoke("workers", "--help")
    assert result.exit_code == 0
    assert "redis:// url or a postgresql:// dsn" in result.output
    for markup in ("``", ":func:", ":class:", "**"):
        assert markup not in result.output


# --- what is shown -----------------------------------------------------------------------------


def info(
    name: str, *, pool: str | None = None, load: int = 0, seen_at: float = 100.0
) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        pool=pool,
        jobs=("", "echo"),
        concurrency=4,
        load=load,
        heartbeat=1.0,
        process="host:42",
        incarnation="abc",
        seen_at=seen_at,
    )


def test_the_table_groups_a_pool_and_shows_names_as_they_are() -> None:
    target = bus_target("redis://127.0.0.1:6379", channel="jobs")
    workers = [info("[bold]b", pool="p", load=3), info("solo"), info("a", pool="p", seen_at=99.5)]
    console = Console(record=True, width=120, color_system=None)
    console.print(worker_table(target, workers, now=101.0, caption="x left 2 s ago: it stopped"))
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0].strip() == "3 workers on channel 'jobs' at redis 127.0.0.1:6379"
    rows = [line for line in lines if "host:42" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["[bold]b", "a", "solo"]
    assert rows[0].split("│")[2:7] == [
        " p    ",
        " (default), echo ",
        " 3/4  ",
        " host:42 ",
        " 1.0 s ago      ",
    ]
    assert "1.5 s ago" in rows[1]
    assert rows[2].split("│")[2].strip() == "-"
    assert lines[-1].strip() == "x left 2 s ago: it stopped"
    empty = Console(record=True, width=120, color_system=None)
    empty.print(worker_table(target, [], now=0.0))
    assert "waiting for workers to announce themselves" in empty.export_text()


# --- --json, on every network bus ----------------------------------------------------------


@pytest.fixture(params=["pubsub", "stream", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_dsn" if kind == "postgres" else "redis_url"))


@pytest.fixture
async def channel(url: str, kind: str) -> AsyncIterator[str]:
    """A channel (or stream) no other test uses; a stream is deleted after the test."""
    name = unique_name()
    yield name
    if kind == "stream":
        await drop_stream(url, name)


def where_args(kind: str, channel: str) -> list[str]:
    return ["--stream" if kind == "stream" else "--channel", channel]


@pytest.mark.anyio
async def test_json_prints_the_workers_with_their_load(
    url: str, kind: str, anyio_backend: str, channel: str
) -> None:
    async with (
        make_bus(kind, url, channel) as bus,
        open_peer(anyio_backend, url, channel, kind, "a1@pool", "a2@pool", "solo") as process,
    ):
        directory = await worker_directory(bus)
        with fail_after(20):
            for name in ("a1", "a2", "solo"):
                await directory.wait_for(name)
            # One job that runs until the peer stops: solo's load is 1.
            await bus.send(
                BusJobRequestMessage(source="test", target="solo", job_id="j1", job_name="block")
            )
            async for event in directory.changes():
                if event.worker.name == "solo" and event.worker.load == 1:
                    break
        other = "trio" if anyio_backend == "asyncio" else "asyncio"
        args = ["--backend", other, "workers", url, *where_args(kind, channel)]
        # A process, as it is used (glide on trio also keeps one process to one event loop).
        result = await anyio.run_process(
            [sys.executable, "-m", "anybus", *args, "--json", "--wait", "0.5"], check=False
        )
        await bus.send(BusJobCancelMessage(source="test", target="solo", job_id="j1"))
        await request(bus, "a1", job_name="stop", timeout=10)
        with fail_after(20):
            assert await process.wait() == 0
        if kind == "stream":  # the command left no consumer group behind
            groups = await redis_command(url, "XINFO", "GROUPS", channel)
            # Only the peer's and this test's bus's groups: the command's was destroyed.
            assert len(groups) == 2, groups
            assert not [g for g in groups if g[b"name"].startswith(b"anybus-cli-")], groups
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    where = "stream" if kind == "stream" else "channel"
    assert document[where] == channel
    assert document["transport"] == {"pubsub": "redis", "stream": "redis-stream"}.get(
        kind, "postgres"
    )
    assert [worker["name"] for worker in document["workers"]] == ["a1", "a2", "solo"]
    a1, _, solo = document["workers"]
    assert a1["pool"] == "pool"
    assert a1["jobs"] == ["block", "echo", "stop"]
    assert a1["concurrency"] == 4
    assert a1["heartbeat"] == 1.0
    assert a1["process"].endswith(f":{process.pid}")
    assert 0 <= a1["last_heartbeat"] < 3
    assert (solo["pool"], solo["load"], a1["load"]) == (None, 1, 0)


# --- the live view ---------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Output:
    """What a process printed on one of its pipes so far, read as it comes."""

    def __init__(self, stream: Any) -> None:
        self._stream = BufferedByteReceiveStream(stream)
        self.text = ""

    async def until(self, predicate: Any) -> Any:
        """Read until ``predicate(text so far, without terminal codes)`` holds; return what
        it returned."""
        while not (found := predicate(_ANSI.sub("", self.text))):
            self.text += (await self._stream.receive()).decode(errors="replace")
        return found


def frame(title: str, ending: str = "┘") -> Any:
    """A predicate for :meth:`Output.until`: the last table drawn under ``title``, once it is
    drawn up to ``ending``."""

    def drawn(text: str) -> str | None:
        start = text.rfind(title)
        whole = text[start:].rstrip() if start >= 0 else ""
        return whole if "└" in whole and whole.endswith(ending) else None

    return drawn


@pytest.mark.anyio
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
async def test_the_live_view_follows_workers_that_come_and_go(
    redis_url: str, anyio_backend: str, terminal: bool
) -> None:
    channel = unique_name()
    host = socket.gethostname()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("TTY_COMPATIBLE", None)
    if terminal:
        env["TTY_COMPATIBLE"] = "1"  # rich draws for a terminal on a pipe
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    argv = [sys.executable, "-m", "anybus", "--backend", other, "workers", redis_url]
    argv += ["--channel", channel]
    command: Process = await anyio.open_process(argv, env=env)
    assert command.stdout is not None
    assert command.stderr is not None
    out, err = Output(command.stdout), Output(command.stderr)
    try:
        async with make_bus("pubsub", redis_url, channel) as bus:
            with fail_after(20):
                await err.until(lambda text: "watching the workers on channel" in text)
            async with open_peer(
                anyio_backend, redis_url, channel, "pubsub", "a1@pool", "solo"
            ) as peer:
                with fail_after(20):
                    if terminal:
                        table = await out.until(frame("2 workers on channel"))
                        assert re.search(r"│ solo +│ - +│ block, echo, stop +│ 0/4 +│", table)
                        assert re.search(r"│ a1 +│ pool +│ block, echo, stop +│ 0/4 +│", table)
                    else:
                        await out.until(lambda text: text.count("\n") >= 2)
                        assert sorted(out.text.splitlines()) == [
                            f"joined a1: pool 'pool', jobs block, echo, stop, load 0/4, "
                            f"process {host}:{peer.pid}, heartbeat 1 s",
                            f"joined solo: jobs block, echo, stop, load 0/4, process "
                            f"{host}:{peer.pid}, heartbeat 1 s",
                        ]
                    await request(bus, "solo", job_name="stop", timeout=10)
                    if terminal:
                        left = await out.until(frame("0 workers on channel", "it stopped"))
                        assert re.search(r"(a1|solo) left \d+ s ago: it stopped", left)
                    else:
                        await out.until(lambda text: text.count("\n") >= 4)
                        lines = out.text.splitlines()[2:]
                        assert sorted(lines) == ["left a1: it stopped", "left solo: it stopped"]
        command.send_signal(signal.SIGINT)
        with fail_after(10):
            assert await command.wait() == 0
    finally:
        if command.returncode is None:
            command.kill()
        with anyio.CancelScope(shield=True):
            await command.wait()
            await command.aclose()


def test_a_heartbeat_prints_no_line() -> None:
    assert change_line(WorkerEvent(WorkerChange.UPDATED, info("a"))) is None
    assert change_line(WorkerEvent(WorkerChange.LEFT, info("a"), "it stopped")) == (
        "left a: it stopped"
    )
