#!/usr/bin/env bash
# Create the virtual environment of the pipecat reference (pipecat's AsyncQueueBus, and its
# RedisBus for the network workloads W6/W7: pipecat-ai's `redis` extra, redis-py with hiredis).
#
# pipecat-ai is heavy, so it lives in its own venv, apart from anybus's. Idempotent: does
# nothing if the venv already imports both of pipecat's buses at the pinned version.
#
#   bash benchmarks/setup_pipecat.sh
#
# Environment:
#   PIPECAT_VENV     where to create the venv (default: benchmarks/.venv-pipecat)
#   PIPECAT_VERSION  the pipecat-ai version to pin (default: 1.14.0, the one the reference is
#                    written against)
#   PYTHON           the interpreter to create the venv with (default: python3; 3.11 or newer)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PIPECAT_VENV:-$here/.venv-pipecat}"
version="${PIPECAT_VERSION:-1.14.0}"
python="${PYTHON:-python3}"

check='
import importlib.metadata, sys
import pipecat.bus.local.async_queue  # noqa: F401
import pipecat.bus.network.redis  # noqa: F401
sys.exit(importlib.metadata.version("pipecat-ai") != sys.argv[1])
'

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "$version" >/dev/null 2>&1; then
    echo "pipecat-ai $version is already set up in $venv"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "pipecat-ai[redis]==$version"

if ! "$venv/bin/python" -c "$check" "$version" >/dev/null 2>&1; then
    echo "error: $venv still cannot import pipecat's buses at pipecat-ai $version" >&2
    "$venv/bin/python" -c "$check" "$version" >&2 || true
    exit 1
fi
echo "pipecat-ai $version is ready in $venv"
echo "run the benchmarks with: PIPECAT_VENV=$venv python benchmarks/run.py"
