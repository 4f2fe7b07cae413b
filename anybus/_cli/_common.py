"""What the ``anybus`` commands share: failures, logging, running on a backend, Redis."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import click
from rich.console import Console

from .._exceptions import AnybusError

__all__ = [
    "BACKENDS",
    "LOG_LEVELS",
    "Failure",
    "StderrHandler",
    "connect_timeout_option",
    "flatten",
    "redis_module",
    "run",
    "settings_of",
    "stdout_console",
]

BACKENDS = ("asyncio", "trio")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Failure(click.ClickException):
    """A runtime failure: one line on stderr, exit code 1."""

    exit_code = 1


class StderrHandler(logging.Handler):
    """Logs to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def flatten(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``error``, however deeply grouped."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from flatten(inner)
    else:
        yield error


def run(ctx: click.Context, function: Callable[[], Awaitable[object]]) -> Any:
    """Run ``function`` on the chosen backend; turn anybus and connection errors into exit 1."""
    backend: str = ctx.obj["backend"]
    try:
        return anyio.run(function, backend=backend)
    except ModuleNotFoundError as exc:
        if exc.name != backend:
            raise
        raise Failure(f"{backend} is not installed: pip install 'anybus[{backend}]'") from None
    except (AnybusError, OSError, BaseExceptionGroup) as exc:
        for inner in flatten(exc):
            if isinstance(inner, click.ClickException):
                raise inner from None
            if isinstance(inner, (AnybusError, OSError)):
                text = " ".join(str(inner).split())
                if "check" not in text:
                    text += " (check the url, and that redis is running)"
                raise Failure(text) from None
        raise


def redis_module() -> Any:
    """``anybus.redis``, or a failure naming the extra to install."""
    try:
        from .. import redis
    except ModuleNotFoundError:
        raise Failure(
            "this command needs redis support: pip install 'anybus[redis,cli]'"
        ) from None
    return redis


def settings_of(url: str) -> Any:
    """The ``RedisSettings`` of ``url``; a bad url is a usage error."""
    try:
        return redis_module().RedisSettings.from_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None


def stdout_console() -> Console:
    """A console on stdout, for the command's output."""
    # Bound to the stream current at the start of the command (so that tests may run commands
    # in threads), with no markup interpretation of message contents.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def connect_timeout_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--connect-timeout`` option of the commands that talk to Redis."""
    return click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0.0, min_open=True),
        default=5.0,
        show_default=True,
        help="seconds to wait for redis",
    )
