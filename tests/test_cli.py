"""The ``anybus`` command, driven through click's test runner (and, for ``sub``, a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("click")
pytest.importorskip("glide")

from click.testing import CliRunner, Result

from anybus import BusDataMessage, MsgpackSerializer, WireCodec
from anybus._cli import cli

from .redis_support import free_port, unique_name


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, list(args), input=input, catch_exceptions=False, prog_name="anybus"
    )


async def _command(url: str, *args: str | bytes) -> Any:
    from anybus.redis._client import RedisClient, RedisSettings

    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-cli")
    try:
        return await client.command(*args)
    finally:
        await client.close()


def command(url: str, *args: str | bytes) -> Any:
    return anyio.run(_command, url, *args)


@pytest.fixture
def channel(redis_url: str) -> Iterator[str]:
    name = unique_name()
    yield name
    command(redis_url, "DEL", name)


# --- demo, version, usage -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_demo_shows_the_cancel_overtaking_queued_work(backend: str) -> None:
    result = invoke("demo", "--backend", backend)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"anybus demo on {backend}: a runner and two workers on the in-memory bus"

    def position(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    cancel = position("cancel received while job-a1 runs")
    for job in ("job-a2", "job-a3", "job-a4"):
        assert cancel < position(f"{job}: cancelled before it started")
    assert lines[-1].startswith("summary: 2 jobs completed, 1 cancelled mid-job, 3 cancelled")


def test_the_demo_follows_the_global_backend_and_runs_on_both() -> None:
    assert "anybus demo on trio" in invoke("--backend", "trio", "demo").output
    both = invoke("demo", "--backend", "both").output
    assert "anybus demo on asyncio" in both
    assert "anybus demo on trio" in both
    # Without any --backend, the demo runs on both, as the README says.
    default = invoke("demo").output
    assert default.index("anybus demo on asyncio") < default.index("anybus demo on trio")


def test_version() -> None:
    from anybus import __version__

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"anybus {__version__}\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--backend", "curio", "demo"], "'curio' is not one of"),
        (["demo", "--backend", "curio"], "'curio' is not one of"),
        (["frobnicate"], "No such command"),
        (["pub", "redis://x", "--channel", "c", "NoSuchMessage"], "no message type"),
        (["pub", "redis://x", "--channel", "c", "BusDataMessage", "bogus=1"], "unknown field"),
        (["pub", "redis://x", "--channel", "c", "BusJobRequestMessage"], "missing required"),
        (
            ["pub", "redis://x", "--channel", "c", "BusJobRequestMessage", "job_id=1"],
            "job_id: expected str, got int",
        ),
        (["pub", "redis://x", "--channel", "c", "BusDataMessage", "target"], "field=value"),
        (["pub", "http://x", "--channel", "c", "BusDataMessage"], "redis://"),
        (["pub", "redis://x", "BusDataMessage"], "exactly one of --channel NAME or --stream NAME"),
        (["pub", "redis://x", "--stream", "s", "--channel", "c", "BusDataMessage"], "one of"),
        (["pub", "redis://x", "BusDataMessage", "--stream"], "--stream takes the stream's name"),
        (["pub", "redis://x?cluster=maybe", "--channel", "c", "BusDataMessage"], "got 'maybe'"),
        (["sub", "redis://x", "--channel", "c", "--types", "Nope"], "not registered: 'Nope'"),
        (["sub", "redis://x", "--channel", "c", "--count", "0"], "--count"),
        (["inspect", "redis://x"], "exactly one of --channel NAME or --stream NAME"),
        (["inspect", "redis://x", "--stream", "s", "--channel", "c"], "exactly one of"),
        (["inspect", "redis://x?db=1", "--stream", "s"], "unknown parameter 'db'"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(args: list[str], complaint: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output


@pytest.mark.parametrize(
    ("command", "typo", "meant"),
    [
        ("pub", "BusDataMesage", "did you mean 'BusDataMessage'"),
        ("pub", "busjobrequestmessage", "did you mean 'BusJobRequestMessage'"),
        ("sub", "BusJobRequest", "did you mean 'BusJobRequestMessage'"),
    ],
)
def test_a_mistyped_type_name_suggests_the_nearest_ones(
    command: str, typo: str, meant: str
) -> None:
    if command == "pub":
        result = invoke("pub", "redis://x", "--channel", "c", typo)
    else:
        result = invoke("sub", "redis://x", "--channel", "c", "--types", typo)
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert meant in error
    assert len(error) < 200  # the nearest names, not all the registered ones


def test_an_unknown_type_name_lists_a_few_and_points_at_import() -> None:
    result = invoke("pub", "redis://x", "--channel", "c", "Zork")
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert "no message type is registered under the name 'Zork'" in error
    assert "--import the module that registers it" in error
    assert len(error) < 250


@pytest.mark.parametrize("command", [[], ["demo"], ["pub"], ["sub"], ["inspect"]])
def test_the_help_reads_as_plain_text(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    for markup in ("``", ":func:", ":class:", "**"):
        assert markup not in result.output


def test_a_json_document_on_stdin_must_be_an_object() -> None:
    result = invoke("pub", "redis://x", "--channel", "c", "BusDataMessage", "-", input="[1]")
    assert result.exit_code == 2
    assert "stdin must hold a JSON object, got list" in result.output


REDIS_COMMANDS = [
    ["pub", "--channel", "c", "BusDataMessage"],
    ["pub", "--stream", "s", "BusDataMessage"],
    ["sub", "--channel", "c"],
    ["inspect", "--channel", "c"],
]


@pytest.mark.parametrize("args", REDIS_COMMANDS)
def test_an_unreachable_redis_exits_1_with_one_line(args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    result = invoke(args[0], url, *args[1:], "--connect-timeout", "0.5")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: redis at {url[8:]} is unreachable after 0.5 s: check that the server runs "
        f"and the url is right (or wait longer with --connect-timeout)"
    ]


@pytest.mark.parametrize("args", REDIS_COMMANDS)
def test_a_database_the_server_lacks_is_named_at_once(redis_url: str, args: list[str]) -> None:
    from .test_redis_settings import with_database

    started = time.monotonic()
    result = invoke(args[0], with_database(redis_url, 99), *args[1:], "--connect-timeout", "5")
    assert time.monotonic() - started < 3
    assert result.exit_code == 1, result.output
    [error] = result.output.splitlines()
    assert error.startswith("Error: database 99 does not exist on redis at ")
    assert error.endswith("(it has 16: 0 to 15): use a database number the server has in the url")


def test_inspect_a_key_of_another_type_says_so(redis_url: str, channel: str) -> None:
    command(redis_url, "SET", channel, "a string")
    result = invoke("inspect", redis_url, "--stream", channel)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: key {channel!r} at 127.0.0.1:6379 holds a string, not a stream: check the name\n"
    )


def test_an_error_without_a_message_is_named_and_no_redis_hint_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stuck(out: object, *, backend: str) -> None:
        raise TimeoutError

    monkeypatch.setattr("anybus._cli._demo.run_demo", stuck)
    result = invoke("demo", "--backend", "asyncio")
    assert result.exit_code == 1
    assert result.output == "Error: TimeoutError\n"


# --- pub, sub, inspect against a real Redis --------------------------------------------------


class Subscriber:
    """``python -m anybus sub`` in a process; ready once it says it has subscribed."""

    def __init__(self, url: str, *args: str, cwd: Path | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anybus", "sub", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        if not first.startswith("subscribed to channel"):
            self.process.kill()
            _, rest = self.process.communicate()
            pytest.fail(f"sub did not subscribe; it printed {first + rest!r}")

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:  # a failed test: leave no process behind
            self.process.kill()
            self.process.communicate()

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            pytest.fail(f"sub did not finish; it printed {out!r} {err!r}")
        return self.process.returncode, out, err


def test_pub_reaches_sub_which_shows_undecodable_input(redis_url: str, channel: str) -> None:
    with Subscriber(redis_url, "--channel", channel, "--count", "4") as subscriber:
        published = invoke(
            "pub",
            redis_url,
            "--channel",
            channel,
            "BusJobRequestMessage",
            "job_id=j1",
            'payload={"n": 1}',
            "target=worker-a",
        )
        assert published.exit_code == 0, published.output
        assert f"on channel {channel!r}" in published.output
        command(redis_url, "PUBLISH", channel, "not an envelope")
        stdin = invoke(
            "--backend",
            "trio",
            "pub",
            redis_url,
            "--channel",
            channel,
            "BusJobRequestMessage",
            "-",
            input='{"job_id": "j2", "source": "me"}',
        )
        assert stdin.exit_code == 0, stdin.output
        assert invoke("pub", redis_url, "--channel", channel, "BusDataMessage").exit_code == 0

        code, out, err = subscriber.finish()
        assert code == 0, err
        assert out.splitlines() == [
            'BusJobRequestMessage source=anybus-cli target=worker-a job_id="j1" job_name=null '
            'payload={"n": 1}',
            "undecodable: malformed: not an anybus envelope: starts b'not an e'",
            'BusJobRequestMessage source=me target=None job_id="j2" job_name=null payload=null',
            "BusDataMessage source=anybus-cli target=None",
        ]
        assert err.splitlines()[-1] == "4 shown, 1 undecodable"


def test_sub_filters_types_and_prints_json(redis_url: str, channel: str) -> None:
    with Subscriber(
        redis_url, "--channel", channel, "--count", "2", "--json", "--types", "BusDataMessage"
    ) as subscriber:
        for args in (["BusJobRequestMessage", "job_id=skipped"], ["BusDataMessage", "target=a"]):
            result = invoke("pub", redis_url, "--channel", channel, *args)
            assert result.exit_code == 0, result.output
        # Encoded with a serializer this side does not read: still shown, as undecodable.
        codec = WireCodec(MsgpackSerializer())
        payload = codec.encode(BusDataMessage(source="x"), sender="peer", seq=1)
        command(redis_url, "PUBLISH", channel, payload)

        code, out, err = subscriber.finish()
        assert code == 0, err
        first, second = (json.loads(line) for line in out.splitlines())
        assert first["type"] == "BusDataMessage"
        assert first["source"] == "anybus-cli"
        assert first["target"] == "a"
        assert first["fields"] == {}
        assert second["undecodable"] == "malformed"
        assert "serializer 'msgpack'" in second["detail"]


PUBLISHER = """
import sys, time, anyio
from anybus import BusDataMessage, WireCodec
from anybus.redis._client import RedisClient, RedisSettings

