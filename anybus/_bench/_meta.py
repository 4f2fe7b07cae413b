"""What a benchmark report says about its run: the machine, the revision, every cell's runs."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime

from .._version import __version__
from ._cells import Outcomes
from ._runner import PACKAGE_ROOT
from ._targets import Verdict

__all__ = ["cells_document", "machine", "revision", "targets_document"]


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


def targets_document(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts of the targets that were measured (not the reference lines)."""
    return [verdict for verdict in verdicts if verdict["met"] is not None]
