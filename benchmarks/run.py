"""Benchmark harness: anybus against pipecat's buses and the raw-primitive ceiling.

A thin wrapper over the harness of ``anybus_bench/`` beside it (anybus's own cells are measured
by the package's workers, as ``anybus bench`` measures them; the references and the targets
are the harness's). Run it with the Python where anybus's dependencies (anyio, trio, and
valkey-glide for W6/W7) are installed; it measures this checkout's anybus::

    python benchmarks/run.py [--runs 5] [--workloads W1,W2,W3,W5] [--backends asyncio,trio]
                             [--quick] [--w4-messages N] [--w6-messages N]
                             [--redis-url redis://127.0.0.1:6379] [--json FILE] [--no-pipecat]

The pipecat reference runs with the Python of its own virtual environment: ``PIPECAT_VENV``,
else this Python if it has pipecat-ai, else ``benchmarks/.venv-pipecat`` (created by
``benchmarks/setup_pipecat.sh``). See ``benchmarks/README.md`` for the method and
``docs/benchmarks.md`` for the workloads and the targets.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This checkout's anybus, whatever else is installed, and the harness beside this file.
sys.path[:0] = [str(HERE.parent), str(HERE)]

from anybus_bench.harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_pipecat_venv=HERE / ".venv-pipecat"))
