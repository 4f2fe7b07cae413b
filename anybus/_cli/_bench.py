"""``anybus bench``: anybus's workloads on the memory bus or the Redis buses.

The workloads are defined in ``docs/benchmarks.md``; the measurements are ``anybus._bench``'s
(one fresh process per measurement, in rounds). This module chooses the cells from the options,
shows a progress bar on stderr, and prints a table of results (or one JSON document) and a
plot. See ``docs/cli.md``. The comparison with other buses lives in the repository's
``benchmarks/``, not here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._bench._cells import MEMORY_IDS, NETWORK_IDS, Job, Outcome, plan, sweep_id
from .._bench._common import FULL, QUICK
from .._bench._runner import RunConfig, cells_document, machine, redis_reachable, run_rounds
from ._bench_output import COMPARISON, render, write_plot
from ._common import BACKENDS, Failure, settings_of, stdout_console

__all__ = ["bench"]

MEMORY_DEFAULT = ("W1", "W2", "W3", "W5")
NETWORK_DEFAULT = ("W6", "W7")
#: The subscriber counts of ``--plot`` unless ``--subscribers`` says otherwise.
PLOT_SUBSCRIBERS = (1, 2, 5, 10, 20)


def _workloads(value: str | None, network: bool) -> list[str]:
    allowed = ("W6", "W7", *NETWORK_IDS) if network else MEMORY_IDS
    names = [w.strip() for w in value.split(",") if w.strip()] if value else []
    names = names or list(NETWORK_DEFAULT if network else MEMORY_DEFAULT)
    for name in names:
        if name not in allowed:
            where = "a redis:// bus" if network else "the memory bus"
            raise click.BadParameter(
                f"{name!r} is not a workload of {where}: choose from {', '.join(allowed)}",
                param_hint="--workloads",
            )
    expanded: list[str] = []
    for name in names:
        for workload in ("W6-fanout", "W6-single") if name == "W6" else (name,):
            if workload not in expanded:
                expanded.append(workload)
    return expanded


def _backends(ctx: click.Context, value: str | None) -> list[str]:
    if value is None:
        parent = ctx.parent
        explicit = parent is not None and parent.get_parameter_source("backend") not in (
            ParameterSource.DEFAULT,
            None,
        )
        return [ctx.obj["backend"]] if explicit else list(BACKENDS)
    names = [b.strip() for b in value.split(",") if b.strip()]
    names = list(BACKENDS) if names == ["both"] else names
    if not names or any(name not in BACKENDS for name in names):
        raise click.BadParameter(
            f"expected asyncio, trio, both or a comma-separated list, got {value!r}",
            param_hint="--backends",
        )
    return [backend for backend in BACKENDS if backend in names]


def _subscribers(value: str | None, plotting: bool) -> tuple[int, ...]:
    if value is None:
        return PLOT_SUBSCRIBERS if plotting else ()
    try:
        counts = tuple(sorted({int(n) for n in value.split(",") if n.strip()}))
    except ValueError:
        counts = ()
    if not counts or counts[0] < 1:
        raise click.BadParameter(
            f"expected comma-separated counts of at least 1, got {value!r}",
            param_hint="--subscribers",
        )
    return counts


def _with_sweep(workloads: list[str], family: str, counts: Sequence[int]) -> list[str]:
    """``workloads`` with ``family``'s cells at each subscriber count, where it stands (or
    first)."""
    sweep = [sweep_id(family, n) for n in counts]
    if family not in workloads:
        return [*sweep, *workloads]
    at = workloads.index(family)
    return [*workloads[:at], *sweep, *workloads[at + 1 :]]


def _check_environment(backends: list[str], network: bool, plotting: bool) -> None:
    if plotting and find_spec("matplotlib") is None:
        raise Failure("--plot needs matplotlib: pip install 'anybus[bench]'")
    if "trio" in backends and find_spec("trio") is None:
        raise Failure("trio is not installed: pip install 'anybus[trio]' (or --backends asyncio)")
    if network and find_spec("glide") is None:
        raise Failure("a redis:// bus needs redis support: pip install 'anybus[redis,cli]'")


def _moved(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The options of the comparison that moved to the repository's ``benchmarks/``."""
    if value is not None:
        raise click.BadParameter(
            f"{value!r}: anybus bench measures anybus only, the comparison moved to {COMPARISON}",
            ctx=ctx,
            param=param,
        )


