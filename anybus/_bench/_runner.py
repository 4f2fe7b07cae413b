"""Running the benchmark workers: one fresh process per measurement, in rounds.

How one worker is started and its result line read, the rounds, and where pipecat's Python
is (what is measured is in ``_cells.py``). Both front ends use
it: ``anybus bench`` (``anybus._cli._bench``) and the text harness (``harness.py``, which
``benchmarks/run.py`` runs).

The anybus workers run as ``python -m anybus._bench.<worker>`` with the interpreter running
this code and the anybus it imported; the pipecat workers (``_pipecat_*.py``) run *by path*
with pipecat's Python, so they never import anybus (see ``_pipecat_memory.py``).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._cells import NETWORK_WORKLOADS, Job, Outcome, base_workload
from ._network_common import DEFAULT_REDIS_URL, redis_address

__all__ = [
    "PipecatNotFound",
    "RunConfig",
    "find_pipecat_python",
    "pipecat_network_ready",
    "redis_reachable",
    "run_rounds",
    "run_worker",
    "worker_command",
]

logger = logging.getLogger("anybus.bench")

HERE = Path(__file__).resolve().parent
#: The directory that holds the ``anybus`` package the workers must import.
PACKAGE_ROOT = HERE.parent.parent
WORKER_TIMEOUT = 300.0


@dataclass(frozen=True)
class RunConfig:
    """What every worker of a run is told, and the Pythons that run them."""

    quick: bool = False
    #: Data messages per workload (``W1``, ``W2``, ``W4``, ``W6-fanout``, ``W6-single``),
    #: where they differ from the sizes (``--quick`` or the full ones).
    messages: Mapping[str, int] = field(default_factory=dict)
    redis_url: str = DEFAULT_REDIS_URL
    pipecat_python: Path | None = None
    timeout: float = WORKER_TIMEOUT


def worker_command(job: Job, config: RunConfig) -> list[str]:
    """The command line that measures ``job`` once."""
    if job.impl.venv == "pipecat":
        if config.pipecat_python is None:
            raise ValueError(f"{job.describe()} needs pipecat's python")
        command = [str(config.pipecat_python), str(HERE / f"{job.impl.worker}.py")]
    else:
        command = [sys.executable, "-m", f"anybus._bench.{job.impl.worker}"]
    base, subscribers = base_workload(job.workload)
    command += ["--workload", base, "--backend", job.backend, *job.impl.extra_args]
    if config.quick:
        command.append("--quick")
    if base in config.messages:
        command.append(f"--messages={config.messages[base]}")
    if subscribers is not None:
        command.append(f"--subscribers={subscribers}")
    if base in NETWORK_WORKLOADS:
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
    env = None if job.impl.venv == "pipecat" else _anybus_env()
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


class PipecatNotFound(Exception):
    """Raised when no Python at hand can import pipecat's bus; the message says what to do."""


def _imports(python: Path, module: str) -> bool:
    try:
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_pipecat_python(explicit: str | None = None, *, default_venv: Path | None = None) -> Path:
    """The Python that runs the pipecat workers: the first of

    1. ``explicit`` (``anybus bench --pipecat-python PATH``),
    2. ``$PIPECAT_VENV/bin/python``,
    3. this Python, if it has pipecat-ai,
    4. ``default_venv``'s Python (the harness: ``benchmarks/.venv-pipecat``).

    The one chosen must import pipecat's ``AsyncQueueBus``; raises :exc:`PipecatNotFound`
    (saying which one failed, and how to make one) otherwise.
    """
    module = "pipecat.bus.local.async_queue"
    setup = (
        "create a virtual environment with pipecat-ai (benchmarks/setup_pipecat.sh does)"
        " and pass --pipecat-python PATH or set PIPECAT_VENV"
    )
    if explicit is not None:
        candidate = Path(explicit)
        if not _imports(candidate, module):
            raise PipecatNotFound(f"{explicit} cannot import pipecat's bus: {setup}")
        return candidate
    venv = os.environ.get("PIPECAT_VENV")
    if venv:
        candidate = _venv_python(Path(venv))
        if not _imports(candidate, module):
            raise PipecatNotFound(f"PIPECAT_VENV={venv} cannot import pipecat's bus: {setup}")
        return candidate
    here = Path(sys.executable)
    if _has_module("pipecat") and _imports(here, module):
        return here
    if default_venv is not None and _imports(_venv_python(default_venv), module):
        return _venv_python(default_venv)
    raise PipecatNotFound(f"pipecat is not installed in this python: {setup}")


def _has_module(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def pipecat_network_ready(python: Path) -> bool:
    """Whether ``python`` can import pipecat's ``RedisBus`` (it needs redis-py)."""
    return _imports(python, "pipecat.bus.network.redis")


def redis_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Redis server of ``url`` opens."""
    try:
        with socket.create_connection(redis_address(url), timeout=timeout):
            return True
    except OSError:
        return False
