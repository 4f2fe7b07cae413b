"""``anybus bench``, driven through click's test runner with the quick sizes.

Every measurement is a real worker process; these tests check what the command reports and
how it fails, never how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click")

import anyio
from click.testing import CliRunner, Result

from anybus._bench import _cells, _runner
from anybus._cli import cli

from .redis_support import free_port

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def bench(*args: str) -> Result:
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False, prog_name="anybus")


def document(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)  # nothing else on stdout
    return report


def cells(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c["impl"], c["backend"], c["workload"]): c for c in report["cells"]}


def test_a_quick_memory_run_prints_a_table_for_each_workload() -> None:
    result = bench("--quick", "--runs", "1", "--workloads", "W1,W2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "anybus bench on memory" in out
    assert "W1 fan-out: 2,000 messages x 10 subscribers" in out
    assert "W2 single: 10,000 messages x 1 subscriber" in out
    assert "anybus MemoryBus" in out
    assert "trio" in out
    # anybus only: the references and the targets are the repository's harness
    for reference in ("pipecat AsyncQueueBus", "raw anyio stream", "of raw", "Targets"):
        assert reference not in out
    assert "python benchmarks/run.py in a checkout of the anybus repository" in out


def test_json_has_every_workload_on_both_backends_with_sane_figures() -> None:
    report = document(bench("--quick", "--runs", "2", "--workloads", "W1,W3,W5", "--json"))
    assert set(report) == {"meta", "cells"}
    assert report["meta"]["workloads"] == ["W1", "W3", "W5"]
    assert report["meta"]["backends"] == ["asyncio", "trio"]
    assert report["meta"]["quick"] is True
    found = cells(report)
    for backend in ("asyncio", "trio"):
        for workload in ("W1", "W3", "W5"):
            cell = found["anybus", backend, workload]
            assert len(cell["runs"]) == 2
            assert cell["failed"] == 0
            assert cell["min"] <= cell["median"] <= cell["max"]
            assert cell["median"] > 0
        w1 = found["anybus", backend, "W1"]["runs"][0]
        assert w1["metric"] == "deliveries_per_s"
        assert w1["deliveries"] == 2_000 * 10
        assert found["anybus", backend, "W5"]["runs"][0]["tasks_back_to_baseline"] is True
    assert {impl for impl, _, _ in found} == {"anybus"}


def test_the_global_backend_chooses_the_backend_unless_bench_is_told() -> None:
    args = ["--backend", "trio", "bench", "--quick", "--runs", "1", "--workloads", "W2"]
    report = document(CliRunner().invoke(cli, [*args, "--json"]))
    assert report["meta"]["backends"] == ["trio"]
    assert {backend for _, backend, _ in cells(report)} == {"trio"}


def test_plot_writes_a_png_of_throughput_against_subscribers(tmp_path: Path) -> None:
    png = tmp_path / "subscribers.png"
    result = bench(
        "--quick",
        "--runs",
        "1",
        "--backends",
        "asyncio",
        "--workloads",
        "W1",
        "--subscribers",
        "1,3",
        "--messages",
        "500",
        "--plot",
        str(png),
        "--json",
    )
    report = document(result)
    assert report["meta"]["workloads"] == ["W1@1", "W1@3"]
    assert cells(report)["anybus", "asyncio", "W1@3"]["runs"][0]["subscribers"] == 3
    assert f"plot written to {png}" in result.stderr
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from importlib.util import find_spec

    monkeypatch.setattr(
        "anybus._cli._bench.find_spec",
        lambda name: None if name == "matplotlib" else find_spec(name),
    )
    result = bench("--quick", "--plot", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.output == "Error: --plot needs matplotlib: pip install 'anybus[bench]'\n"
    assert not (tmp_path / "x.png").exists()


async def _bench_keys(url: str) -> set[bytes]:
    from anybus.redis import RedisSettings
    from anybus.redis._client import RedisClient

    client = await RedisClient.create(RedisSettings.from_url(url), name="test-bench-keys")
    try:
        keys: list[bytes] = await client.command("KEYS", "anybus-bench:*")
    finally:
        await client.close()
    return set(keys)


def test_a_quick_w6_run_against_the_real_redis(redis_url: str) -> None:
    keys_before = anyio.run(_bench_keys, redis_url)
    report = document(
        bench(
            "--bus",
            redis_url,
            "--workloads",
            "W6",
            "--quick",
            "--messages",
            "50",
            "--runs",
            "1",
            "--backends",
            "asyncio",
            "--json",
        )
    )
    assert report["meta"]["workloads"] == ["W6-fanout", "W6-single"]
    assert report["meta"]["bus"] == redis_url
    found = cells(report)
    impls = {"anybus-redis", "anybus-stream", "anybus-stream-queued"}
    for impl in impls:
        for workload, subscribers in (("W6-fanout", 10), ("W6-single", 1)):
            run = found[impl, "asyncio", workload]["runs"][0]
            assert run["messages"] == 50
            assert run["subscribers"] == subscribers
            assert run["value"] > 0
    assert {impl for impl, _, _ in found} == impls
    # Every RedisStreamBus run deleted its stream.
    assert anyio.run(_bench_keys, redis_url) <= keys_before


def test_a_quick_w7_run_of_round_trips_between_two_processes(redis_url: str) -> None:
    keys_before = anyio.run(_bench_keys, redis_url)
    args = ("--bus", redis_url, "--workloads", "W7", "--backends", "trio")
    report = document(bench(*args, "--quick", "--runs", "1", "--json"))
    found = cells(report)
    assert set(found) == {
        ("anybus-redis", "trio+trio", "W7"),
        ("anybus-stream", "trio+trio", "W7"),
        ("anybus-stream-queued", "trio+trio", "W7"),
    }
    for cell in found.values():
        run = cell["runs"][0]
        assert run["round_trips"] == 50
        assert run["answered"] == 50 + 10  # the measured round trips and the warm-up
        assert run["mismatched"] == 0
    assert anyio.run(_bench_keys, redis_url) <= keys_before


def test_an_unreachable_redis_exits_1_with_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    result = bench("--bus", url, "--quick")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: redis at {url} is unreachable (check the url, and that redis is running)"
    ]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--bus", "memcached://x"], "expected memory or a redis:// url"),
        (["--bus", "redis://x:port"], "--bus"),
        (["--workloads", "W9"], "'W9' is not a workload of the memory bus"),
        (["--workloads", "W6"], "'W6' is not a workload of the memory bus"),
        (["--bus", "redis://x", "--workloads", "W1"], "'W1' is not a workload of a redis"),
        (["--backends", "curio"], "expected asyncio, trio, both"),
        (["--runs", "0"], "--runs"),
        (["--messages", "0"], "--messages"),
        (["--subscribers", "0,2"], "counts of at least 1"),
        (["--subscribers", "many"], "counts of at least 1"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_usage_exits_2(args: list[str], complaint: str) -> None:
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output


@pytest.mark.parametrize(
    ("option", "value"), [("--compare", "pipecat"), ("--pipecat-python", "/venv/bin/python")]
)
def test_the_comparison_with_pipecat_says_where_it_moved(option: str, value: str) -> None:
    result = bench("--quick", option, value)
    assert result.exit_code == 2, result.output
    last = result.stderr.splitlines()[-1]
    assert last == (
        f"Error: Invalid value for '{option}': {value!r}: anybus bench measures anybus only,"
        " the comparison moved to python benchmarks/run.py in a checkout of the anybus"
        " repository (docs/benchmarks.md)"
    )
    assert option not in bench("--help").stdout


def test_a_failed_measurement_exits_1_after_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(job: _cells.Job, config: _runner.RunConfig) -> tuple[None, str]:
        return None, "exit status 1\nRuntimeError: the worker fell over"

    monkeypatch.setattr(_runner, "run_worker", fail)
    result = bench("--quick", "--runs", "1", "--workloads", "W2", "--backends", "asyncio")
    assert result.exit_code == 1
    assert "anybus MemoryBus (1 failed)" in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "Error: 1 of 1 measurements failed; W2 anybus MemoryBus on asyncio:"
        " RuntimeError: the worker fell over"
    )
