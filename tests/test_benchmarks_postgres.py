"""W8 (``benchmarks/postgres_w8.py``) runs, with tiny sizes, against the shared Postgres server.

Each measurement is a real worker process (two for a ping-pong); these tests check that the
script measures anybus beside the bare psycopg floor, reports both and the targets, and leaves
no schema behind — never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
W8 = ROOT / "benchmarks" / "postgres_w8.py"


def w8_schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'w8\\_%'"
        ).fetchall()
    return {str(name) for (name,) in rows}


def run_w8(tmp_path: Path, dsn: str, *args: str) -> tuple[str, Any]:
    report = tmp_path / "w8.json"
    command = [sys.executable, str(W8), "--runs", "1", "--dsn", dsn, "--json", str(report)]
    proc = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=100, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(report.read_text())


def cells(report: Any) -> dict[tuple[str, str, str], Any]:
    return {(c["impl"], c["backend"], c["workload"]): c for c in report["cells"]}


def test_w8_measures_postgres_bus_beside_the_psycopg_floor(
    tmp_path: Path, postgres_dsn: str
) -> None:
    before = w8_schemas(postgres_dsn)
    sizes = ("--fanout-messages", "50", "--single-messages", "50")
    stdout, report = run_w8(
        tmp_path, postgres_dsn, "--workloads", "W8-fanout,W8-single", "--backends", "trio", *sizes
    )
    found = cells(report)
    assert set(found) == {
        ("floor", "sync", "W8-fanout"),
        ("anybus", "trio", "W8-fanout"),
        ("anybus-queued", "trio", "W8-fanout"),
        ("floor", "sync", "W8-single"),
        ("anybus", "trio", "W8-single"),
        ("anybus-queued", "trio", "W8-single"),
    }
    for (impl, _, workload), cell in found.items():
        assert not cell["errors"]
        [run] = cell["runs"]
        subscribers = 10 if workload == "W8-fanout" else 1
        assert (run["messages"], run["subscribers"]) == (50, subscribers)
        assert run["deliveries"] == 50 * subscribers
        if impl != "floor":
            assert (run["gaps"], run["missed"]) == (0, 0)
        if impl == "anybus-queued":
            assert run["impl"] == "anybus-queued"
    assert "W8-single (W6's W2 through Postgres): 50 data messages" in stdout
    assert "  bare psycopg (floor)       sync" in stdout
    assert "  anybus PostgresBus queued  trio" in stdout
    targets = {t["target"]: t for t in report["targets"]}
    assert set(targets) == {
        "W8-fanout anybus queued trio >= 0.8x floor",
        "W8-single anybus queued trio >= 0.8x floor",
        "(no target) W8-fanout anybus stored trio vs floor",
        "(no target) W8-single anybus stored trio vs floor",
    }
    for name, target in targets.items():
        if name.startswith("(no target)"):
            assert target["met"] is None
        else:
            assert target["met"] is (target["ratio_of_medians"] >= 0.8)
        assert name in stdout
    assert w8_schemas(postgres_dsn) <= before  # every run dropped its schema


def test_w8_measures_the_ping_pong_beside_the_floors(tmp_path: Path, postgres_dsn: str) -> None:
    before = w8_schemas(postgres_dsn)
    stdout, report = run_w8(
        tmp_path,
        postgres_dsn,
        *("--workloads", "W8-latency", "--round-trips", "20", "--warmup", "5"),
    )
    found = cells(report)
    pairs = {"asyncio+asyncio", "asyncio+trio", "trio+asyncio", "trio+trio"}
    assert set(found) == {("floor", "sync+sync", "W8-latency")} | {
        (impl, pair, "W8-latency") for pair in pairs for impl in ("anybus", "anybus-uncarried")
    }
    for (impl, _, _), cell in found.items():
        assert not cell["errors"]
        [run] = cell["runs"]
        assert run["metric"] == "round_trip_p50_ms"
        assert (run["round_trips"], run["warmup"], run["mismatched"]) == (20, 5, 0)
        assert run["answered"] == 25  # every ping, the unmeasured ones included
        if impl != "floor":
            assert run["gaps"] == 0
    assert "  anybus PostgresBus         asyncio+trio" in stdout
    targets = {t["target"]: t for t in report["targets"] if "asyncio+trio" in t["target"]}
    assert set(targets) == {
        "W8-latency anybus asyncio+trio p50 within 1.3x floor",
        "W8-latency anybus carry off asyncio+trio p50 within 1.3x floor",
    }
    for target in targets.values():
        assert target["met"] is (target["ratio_of_medians"] <= 1.3)
    assert w8_schemas(postgres_dsn) <= before
