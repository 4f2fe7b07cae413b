"""The programs in examples/ run, on every backend they support, and print what the docs show.

Each runs as its own process, as a reader would run it, with warnings turned into errors.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>`` and return its output; fail unless it exits 0, silently."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stderr}"
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_quickstart(backend: str) -> None:
    lines = run_example("quickstart.py", "--backend", backend).splitlines()
    assert lines[0] == f"runner: sent 3 greetings on {backend}"
    for who in ("Ada", "Grace", "Barbara"):
        assert f"worker: greeting {who}" in lines
    answers = [line for line in lines if line.startswith("runner: got")]
    assert answers == [
        "runner: got 'hello, Ada' from worker",
        "runner: got 'hello, Grace' from worker",
        "runner: got 'hello, Barbara' from worker",
    ]
    assert lines[-1] == "done: <MemoryBus stopped, 1 subscriber, 0 queued>"


def test_quickstart_is_the_same_program_on_both_backends() -> None:
    outputs = {b: run_example("quickstart.py", "--backend", b) for b in ("asyncio", "trio")}
    assert outputs["asyncio"].replace("asyncio", "trio") == outputs["trio"]


def test_asyncio_app() -> None:
    lines = run_example("asyncio_app.py").splitlines()
    # The halt reaches the warehouse while it packs order 1, ahead of the queued orders.
    assert lines.index("warehouse: packing order 1 (kettle)") < lines.index(
        "warehouse: halt received (the lorry broke down) while packing"
    )
    assert lines.index("warehouse: halt received (the lorry broke down) while packing") < (
        lines.index("warehouse: order 1 shipped")
    )
    assert "desk: shipped [1], refused [2, 3, 4]" in lines
    assert "bus: warehouse handled 5 messages, 0 queued" in lines
    assert lines[-1] == "asyncio app: done"


def test_trio_app() -> None:
    lines = run_example("trio_app.py").splitlines()
    assert lines[0] == "app: bus running in the nursery"
    alarms = [line for line in lines if line.startswith("recorder: ALARM")]
    assert [alarm.split(" (")[0] for alarm in alarms] == [
        f"recorder: ALARM boiler at {value}.0" for value in (92, 94, 96, 98)
    ]
    assert all("handled at once" in alarm for alarm in alarms)
    # Backpressure: the bound on the recorder's inbox held.
    assert "recorder: stored 30 readings; at most 5 waited in its inbox" in lines
    assert lines[-1] == "trio app: done"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_jobs(backend: str) -> None:
    lines = run_example("jobs.py", "--backend", backend).splitlines()
    assert lines[0] == f"runner: on {backend}"
    assert lines[1:5] == [
        "runner: a.wav 33%",
        "runner: a.wav 67%",
        "runner: a.wav 100%",
        "runner: a.wav -> 'transcript of a.wav'",
    ]
    # Giving up on long.wav cancels it at the worker, and b.wav, queued behind it, runs.
    cancelled = "transcriber: job long.wav cancelled (the caller left the job's scope)"
    assert lines.index(cancelled) < lines.index(
        "runner: b.wav -> 'transcript of b.wav' (it waited for long.wav)"
    )
    assert "runner: empty.wav failed: nothing to transcribe" in lines
    assert "runner: streamed ['STRUCTURED', 'CONCURRENCY', 'IS', 'NICE'] ({'words': 4})" in lines
    assert lines[-1] == "done: transcriber completed 2, cancelled 1, failed 1"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_postgres_quickstart(postgres_dsn: str, backend: str) -> None:
    # postgres_dsn skips without a server, and fails instead under CI.
    channel = f"anybus-example-{uuid.uuid4().hex}"
    options = ["--backend", backend, "--dsn", postgres_dsn, "--channel", channel]
    # What was stored while the worker was away reaches it when it is back, in order, once.
    assert run_example("postgres_quickstart.py", *options).splitlines() == [
        f"worker: joined on {backend}, then stopped",
        "runner: stored 3 tasks while the worker was away",
        "worker: task 1",
        "worker: task 2",
        "worker: task 3",
        "runner: the worker did tasks [1, 2, 3]",
        "done: the worker received 3, missed 0",
    ]


@pytest.mark.parametrize(
    ("worker_backend", "runner_backend"), [("trio", "asyncio"), ("asyncio", "trio")]
)
def test_two_processes_over_redis(
    redis_url: str, worker_backend: str, runner_backend: str
) -> None:
    channel = f"anybus-example-{uuid.uuid4().hex}"
    common = ["--url", redis_url, "--channel", channel]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "error",
            str(EXAMPLES / "redis_worker.py"),
            "--backend",
            worker_backend,
            *common,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runner = run_example("redis_runner.py", "--backend", runner_backend, *common)
        worker_out, worker_err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, worker_err
    assert worker_err == ""
    runner_lines = runner.splitlines()
    assert f"runner: worker found; calling it from {runner_backend}" in runner_lines
    for image in ("cat.png", "dog.png", "owl.png"):
        assert f"runner: {image} -> 640x480 (resized on {worker_backend})" in runner_lines
        assert f"runner: {image} step 3/3" in runner_lines
    assert runner_lines[-2:] == ["runner: gave up on huge.tiff", "runner: worker shut down"]
    worker_lines = worker_out.splitlines()
    assert (
        worker_lines[0]
        == f"worker: serving 'resize' jobs on {worker_backend}, channel {channel!r}"
    )
    assert "worker: huge.tiff cancelled by the runner" in worker_lines
    assert worker_lines[-1] == "worker: stopped after 4 jobs (1 cancelled)"


def _interruptible() -> None:
    """In the child, before it runs: Ctrl-C's default. A suite started in the background
    by a shell without job control (``./scripts/test &`` in a script) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("example", "ready", "interrupted"),
    [
        ("redis_worker.py", "worker: serving 'resize' jobs", "worker: interrupted"),
        # No worker on the channel: the runner waits for one, saying so every second.
        ("redis_runner.py", "runner: waiting for the worker...", "runner: interrupted"),
    ],
)
def test_ctrl_c_ends_the_redis_examples_with_one_line(
    redis_url: str, backend: str, example: str, ready: str, interrupted: str
) -> None:
    channel = f"anybus-example-{uuid.uuid4().hex}"
    options = ["--backend", backend, "--url", redis_url, "--channel", channel]
    process = subprocess.Popen(
        [sys.executable, "-W", "error", str(EXAMPLES / example), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(ready), first
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # One line of its own. On trio, Ctrl-C can tear the bus down before its Redis writer has
    # published the worker's goodbye: the transport then says so, truthfully (a known wart).
    lines = err.splitlines()
    assert (process.returncode, lines[-1:]) == (130, [interrupted])
    assert all("message(s) not published: the bus stopped first" in line for line in lines[:-1])
