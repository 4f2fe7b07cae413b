"""The ``anybus`` click group: the global options, and every subcommand added to it."""

from __future__ import annotations

import logging

import click

from .._version import __version__
from ._bench import bench
from ._common import BACKENDS, LOG_LEVELS, StderrHandler
from ._demo import demo
from ._inspect import inspect
from ._messages import pub, sub
from ._postgres import postgres
from ._workers import workers

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="anybus", message="%(prog)s %(version)s")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="asyncio",
    show_default=True,
    help="event loop to run on",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="level of anybus's own log lines, on stderr",
)
@click.pass_context
def cli(ctx: click.Context, backend: str, log_level: str) -> None:
    """anybus, a pub/sub worker bus for asyncio and trio."""
    ctx.ensure_object(dict)
    ctx.obj["backend"] = backend
    logger = logging.getLogger("anybus")
    logger.setLevel(log_level.upper())
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


for _command in (demo, bench, pub, sub, inspect, workers, postgres):
    cli.add_command(_command)
