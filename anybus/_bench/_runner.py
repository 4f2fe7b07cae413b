"""Running the benchmark workers: one fresh process per measurement, in rounds.

How one worker is started and its result line read, the rounds, and what a report says about
its run (the machine, the revision, every cell's runs); what is measured is in ``_cells.py``.
``anybus bench`` (``anybus._cli._bench``) runs anybus's own workers; the repository's
``benchmarks/run.py`` runs the same ones beside its references.

anybus's workers run as ``python -m anybus._bench.<worker>`` with the interpreter running this
code and the anybus it imported; a worker given by path (``*.py``) runs with the Python its
implementation names (see :class:`~anybus._bench._cells.Impl`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .._version import __version__
from ._cells import NETWORK_IDS, Job, Outcome, Outcomes, base_workload
from ._network_common import DEFAULT_REDIS_URL, redis_address

__all__ = [
    "PACKAGE_ROOT",
    "RunConfig",
    "cells_document",
    "machine",
    "redis_reachable",
    "revision",
    "run_rounds",
    "run_worker",
    "worker_command",
]

logger = logging.getLogger("anybus.bench")

#: The directory that holds the ``anybus`` package the workers must import.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
WORKER_TIMEOUT = 300.0


@dataclass(frozen=True)
class RunConfig:
    """What every worker of a run is told, and the Pythons that run them."""

    quick: bool = False
    #: Data messages per workload (``W1``, ``W2``, ``W4``, ``W6-fanout``, ``W6-single``),
    #: where they differ from the sizes (``--quick`` or the full ones).
    messages: Mapping[str, int] = field(default_factory=dict)
    redis_url: str = DEFAULT_REDIS_URL
    #: The interpreters of the implementations whose ``python`` is not ``"anybus"``.
    pythons: Mapping[str, Path] = field(default_factory=dict)
    timeout: float = WORKER_TIMEOUT


def _python(job: Job, config: RunConfig) -> str:
    if job.impl.python == "anybus":
        return sys.executable
    python = config.pythons.get(job.impl.python)
    if python is None:
        raise ValueError(f"{job.describe()} needs a python for {job.impl.python!r}")
    return str(python)


def worker_command(job: Job, config: RunConfig) -> list[str]:
    """The command line that measures ``job`` once."""
    worker = job.impl.worker
    command = [_python(job, config), *((worker,) if worker.endswith(".py") else ("-m", worker))]
    base, subscribers = base_workload(job.workload)
    command += ["--workload", base, "--backend", job.backend, *job.impl.extra_args]
    if config.quick:
        command.append("--quick")
    if base in config.messages:
        command.append(f"--messages={config.messages[base]}")
    if subscribers is not None:
        command.append(f"--subscribers={subscribers}")
    if base in NETWORK_IDS:
        command.append(f"--redis-url={config.redis_url}")
    return command


def _anybus_env() -> dict[str, str]:
    """The anybus workers' environment: the anybus this process imported comes first."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    root = str(PACKAGE_ROOT)
    env["PYTHONPATH"] = root if not path else os.pathsep.join([root, path])
    return env


def run_worker(job: Job, config: RunConfig) -> tuple[dict[str, object] | None, str]:
    """Run one measurement in a fresh process; return its result line, or ``None`` and why.

    Logs the command (debug) and a failure with the worker's last lines of stderr (info) on
    the ``anybus.bench`` logger.
    """
    env = _anybus_env() if job.impl.python == "anybus" else None
    command = worker_command(job, config)
    logger.debug("measuring %s: %s", job.describe(), shlex.join(command))
    try:
        proc = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=config.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        error = f"timed out after {config.timeout:.0f} s"
        logger.info("%s failed: %s", job.describe(), error)
        return None, error
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        error = f"exit status {proc.returncode}\n{tail}"
        logger.info("%s failed: %s", job.describe(), error)
        return None, error
    result: dict[str, object] = json.loads(lines[-1])
    return result, ""


#: Called before each measurement: (job, its number from 1, the total, the round from 1).
OnStart = Callable[[Job, int, int, int], None]
#: Called after each measurement: (job, result line or None, why it failed).
OnResult = Callable[[Job, dict[str, object] | None, str], None]


def run_rounds(
    rounds: Mapping[str, Sequence[Job]],
    runs: int,
    config: RunConfig,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> dict[tuple[str, str, str], Outcome]:
    """Measure every job ``runs`` times, one fresh process each, round by round.

    A round measures every job once, workload by workload; the order of the jobs within a
    workload is rotated from round to round, so that a burst of noise on a shared machine
    falls on every implementation alike.
    """
    outcomes = {job.key: Outcome(job) for jobs in rounds.values() for job in jobs}
    total = runs * len(outcomes)
    done = 0
    for round_index in range(runs):
        for jobs in rounds.values():
            shift = round_index % len(jobs)
            for job in [*jobs[shift:], *jobs[:shift]]:
                done += 1
                if on_start is not None:
                    on_start(job, done, total, round_index + 1)
                result, error = run_worker(job, config)
                outcome = outcomes[job.key]
                outcome.results.append(result)
                if result is None:
                    outcome.errors.append(error)
                if on_result is not None:
                    on_result(job, result, error)
    return outcomes


def redis_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Redis server of ``url`` opens."""
    try:
        with socket.create_connection(redis_address(url), timeout=timeout):
            return True
    except OSError:
        return False


def revision() -> str:
    """``git describe`` of the checkout anybus runs from, else anybus's version."""
    try:
        proc = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else __version__


def machine() -> dict[str, object]:
    """The date, the Python and the machine a run measured on."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "anybus_version": __version__,
        "anybus_revision": revision(),
    }


def cells_document(outcomes: Outcomes) -> list[dict[str, object]]:
    """Every cell of a run: its median, min and max, and each run's result line."""
    return [
        {
            "impl": outcome.job.impl.key,
            "label": outcome.job.impl.label,
            "backend": outcome.job.backend,
            "workload": outcome.job.workload,
            "median": outcome.median(),
            "min": min(outcome.values(), default=None),
            "max": max(outcome.values(), default=None),
            "failed": outcome.failed(),
            "runs": outcome.results,
        }
        for outcome in outcomes.values()
    ]
