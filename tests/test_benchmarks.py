"""The repository's benchmark harness (``benchmarks/run.py``) runs, with the quick sizes.

Every measurement is a real worker process; these tests check that the harness measures anybus
beside its references and reports them, never how fast anything is. pipecat is not needed: the
runs pass ``--no-pipecat``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anybus._bench._cells import Impl, Job, Outcome

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
sys.path.append(str(ROOT / "benchmarks"))

from anybus_bench.targets import check_targets  # noqa: E402


def harness(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run the harness; return the process and the JSON report it wrote."""
    report = tmp_path / "report.json"
    command = [sys.executable, str(RUN), "--quick", "--runs", "1", "--no-pipecat"]
    proc = subprocess.run(
        [*command, *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(report.read_text())


def cells(report: Any) -> set[tuple[str, str, str]]:
    return {(c["impl"], c["backend"], c["workload"]) for c in report["cells"] if not c["failed"]}


def test_the_harness_measures_anybus_beside_the_raw_primitive(tmp_path: Path) -> None:
    proc, report = harness(tmp_path, "--workloads", "W2", "--backends", "asyncio")
    assert cells(report) == {
        ("anybus", "asyncio", "W2"),
        ("raw-anyio", "asyncio", "W2"),
        ("raw-asyncio-queue", "asyncio", "W2"),
    }
    assert "W2 single: 10,000 data messages x 1 subscriber" in proc.stdout
    assert "Targets (docs/benchmarks.md), on medians:" in proc.stdout
    assert "W2 anybus on asyncio >= 3x pipecat on asyncio" in proc.stdout  # not measured


def test_the_harness_measures_the_bare_glide_client(tmp_path: Path, redis_url: str) -> None:
    args = ("--workloads", "W6", "--w6-messages", "50", "--redis-url", redis_url)
    _, report = harness(tmp_path, *args, "--backends", "trio")
    assert ("raw-glide", "trio", "W6-single") in cells(report)
    assert ("anybus-stream", "trio", "W6-fanout") in cells(report)


def test_the_harness_measures_the_bare_glide_ping_pong_beside_anybus(
    tmp_path: Path, redis_url: str
) -> None:
    args = ("--workloads", "W7", "--backends", "trio", "--redis-url", redis_url)
    proc, report = harness(tmp_path, *args)
    assert ("raw-glide", "trio+trio", "W7") in cells(report)
    [raw] = [c for c in report["cells"] if c["impl"] == "raw-glide"]
    [run] = raw["runs"]
    assert run["metric"] == "round_trip_p50_ms"
    assert (run["round_trips"], run["warmup"], run["mismatched"]) == (50, 10, 0)
    assert run["answered"] == 60  # every ping, the unmeasured ones included
    assert re.search(r"^  raw glide client +trio\+trio ", proc.stdout, re.MULTILINE)
    [target] = [
        t for t in report["targets"] if t["workload"] == "W7" and "raw glide" in str(t["target"])
    ]
    assert target["target"] == "W7 anybus RedisBus trio+trio p50 within 1.15x of raw glide"
    assert target["met"] is (target["ratio_of_medians"] <= 1.15)
    assert target["target"] in proc.stdout


def _w7_outcome(key: str, backend: str, p50s: list[float]) -> Outcome:
    job = Job(Impl(key, key, "-", (backend,), ("W7",)), backend, "W7")
    return Outcome(job, [{"value": p50, "p50_ms": p50} for p50 in p50s])


@pytest.mark.parametrize(("anybus_p50", "met"), [(1.1, True), (1.15, True), (1.2, False)])
def test_the_w7_target_holds_anybus_within_1_15x_of_bare_glide_on_the_same_backends(
    anybus_p50: float, met: bool
) -> None:
    outcomes = {
        ("anybus-redis", "asyncio+trio", "W7"): _w7_outcome(
            "anybus-redis", "asyncio+trio", [anybus_p50, 9.0, anybus_p50]
        ),
        ("raw-glide", "asyncio+trio", "W7"): _w7_outcome("raw-glide", "asyncio+trio", [1.0] * 3),
        # Another pair's floor, which must not be compared with.
        ("raw-glide", "trio+trio", "W7"): _w7_outcome("raw-glide", "trio+trio", [0.1] * 3),
    }
    verdicts = {str(v["target"]): v for v in check_targets(outcomes, ["W7"])}
    verdict = verdicts["W7 anybus RedisBus asyncio+trio p50 within 1.15x of raw glide"]
    assert verdict["met"] is met
    assert verdict["ratio_of_medians"] == pytest.approx(anybus_p50)
    assert verdict["held"] == f"{2 if met else 0}/3 rounds"
    assert verdicts["W7 anybus RedisBus trio+trio p50 within 1.15x of raw glide"]["met"] is None


@pytest.mark.parametrize(("stream_p50", "met"), [(1.4, True), (1.5, True), (1.6, False)])
def test_the_w7_stream_target_holds_the_stream_bus_within_1_5x_of_redisbus(
    stream_p50: float, met: bool
) -> None:
    outcomes = {
        ("anybus-stream", "trio+asyncio", "W7"): _w7_outcome(
            "anybus-stream", "trio+asyncio", [stream_p50] * 3
        ),
        ("anybus-redis", "trio+asyncio", "W7"): _w7_outcome(
            "anybus-redis", "trio+asyncio", [1.0] * 3
        ),
    }
    verdicts = {str(v["target"]): v for v in check_targets(outcomes, ["W7"])}
    verdict = verdicts["W7 RedisStreamBus trio+asyncio p50 within 1.5x of RedisBus"]
    assert verdict["met"] is met
    assert verdict["ratio_of_medians"] == pytest.approx(stream_p50)
    assert verdicts["W7 RedisStreamBus trio+trio p50 within 1.5x of RedisBus"]["met"] is None


def _w6_outcome(key: str, backend: str, workload: str, rates: list[float]) -> Outcome:
    job = Job(Impl(key, key, "-", (backend,), (workload,)), backend, workload)
    return Outcome(job, [{"value": rate} for rate in rates])


@pytest.mark.parametrize(("queued", "met"), [(1.2, True), (1.0, True), (0.9, False)])
def test_the_w6_stream_target_is_on_pipelined_sends_with_the_default_beside_it(
    queued: float, met: bool
) -> None:
    outcomes = {
        ("pipecat-redis", "asyncio", "W6-single"): _w6_outcome(
            "pipecat-redis", "asyncio", "W6-single", [1000.0] * 3
        ),
        ("anybus-stream-queued", "trio", "W6-single"): _w6_outcome(
            "anybus-stream-queued", "trio", "W6-single", [1000.0 * queued] * 3
        ),
        ("anybus-stream", "trio", "W6-single"): _w6_outcome(
            "anybus-stream", "trio", "W6-single", [700.0] * 3
        ),
    }
    verdicts = {str(v["target"]): v for v in check_targets(outcomes, ["W6-single"])}
    verdict = verdicts["W6-single RedisStreamBus queued trio >= 1x pipecat RedisBus"]
    assert verdict["met"] is met
    assert verdict["ratio_of_medians"] == pytest.approx(queued)
    reference = verdicts["(no target) W6-single RedisStreamBus stored trio vs pipecat"]
    assert reference["met"] is None
    assert "0.70x" in str(reference["summary"])
    assert (
        verdicts["W6-single RedisStreamBus queued asyncio >= 1x pipecat RedisBus"]["met"] is None
    )
