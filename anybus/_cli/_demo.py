"""``anybus demo``: a runner and two workers on the in-memory bus."""

from __future__ import annotations

import sys
from functools import partial
from typing import TextIO

import click
from click.core import ParameterSource

from .._demo import run_demo
from ._common import BACKENDS, require_backends, run

__all__ = ["demo"]


@click.command()
@click.option(
    "--backend",
    "demo_backend",
    type=click.Choice([*BACKENDS, "both"]),
    default=None,
    help="event loop(s) to run on (default: the global --backend if given, else both)",
)
@click.pass_context
def demo(ctx: click.Context, demo_backend: str | None) -> None:
    """Run a runner and two workers on the in-memory bus; a cancel overtakes queued jobs."""
    chosen = demo_backend
    if chosen is None:
        parent = ctx.parent
        given = parent is not None and parent.get_parameter_source("backend") not in (
            ParameterSource.DEFAULT,
            None,
        )
        chosen = ctx.obj["backend"] if given else "both"
    backends = BACKENDS if chosen == "both" else (chosen,)
    # Checked before anything runs, so that a missing trio is one line, not half a demo.
    require_backends(backends, instead="--backend asyncio" if chosen == "both" else None)
    out: TextIO = sys.stdout
    for index, backend in enumerate(backends):
        if index:
            out.write("\n")
        ctx.obj["backend"] = backend
        run(ctx, partial(run_demo, out, backend=backend))
