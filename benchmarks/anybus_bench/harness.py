"""The text harness: anybus against pipecat and the raw primitive, every table and target.

``benchmarks/run.py`` runs it from a checkout (``python benchmarks/run.py --help``). anybus's
cells are measured by the package's own workers and runner, the ones ``anybus bench`` runs;
the references (``references.py``), the detailed W4/W5 tables, the targets and the per-round
ratios of each target are this directory's. Progress goes to stderr, the report to stdout. See
``benchmarks/README.md``; the workloads and targets are defined in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from anybus._bench._cells import BACKENDS, MEMORY_IDS, NETWORK_IDS, Job, number, plan
from anybus._bench._common import FULL, QUICK, W4_MESSAGES
from anybus._bench._network_common import DEFAULT_REDIS_URL, W6_IDS
from anybus._bench._runner import (
    RunConfig,
    cells_document,
    machine,
    redis_reachable,
    run_rounds,
)

from .network_report import network_section
from .references import ALL_IMPLS, PipecatNotFound, find_pipecat_python, pipecat_network_ready
from .report import (
    churn_table,
    description,
    fmt_value,
    latency_table,
    memory_table,
    throughput_table,
)
from .targets import check_targets, targets_document, verdict_line

__all__ = ["main"]

WORKLOAD_IDS = (*MEMORY_IDS, "W6", "W7")
#: W4 takes about 30 s a round, W6 about a minute and W7 about 20 s, and W6/W7 need a Redis
#: server: only when asked for.
DEFAULT_IDS = ("W1", "W2", "W3", "W5")
W5_LEGEND = (
    "   ('vs pipecat': pipecat's time / this time, above 1 = faster; tasks: live before the"
    " bus,\n   once open, with one subscriber, after the cycles, after closing; back: runs"
    " back to baseline;\n   objects: most gc-tracked objects gained; alive: most churn"
    " subscribers not collected)"
)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def expand(workloads: Sequence[str]) -> list[str]:
    """The workload ids to run: ``W6`` stands for its two workloads."""
    expanded: list[str] = []
    for workload in workloads:
        expanded.extend(W6_IDS if workload == "W6" else [workload])
    return expanded


def _parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {item!r}: choose from {', '.join(allowed)}"
            )
    if not items:
        raise argparse.ArgumentTypeError(f"{what}s cannot be empty")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The harness's command line."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark anybus against pipecat's buses and the raw primitive.",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per cell (default: 5)")
    parser.add_argument(
        "--workloads",
        type=lambda v: _parse_list(v, WORKLOAD_IDS, "workload"),
        default=list(DEFAULT_IDS),
        help=(
            "comma-separated, from W1,W2,W3,W4,W5,W6,W7 (default: W1,W2,W3,W5; W4 takes about"
            " 30 s a round; W6 and W7 need a Redis server)"
        ),
    )
    parser.add_argument(
        "--backends",
        type=lambda v: _parse_list(v, BACKENDS, "backend"),
        default=list(BACKENDS),
        help="anybus backends, comma-separated, from asyncio,trio (default: both)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--w4-messages",
        type=int,
        metavar="N",
        help=f"W4: data messages the publisher sends (default: {W4_MESSAGES:,})",
    )
    parser.add_argument(
        "--w6-messages",
        type=int,
        metavar="N",
        help="W6: data messages sent through Redis (default: W6-fanout 20,000, W6-single 10,000)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"W6/W7: the Redis server (default: {DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument("--no-pipecat", action="store_true", help="skip the pipecat reference")
    args = parser.parse_args(argv)
    for option in ("runs", "w4_messages", "w6_messages"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, not {value!r}")
    return args


def _find_pipecat(default_venv: Path | None) -> Path | None:
    try:
        return find_pipecat_python(default_venv=default_venv)
    except PipecatNotFound as exc:
        _err(
            f"pipecat reference: {exc}\n"
            "  continuing as with --no-pipecat: no anybus/pipecat ratios, and the targets"
            " against pipecat are not checked\n"
        )
        return None


def _preflight(
    workloads: list[str], redis_url: str, pipecat_python: Path | None
) -> tuple[list[str], bool]:
    """Drop W6/W7 if there is no Redis server; say whether pipecat's RedisBus can run."""
    if not set(workloads) & set(NETWORK_IDS):
        return workloads, True
    if not redis_reachable(redis_url):
        _err(f"W6/W7: no Redis server answers at {redis_url} (--redis-url): skipping them\n")
        return [w for w in workloads if w not in NETWORK_IDS], True
    if pipecat_python is not None and not pipecat_network_ready(pipecat_python):
        _err(
            f"pipecat network reference: {pipecat_python} cannot import pipecat's RedisBus"
            " (it needs redis-py).\n  install it with:  bash benchmarks/setup_pipecat.sh\n"
            "  continuing W6/W7 without pipecat\n"
        )
        return workloads, False
    return workloads, True