@click.command()
@click.option(
    "--bus",
    default="memory",
    show_default=True,
    metavar="memory|redis://URL",
    help="memory: W1-W5 on MemoryBus; a redis:// url: W6/W7 on RedisBus and RedisStreamBus",
)
@click.option(
    "--workloads",
    default=None,
    metavar="LIST",
    help="comma-separated; memory: W1-W5 (default W1,W2,W3,W5), redis: W6,W7 (default both)",
)
@click.option(
    "--backends",
    "--backend",
    "backends_option",
    default=None,
    metavar="LIST",
    help="asyncio, trio, both or asyncio,trio (default: both, or the global --backend if given)",
)
@click.option(
    "--runs", type=click.IntRange(min=1), default=5, show_default=True, help="runs per cell"
)
@click.option("--quick", is_flag=True, help="small sizes, seconds per run: a smoke test")
@click.option(
    "--messages",
    type=click.IntRange(min=1),
    default=None,
    help="data messages of W1, W2, W4 and W6 (default: the workloads' own)",
)
@click.option(
    "--subscribers",
    default=None,
    metavar="LIST",
    help="run the fan-out (W1 or W6-fanout) at these numbers of subscribers instead of 10,"
    f" e.g. 1,5,20 (default with --plot: {','.join(map(str, PLOT_SUBSCRIBERS))})",
)
@click.option("--compare", hidden=True, expose_value=False, callback=_moved)
@click.option("--pipecat-python", hidden=True, expose_value=False, callback=_moved)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, no table")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="write deliveries/s against subscribers, per backend (needs anybus[bench])",
)
@click.pass_context
def bench(
    ctx: click.Context,
    bus: str,
    workloads: str | None,
    backends_option: str | None,
    runs: int,
    quick: bool,
    messages: int | None,
    subscribers: str | None,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Measure anybus's buses on the workloads W1-W7 (defined in the documentation,
    docs/benchmarks.md): each measurement in a fresh process, --runs times, in rounds; shows
    the median and the min-max of each cell.

    The comparison with pipecat's buses, the raw primitive and the bare Redis clients runs
    from a checkout of the repository: python benchmarks/run.py.
    """
    network = bus != "memory"
    url = bus if network else None
    if url is not None:
        if not url.startswith(("redis://", "rediss://")):
            raise click.BadParameter(
                f"expected memory or a redis:// url, got {bus!r}", param_hint="--bus"
            )
        try:
            settings_of(url)
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint="--bus") from None
    chosen = _workloads(workloads, network)
    backends = _backends(ctx, backends_option)
    counts = _subscribers(subscribers, plot is not None)
    family = "W6-fanout" if network else "W1"
    if counts:
        chosen = _with_sweep(chosen, family, counts)
    _check_environment(backends, network, plot is not None)
    if url is not None and not redis_reachable(url):
        raise Failure(f"redis at {url} is unreachable (check the url, and that redis is running)")

    sizes = QUICK if quick else FULL
    bases = ("W6-fanout", "W6-single") if network else ("W1", "W2", "W4")
    config = RunConfig(
        quick=quick,
        messages=dict.fromkeys(bases, messages) if messages else {},
        redis_url=url or "",
    )
    rounds = plan(chosen, backends)
    started = time.perf_counter()
    outcomes = _run_with_progress(rounds, runs, config)
    wall = time.perf_counter() - started

    meta: dict[str, Any] = {
        **machine(),
        "bus": "memory" if url is None else url,
        "runs": runs,
        "quick": quick,
        "workloads": list(rounds),
        "backends": backends,
        "messages": dict(config.messages),
        "wall_seconds": wall,
    }
    if as_json:
        document = {"meta": meta, "cells": cells_document(outcomes)}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        render(stdout_console(), outcomes, meta, sizes, config.messages)
    if plot is not None:
        try:
            write_plot(outcomes, family, plot, meta)
        except OSError as exc:
            raise Failure(f"cannot write the plot to {plot}: {exc.strerror or exc}") from None
        sys.stderr.write(f"plot written to {plot}\n")
    failures = [(outcome.job, error) for outcome in outcomes.values() for error in outcome.errors]
    if failures:
        job, error = failures[0]
        first = error.strip().splitlines()[-1] if error.strip() else "no output"
        total = sum(len(outcome.results) for outcome in outcomes.values())
        raise Failure(f"{len(failures)} of {total} measurements failed; {job.describe()}: {first}")


def _run_with_progress(
    rounds: dict[str, list[Job]], runs: int, config: RunConfig
) -> dict[tuple[str, str, str], Outcome]:
    """Run the rounds with a progress bar on stderr (drawn only on a terminal)."""
    err = Console(file=sys.stderr)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    total = runs * sum(len(jobs) for jobs in rounds.values())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("starting", total=total)

        def on_start(job: Job, done: int, total: int, round_number: int) -> None:
            progress.update(task, description=f"round {round_number}/{runs}: {job.describe()}")

        def on_result(job: Job, result: dict[str, object] | None, error: str) -> None:
            progress.advance(task)

        return run_rounds(rounds, runs, config, on_start=on_start, on_result=on_result)