async def main(url, channel):
    client = await RedisClient.create(RedisSettings.from_url(url), name="test-pub")
    codec = WireCodec()
    with anyio.fail_after(20):
        # Nothing tells this process the subscriber is there: poll, bounded.
        while not (await client.command("PUBSUB", "NUMSUB", channel)).get(channel.encode()):
            await anyio.sleep(0.02)
        # Subscribed: sub shows what arrives from now on, so two messages are enough.
        for seq in (1, 2):
            message = BusDataMessage(source="poller")
            await client.publish(channel, codec.encode(message, sender="poller", seq=seq))

anyio.run(main, *sys.argv[1:])
"""


def test_sub_through_the_test_runner(redis_url: str, channel: str) -> None:
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, redis_url, channel],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = invoke("sub", redis_url, "--channel", channel, "--count", "2")
    finally:
        publisher.kill()
        publisher.wait()
    assert result.exit_code == 0, result.output
    assert result.output.count("BusDataMessage source=poller target=None") == 2
    assert "2 shown, 0 undecodable" in result.output


def test_pub_on_a_stream_and_inspect_it(redis_url: str, channel: str) -> None:
    stream = channel
    for job in ("j1", "j2"):
        result = invoke(
            "pub", redis_url, "--stream", stream, "BusJobRequestMessage", f"job_id={job}"
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("published BusJobRequestMessage ")
        assert f"on stream {stream!r}" in result.output
    command(redis_url, "XGROUP", "CREATE", stream, "readers", "0")
    command(
        redis_url, "XREADGROUP", "GROUP", "readers", "r1", "COUNT", "1", "STREAMS", stream, ">"
    )

    result = invoke("inspect", redis_url, "--stream", stream, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["stream"] == stream
    assert report["length"] == 2
    # The publishing bus's own consumer group is removed again: only ours is left.
    assert [(g["name"], g["consumers"], g["pending"], g["lag"]) for g in report["groups"]] == [
        ("readers", 1, 1, 1)
    ]
    table = invoke("inspect", redis_url, "--stream", stream)
    assert table.exit_code == 0
    assert f"stream {stream!r}: 2 entries" in table.output
    assert "readers" in table.output


def test_the_old_stream_spelling_still_works_with_a_warning(redis_url: str, channel: str) -> None:
    result = invoke("pub", redis_url, "--stream", "--channel", channel, "BusDataMessage")
    assert result.exit_code == 0, result.output
    warning, published = result.output.splitlines()
    assert warning == f"warning: --stream --channel NAME is deprecated, write --stream {channel}"
    assert f"on stream {channel!r}" in published
    assert command(redis_url, "XLEN", channel) == 1


def test_inspect_a_missing_stream_exits_1(redis_url: str) -> None:
    result = invoke("inspect", redis_url, "--stream", unique_name())
    assert result.exit_code == 1
    assert "no stream" in result.output


def test_inspect_counts_the_subscribers_of_a_channel(redis_url: str, channel: str) -> None:
    assert invoke("inspect", redis_url, "--channel", channel).output == (
        f"channel {channel!r}: 0 subscriber(s)\n"
    )
    with Subscriber(redis_url, "--channel", channel, "--count", "1") as subscriber:
        result = invoke("inspect", redis_url, "--channel", channel, "--json")
        assert json.loads(result.output) == {"channel": channel, "subscribers": 1}
        invoke("pub", redis_url, "--channel", channel, "BusDataMessage")
        assert subscriber.finish()[0] == 0


# --- --import ------------------------------------------------------------------------------

APP_MESSAGES = """
from dataclasses import dataclass
from anybus import BusDataMessage, register_message

