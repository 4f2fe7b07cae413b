"""What the pipecat wire tests share: a bus speaking pipecat's format, comparing messages that
crossed it (their ids change), and the Python of the pipecat virtual environment."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from anybus import BusMessage, PipecatWireCodec
from anybus.redis import RedisBus

ROOT = Path(__file__).resolve().parent.parent
#: Where benchmarks/setup_pipecat.sh puts the venv by default, then the shared one.
DEFAULT_VENVS = (ROOT / "benchmarks" / ".venv-pipecat", Path("/work/.venv-pipecat"))


def pipecat_bus(url: str, channel: str, **options: Any) -> RedisBus:
    """A ``RedisBus`` that speaks pipecat's wire format on ``channel``."""
    return RedisBus(url, channel=channel, codec=PipecatWireCodec(), **options)


def fields_of(message: BusMessage) -> dict[str, Any]:
    """Every field of ``message`` but its ``id`` (pipecat's wire carries an int instead)."""
    return {
        f.name: getattr(message, f.name) for f in dataclasses.fields(message) if f.name != "id"
    }


def same(received: BusMessage, sent: BusMessage) -> bool:
    """Whether ``received`` is ``sent`` after a trip over pipecat's wire."""
    return type(received) is type(sent) and fields_of(received) == fields_of(sent)


@functools.cache
def _imports_pipecat(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import pipecat.bus.network.redis, pipecat.workers.runner"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return probe.returncode == 0


def pipecat_python() -> Path:
    """The Python of the pipecat venv: ``$PIPECAT_VENV``, else ``benchmarks/.venv-pipecat``,
    else ``/work/.venv-pipecat``. Skips when none imports pipecat's RedisBus; under CI (``CI``
    set), fails instead: .ci/run creates the venv, so a missing one is a broken set-up."""
    configured = os.environ.get("PIPECAT_VENV")
    venvs = [Path(configured)] if configured else list(DEFAULT_VENVS)
    for venv in venvs:
        python = venv / "bin" / "python"
        if _imports_pipecat(python):
            return python
    reason = (
        f"no pipecat venv with pipecat-ai[redis] in {', '.join(map(str, venvs))}; create one "
        f"with: PIPECAT_VENV={venvs[0]} bash benchmarks/setup_pipecat.sh"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs the pipecat bridge test: .ci/run creates the venv)")
    pytest.skip(reason)
