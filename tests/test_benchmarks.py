"""The repository's benchmark harness (``benchmarks/run.py``) runs, with the quick sizes.

Every measurement is a real worker process; these tests check that the harness measures anybus
beside its references and reports them, never how fast anything is. pipecat is not needed: the
runs pass ``--no-pipecat``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"


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
