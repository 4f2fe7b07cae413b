"""The references anybus is measured against, and where pipecat's Python is.

Each reference is an :class:`~anybus._bench._cells.Impl` whose worker is a script of this
directory run by path: pipecat's ``AsyncQueueBus`` and ``RedisBus`` (``pipecat_memory.py``,
``pipecat_network.py``, with pipecat's Python), the raw primitive (``raw.py``) and the bare
Redis clients (``bare_glide.py`` with anybus's Python, ``bare_redis_py.py`` with pipecat's).
anybus's own implementations are the package's (``anybus._bench._cells.IMPLS``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from anybus._bench._cells import ANYBUS, ANYBUS_W4, BACKENDS, MEMORY_IDS, PAIRS, Impl
from anybus._bench._cells import NETWORK_IMPLS as ANYBUS_NETWORK
from anybus._bench._network_common import W6_IDS

__all__ = [
    "ALL_IMPLS",
    "LABELS",
    "NETWORK_IMPLS",
    "PIPECAT",
    "RAW_ANYIO",
    "PipecatNotFound",
    "find_pipecat_python",
    "pipecat_network_ready",
]

HERE = Path(__file__).resolve().parent

PIPECAT = Impl(
    "pipecat",
    "pipecat AsyncQueueBus",
    str(HERE / "pipecat_memory.py"),
    ("asyncio",),
    MEMORY_IDS,
    python="pipecat",
    pinned=True,
)
RAW_ANYIO = Impl(
    "raw-anyio",
    "raw anyio stream",
    str(HERE / "raw.py"),
    BACKENDS,
    ("W1", "W2"),
    ("--primitive", "anyio"),
)
RAW_QUEUE = Impl(
    "raw-asyncio-queue",
    "raw asyncio.Queue",
    str(HERE / "raw.py"),
    ("asyncio",),
    ("W1", "W2"),
    ("--primitive", "asyncio-queue"),
)
_PIPECAT_NETWORK = str(HERE / "pipecat_network.py")
PIPECAT_REDIS = Impl(
    "pipecat-redis",
    "pipecat RedisBus",
    _PIPECAT_NETWORK,
    ("asyncio",),
    W6_IDS,
    ("--impl=redis",),
    python="pipecat",
    pinned=True,
)
# The clients alone, no bus: their rate does not depend on the subscribers, so they run once,
# with W6-single, and both W6 tables compare with them.
_BARE_GLIDE = str(HERE / "bare_glide.py")
_BARE_REDIS_PY = str(HERE / "bare_redis_py.py")
RAW_GLIDE = Impl("raw-glide", "raw glide client", _BARE_GLIDE, BACKENDS, ("W6-single",))
RAW_REDIS_PY = Impl(
    "raw-redis-py",
    "raw redis-py client",
    _BARE_REDIS_PY,
    ("asyncio",),
    ("W6-single",),
    python="pipecat",
    pinned=True,
)
PIPECAT_REDIS_W7 = Impl(
    "pipecat-redis",
    "pipecat RedisBus",
    _PIPECAT_NETWORK,
    ("asyncio+asyncio",),
    ("W7",),
    ("--impl=redis",),
    python="pipecat",
    pinned=True,
)
# W7's floors: the clients' own ping-pong between two processes, on anybus's backend pairs
# (glide) and on pipecat's (redis-py).
RAW_GLIDE_W7 = Impl("raw-glide", "raw glide client", _BARE_GLIDE, PAIRS, ("W7",))
RAW_REDIS_PY_W7 = Impl(
    "raw-redis-py",
    "raw redis-py client",
    _BARE_REDIS_PY,
    ("asyncio+asyncio",),
    ("W7",),
    python="pipecat",
    pinned=True,
)
#: The network implementations, in the order of their tables.
NETWORK_IMPLS = (*ANYBUS_NETWORK[:2], PIPECAT_REDIS, RAW_GLIDE, RAW_REDIS_PY)
NETWORK_IMPLS_W7 = (*ANYBUS_NETWORK[2:], PIPECAT_REDIS_W7, RAW_GLIDE_W7, RAW_REDIS_PY_W7)
#: Every implementation the harness measures, in the order of its tables.
ALL_IMPLS = (
    ANYBUS,
    *ANYBUS_W4,
    PIPECAT,
    RAW_ANYIO,
    RAW_QUEUE,
    *NETWORK_IMPLS,
    *NETWORK_IMPLS_W7,
)
LABELS = {impl.key: impl.label for impl in ALL_IMPLS}


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


def find_pipecat_python(default_venv: Path | None = None) -> Path:
    """The Python that runs the pipecat workers: the first of

    1. ``$PIPECAT_VENV/bin/python``,
    2. this Python, if it has pipecat-ai,
    3. ``default_venv``'s Python (``benchmarks/.venv-pipecat``).

    The one chosen must import pipecat's ``AsyncQueueBus``; raises :exc:`PipecatNotFound`
    (saying which one failed, and how to make one) otherwise.
    """
    module = "pipecat.bus.local.async_queue"
    setup = (
        "create a virtual environment with pipecat-ai (bash benchmarks/setup_pipecat.sh does)"
        " or set PIPECAT_VENV"
    )
    venv = os.environ.get("PIPECAT_VENV")
    if venv:
        candidate = _venv_python(Path(venv))
        if not _imports(candidate, module):
            raise PipecatNotFound(f"PIPECAT_VENV={venv} cannot import pipecat's bus: {setup}")
        return candidate
    here = Path(sys.executable)
    if find_spec("pipecat") is not None and _imports(here, module):
        return here
    if default_venv is not None and _imports(_venv_python(default_venv), module):
        return _venv_python(default_venv)
    raise PipecatNotFound(f"pipecat is not installed in this python: {setup}")


def pipecat_network_ready(python: Path) -> bool:
    """Whether ``python`` can import pipecat's ``RedisBus`` (it needs redis-py)."""
    return _imports(python, "pipecat.bus.network.redis")