def main(argv: Sequence[str] | None = None, *, default_pipecat_venv: Path | None = None) -> int:
    """Run the harness; return its exit status (1 if a measurement failed or was skipped)."""
    args = parse_args(argv)
    started = time.perf_counter()
    backends: list[str] = args.backends
    if "trio" in backends and find_spec("trio") is None:
        _err(
            "trio is not installed in this Python: skipping the trio backend"
            " (install it with: pip install 'anybus[trio]')"
        )
        backends = [b for b in backends if b != "trio"]
        if not backends:
            return 1
    pipecat_python = None if args.no_pipecat else _find_pipecat(default_pipecat_venv)
    asked = expand(args.workloads)
    workloads, pipecat_network = _preflight(asked, args.redis_url, pipecat_python)
    with_pipecat = {
        "memory": pipecat_python is not None,
        "network": pipecat_python is not None and pipecat_network,
    }
    impls = [
        impl
        for impl in ALL_IMPLS
        if impl.python != "pipecat"
        or with_pipecat["network" if set(impl.workloads) <= set(NETWORK_IDS) else "memory"]
    ]
    rounds = plan(workloads, backends, impls)
    messages: dict[str, int] = {}
    if args.w4_messages is not None:
        messages["W4"] = args.w4_messages
    if args.w6_messages is not None:
        messages.update(dict.fromkeys(W6_IDS, args.w6_messages))
    config = RunConfig(
        quick=args.quick,
        messages=messages,
        redis_url=args.redis_url,
        pythons={} if pipecat_python is None else {"pipecat": pipecat_python},
    )

    def on_start(job: Job, done: int, total: int, round_number: int) -> None:
        progress[:] = [f"[{done:>3}/{total}] round {round_number}: {job.describe()}: "]

    def on_result(job: Job, result: dict[str, object] | None, error: str) -> None:
        shown = (
            fmt_value(job.workload, number(result["value"]))
            if result is not None
            else f"FAILED: {error}"
        )
        _err(progress[0] + shown)

    progress = [""]
    outcomes = run_rounds(rounds, args.runs, config, on_start=on_start, on_result=on_result)
    wall = time.perf_counter() - started
    sizes = QUICK if args.quick else FULL
    meta = machine()
    _out()
    _out(
        f"anybus benchmarks: median of {args.runs} runs, each in a fresh process;"
        f" python {meta['python']}, {meta['platform']}, {meta['cpus']} CPUs,"
        f" anybus {meta['anybus_revision']}" + (" (quick sizes)" if args.quick else "")
    )
    if set(MEMORY_IDS) & set(workloads):
        _out("'vs pipecat': against pipecat AsyncQueueBus on asyncio (its only backend);")
    if {"W1", "W2"} & set(workloads):
        _out("'of raw': fraction of the raw anyio memory stream ceiling on the same backend.")
    for workload in rounds:
        _out()
        if workload in NETWORK_IDS:
            lines = network_section(workload, outcomes, sizes, messages)
        elif workload == "W3":
            lines = [description(workload, sizes, messages), *latency_table(outcomes)]
        elif workload == "W4":
            lines = [description(workload, sizes, messages), *memory_table(outcomes)]
        elif workload == "W5":
            lines = [description(workload, sizes, messages), W5_LEGEND, *churn_table(outcomes)]
        else:
            lines = [description(workload, sizes, messages), *throughput_table(workload, outcomes)]
        for line in lines:
            _out(line)
    _out()
    _out("Targets (docs/benchmarks.md), on medians:")
    verdicts = check_targets(outcomes, workloads)
    width = max([50, *(len(str(verdict["target"])) for verdict in verdicts)])
    for verdict in verdicts:
        _out(verdict_line(verdict, width))
    _out()
    total = sum(len(outcome.results) for outcome in outcomes.values())
    _out(f"harness wall time: {wall:.1f} s for {total} worker processes")

    if args.json is not None:
        report = {
            "meta": {
                **meta,
                "command": [Path(sys.executable).name, *sys.argv],
                "runs": args.runs,
                "quick": args.quick,
                "workloads": workloads,
                "backends": backends,
                "messages": messages,
                "redis_url": args.redis_url,
                "pipecat_python": None if pipecat_python is None else str(pipecat_python),
                "wall_seconds": wall,
            },
            "cells": cells_document(outcomes),
            "targets": targets_document(verdicts),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        _out(f"results written to {args.json}")
    failed = sum(outcome.failed() for outcome in outcomes.values())
    return 1 if failed or len(workloads) < len(asked) else 0


if __name__ == "__main__":
    sys.exit(main())
