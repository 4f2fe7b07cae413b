"""The ``anybus`` command, driven through click's test runner (and, for ``sub``, a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any

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
        (["pub", "redis://x", "BusDataMessage"], "Missing option '--channel'"),
        (["sub", "redis://x", "--channel", "c", "--types", "Nope"], "not registered: Nope"),
        (["sub", "redis://x", "--channel", "c", "--count", "0"], "--count"),
        (["inspect", "redis://x"], "exactly one of --stream NAME or --channel NAME"),
        (["inspect", "redis://x", "--stream", "s", "--channel", "c"], "exactly one of"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(args: list[str], complaint: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output


def test_a_json_document_on_stdin_must_be_an_object() -> None:
    result = invoke("pub", "redis://x", "--channel", "c", "BusDataMessage", "-", input="[1]")
    assert result.exit_code == 2
    assert "stdin must hold a JSON object, got list" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["pub", "--channel", "c", "--connect-timeout", "0.5", "BusDataMessage"],
        ["sub", "--channel", "c", "--connect-timeout", "0.5"],
        ["inspect", "--channel", "c"],
    ],
)
def test_an_unreachable_redis_exits_1_with_one_line(args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    result = invoke(args[0], url, *args[1:])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1
    assert "127.0.0.1" in error[0]
    assert "Traceback" not in result.output


# --- pub, sub, inspect against a real Redis --------------------------------------------------


class Subscriber:
    """``python -m anybus sub`` in a process; ready once it says it has subscribed."""

    def __init__(self, url: str, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anybus", "sub", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        assert first.startswith("subscribed to channel"), first + self._rest(self.process.stderr)

    @staticmethod
    def _rest(stream: IO[str]) -> str:
        return stream.read()

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            pytest.fail(f"sub did not finish; it printed {out!r} {err!r}")
        return self.process.returncode, out, err


def test_pub_reaches_sub_which_shows_undecodable_input(redis_url: str, channel: str) -> None:
    subscriber = Subscriber(redis_url, "--channel", channel, "--count", "4")
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
    subscriber = Subscriber(
        redis_url, "--channel", channel, "--count", "2", "--json", "--types", "BusDataMessage"
    )
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
            "pub",
            redis_url,
            "--stream",
            "--channel",
            stream,
            "BusJobRequestMessage",
            f"job_id={job}",
        )
        assert result.exit_code == 0, result.output
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


def test_inspect_a_missing_stream_exits_1(redis_url: str) -> None:
    result = invoke("inspect", redis_url, "--stream", unique_name())
    assert result.exit_code == 1
    assert "no stream" in result.output


def test_inspect_counts_the_subscribers_of_a_channel(redis_url: str, channel: str) -> None:
    assert invoke("inspect", redis_url, "--channel", channel).output == (
        f"channel {channel!r}: 0 subscriber(s)\n"
    )
    subscriber = Subscriber(redis_url, "--channel", channel, "--count", "1")
    result = invoke("inspect", redis_url, "--channel", channel, "--json")
    assert json.loads(result.output) == {"channel": channel, "subscribers": 1}
    invoke("pub", redis_url, "--channel", channel, "BusDataMessage")
    assert subscriber.finish()[0] == 0


# --- python -m anybus ------------------------------------------------------------------------


def test_python_m_anybus_hands_other_commands_to_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anybus", "inspect", "redis://x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "exactly one of" in done.stderr


def test_without_the_cli_extra_python_m_anybus_names_it(tmp_path: Any) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\nsys.modules['click'] = None\n",
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [sys.executable, "-m", "anybus"]
    missing = subprocess.run(
        [*args, "sub", "redis://x"], capture_output=True, text=True, env=env, check=False
    )
    assert missing.returncode == 1
    assert "pip install 'anybus[cli]'" in missing.stderr
    demo = subprocess.run(
        [*args, "demo", "--backend", "asyncio"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "summary: 2 jobs completed" in demo.stdout
    # The console script (anybus = anybus._cli:main) says the same.
    script = subprocess.run(
        [sys.executable, "-c", "from anybus._cli import main; main(['bench'])"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert script.returncode == 1
    assert script.stderr == (
        "error: the anybus command needs the cli extra: pip install 'anybus[cli]'\n"
    )


def test_the_console_script_runs_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    from anybus._cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("anybus ")