@register_message(name="shop.OrderPlaced")
@dataclass
class OrderPlaced(BusDataMessage):
    order: int = 0
"""


def the_console_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``anybus ARGS`` in ``cwd``, as the console script runs: without cwd on sys.path."""
    return subprocess.run(
        [sys.executable, "-P", "-c", "from anybus._cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_pub_and_sub_see_the_types_an_imported_module_registers(
    redis_url: str, channel: str, tmp_path: Path
) -> None:
    (tmp_path / "shop_messages.py").write_text(APP_MESSAGES)
    unknown = the_console_script(
        "pub", redis_url, "--channel", channel, "shop.OrderPlaced", cwd=tmp_path
    )
    assert unknown.returncode == 2
    assert "no message type is registered under the name 'shop.OrderPlaced'" in unknown.stderr

    with Subscriber(
        redis_url,
        *("--import", "shop_messages", "--channel", channel, "--count", "1", "--json"),
        cwd=tmp_path,
    ) as subscriber:
        published = the_console_script(
            "pub",
            redis_url,
            "--channel",
            channel,
            "--import",
            "shop_messages",
            "shop.OrderPlaced",
            "order=7",
            cwd=tmp_path,
        )
        assert published.returncode == 0, published.stderr
        code, out, err = subscriber.finish()
        assert code == 0, err
        assert json.loads(out)["type"] == "shop.OrderPlaced"
        assert json.loads(out)["fields"] == {"order": 7}


@pytest.mark.parametrize(
    ("module", "detail"),
    [
        ("no_such_module", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("broken_messages", "ZeroDivisionError: division by zero"),
    ],
)
def test_a_failed_import_is_one_line(tmp_path: Path, module: str, detail: str) -> None:
    (tmp_path / "broken_messages.py").write_text("1 / 0\n")
    for args in (
        ["pub", "redis://x", "--channel", "c", "BusDataMessage"],
        ["sub", "redis://x", "--channel", "c"],
    ):
        done = the_console_script(*args, "--import", module, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr == (
            f"Error: --import {module!r} failed: {detail}; check the module's name, and run "
            f"from the directory it is in\n"
        )


# --- a closed stdout --------------------------------------------------------------------------


def run_into_a_closed_pipe(
    args: list[str], *, unbuffered: bool, while_running: Any = None
) -> tuple[int, str, float]:
    """Run ``python -m anybus ARGS`` with a stdout whose reader has gone: (status, stderr,
    seconds)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONUNBUFFERED": "1" if unbuffered else ""}
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "anybus", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    finally:
        os.close(write_end)
    try:
        if while_running is not None:
            while_running(process)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err, time.monotonic() - started


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [
        ["demo"],
        ["--backend", "trio", "demo"],
        ["--version"],
        ["pub", "{url}", "--channel", "{name}", "BusDataMessage"],
        ["inspect", "{url}", "--channel", "{name}", "--json"],
        ["bench", "--quick", "--runs", "1", "--workloads", "W2", "--backends", "asyncio"],
    ],
)
def test_a_closed_stdout_ends_a_command_at_once_and_quietly(
    redis_url: str, channel: str, args: list[str], unbuffered: bool
) -> None:
    args = [arg.format(url=redis_url, name=channel) for arg in args]
    code, err, seconds = run_into_a_closed_pipe(args, unbuffered=unbuffered)
    assert (code, err.strip()) == (1, "")  # (bench's progress display ends with a newline)
    assert seconds < 8  # the demo used to wait 10 s for workers that had crashed


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_closed_stdout_ends_sub_at_once_and_quietly(
    redis_url: str, channel: str, unbuffered: bool
) -> None:
    def publish(process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        ready = process.stderr.readline()
        assert ready.startswith("subscribed to channel"), ready
        for _ in range(2):
            assert invoke("pub", redis_url, "--channel", channel, "BusDataMessage").exit_code == 0

    code, err, _ = run_into_a_closed_pipe(
        ["sub", redis_url, "--channel", channel], unbuffered=unbuffered, while_running=publish
    )
    assert (code, err) == (1, "")


# --- python -m anybus, and the cli extra ------------------------------------------------------


def test_python_m_anybus_is_the_click_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anybus", "inspect", "redis://x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: python -m anybus inspect [OPTIONS] URL\n")
    assert "exactly one of" in done.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "anybus", "demo", "--backend", "asyncio"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "summary: 2 jobs completed" in demo.stdout


def blocking(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which ``modules`` cannot be imported, as if not installed."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n" + "".join(f"sys.modules[{module!r}] = None\n" for module in modules)
    )
    return {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


HINT = "error: the anybus command needs the cli extra: pip install 'anybus[cli]'\n"


@pytest.mark.parametrize(
    "args", [["demo"], ["demo", "--backend", "asyncio"], ["--help"], ["sub", "redis://x"], []]
)
def test_without_the_cli_extra_both_front_ends_say_how_to_install_it(
    tmp_path: Path, args: list[str]
) -> None:
    env = blocking(tmp_path, "click")
    for front_end in (
        [sys.executable, "-m", "anybus"],
        [sys.executable, "-c", "from anybus._cli import main; main()"],  # the console script
    ):
        done = subprocess.run(
            [*front_end, *args], capture_output=True, text=True, env=env, check=False
        )
        assert (done.returncode, done.stdout, done.stderr) == (1, "", HINT)


@pytest.mark.parametrize(
    ("args", "instead"),
    [
        (["demo"], " (or --backend asyncio)"),
        (["demo", "--backend", "both"], " (or --backend asyncio)"),
        (["demo", "--backend", "trio"], ""),
        (["--backend", "trio", "demo"], ""),
        (["--backend", "trio", "inspect", "redis://127.0.0.1:1", "--channel", "c"], ""),
    ],
)
def test_without_trio_the_demo_names_the_extra_in_one_line(
    tmp_path: Path, args: list[str], instead: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anybus", *args],
        capture_output=True,
        text=True,
        env=blocking(tmp_path, "trio"),
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"Error: trio is not installed: pip install 'anybus[trio]'{instead}\n"


def test_without_trio_the_demo_runs_on_asyncio(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anybus", "demo", "--backend", "asyncio"],
        capture_output=True,
        text=True,
        env=blocking(tmp_path, "trio"),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "summary: 2 jobs completed" in done.stdout


def test_the_console_script_runs_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    from anybus._cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("anybus ")


def test_ctrl_c_ends_a_command_with_the_shells_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from anybus._cli import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(anyio, "run", interrupted)
    with pytest.raises(SystemExit) as exited:
        main(["demo"])
    assert exited.value.code == 130  # click's own would be 1, after "Aborted!"
    assert capsys.readouterr().err == "\ninterrupted\n"


@pytest.mark.parametrize(
    "args",
    [
        ["pub", "redis://127.0.0.1:1", "BusDataMessage", "source=x", "--channel", ""],
        ["pub", "redis://127.0.0.1:1", "BusDataMessage", "source=x", "--stream", ""],
        ["sub", "redis://127.0.0.1:1", "--channel", ""],
        ["inspect", "redis://127.0.0.1:1", "--stream", ""],
        ["workers", "redis://127.0.0.1:1", "--channel", ""],
    ],
)
def test_an_empty_channel_or_stream_is_a_usage_error(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].endswith("cannot be empty: give it a name")
