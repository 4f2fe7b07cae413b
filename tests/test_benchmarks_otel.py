"""``benchmarks/otel_cost.py`` runs, with the quick sizes, and reports every mode against off.

Every measurement is a real worker process; these tests check what the script measures and
reports (the modes, the spans that reached the exporter, the JSON's shape), never how fast
anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "otel_cost.py"


def otel_cost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_mode_is_measured_against_off_in_the_same_run(tmp_path: Path) -> None:
    report_path = tmp_path / "otel.json"
    args = ("--quick", "--runs", "1", "--workloads", "W2", "--backends", "asyncio")
    proc = otel_cost(*args, "--json", str(report_path))
    assert proc.returncode == 0, proc.stderr
    report: Any = json.loads(report_path.read_text())

    assert report["runs"] == 1
    assert report["quick"] is True
    assert report["modes"] == ["off", "unsampled", "sampled"]
    cells = {(c["mode"], c["backend"], c["workload"]): c for c in report["cells"]}
    assert set(cells) == {(mode, "asyncio", "W2") for mode in report["modes"]}
    for cell in cells.values():
        assert cell["failed"] == 0
        assert cell["median"] > 0
        assert cell["min"] <= cell["median"] <= cell["max"]
        assert len(cell["round_ratios"]) == 1
        [run] = cell["runs"]
        assert (run["workload"], run["backend"], run["mode"]) == ("W2", "asyncio", cell["mode"])
        assert (run["messages"], run["subscribers"]) == (10_000, 1)  # the harness's QUICK W2

    off = cells[("off", "asyncio", "W2")]
    assert off["ratio_to_off"] == 1.0
    [off_run] = off["runs"]
    assert off_run["otel_imported"] is False  # off: OpenTelemetry is never even imported
    for mode in ("unsampled", "sampled"):
        cell = cells[(mode, "asyncio", "W2")]
        assert cell["ratio_to_off"] == pytest.approx(cell["median"] / off["median"])
        [run] = cell["runs"]
        assert run["otel_imported"] is True
        assert "messaging.process.duration" in run["metrics"]
    [unsampled] = cells[("unsampled", "asyncio", "W2")]["runs"]
    assert unsampled["spans"] == 0  # ALWAYS_OFF: nothing reaches a processor
    [sampled] = cells[("sampled", "asyncio", "W2")]["runs"]
    assert sampled["spans_expected"] == 2 * 10_001  # a producer and a consumer span a message
    assert 0 < sampled["spans"] <= sampled["spans_expected"]

    assert "W2: 10,000 data messages x 1 subscriber; deliveries/s" in proc.stdout
    for mode in report["modes"]:
        assert f"  asyncio  {mode:<10}" in proc.stdout
    assert "1.0000x" in proc.stdout  # off against itself


def test_an_unknown_workload_is_refused() -> None:
    proc = otel_cost("--workloads", "W3", "--runs", "1", "--quick")
    assert proc.returncode == 2
    assert "--workloads: choose from W1,W2" in proc.stderr
