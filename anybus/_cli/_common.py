"""What the ``anybus`` commands share: failures, logging, running on a backend, Redis."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.console import Console

from .._exceptions import AnybusError

if TYPE_CHECKING:
    from ..redis._client import RedisClient, RedisSettings

__all__ = [
    "BACKENDS",
    "LOG_LEVELS",
    "BadInput",
    "Failure",
    "StderrHandler",
    "connect_timeout_option",
    "flatten",
    "open_client",
    "redis_module",
    "require_backends",
    "run",
    "settings_of",
    "stdout_console",
]

BACKENDS = ("asyncio", "trio")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Failure(click.ClickException):
    """A runtime failure: one line on stderr, exit code 1."""

    exit_code = 1


class BadInput(click.ClickException):
    """Bad input that one line explains (no usage text): exit code 2."""

    exit_code = 2


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


def require_backends(backends: Sequence[str], instead: str | None = None) -> None:
    """Fail, naming the extra to install, unless every event loop in ``backends`` is
    installed; ``instead`` is what else the user may do (an option to give)."""
    for backend in backends:
        try:
            missing = find_spec(backend) is None
        except ValueError:  # in sys.modules without a spec: importable, as far as we know
            missing = False
        if missing:
            other = f" (or {instead})" if instead else ""
            raise Failure(f"{backend} is not installed: pip install 'anybus[{backend}]'{other}")


def run(ctx: click.Context, function: Callable[[], Awaitable[object]]) -> Any:
    """Run ``function`` on the chosen backend; turn anybus and OS errors into exit 1.

    A closed stdout (``anybus ... | head``) is re-raised as the bare :class:`BrokenPipeError`,
    which click turns into a quiet exit 1 (or as the ``SystemExit(1)`` rich raises for it); a
    Ctrl-C, as :class:`KeyboardInterrupt`.
    """
    backend: str = ctx.obj["backend"]
    require_backends([backend])
    try:
        return anyio.run(function, backend=backend)
    except (AnybusError, OSError, BaseExceptionGroup) as exc:
        errors = list(flatten(exc))
        for inner in errors:
            if isinstance(inner, (BrokenPipeError, SystemExit)):
                raise inner from None
        for inner in errors:
            if isinstance(inner, KeyboardInterrupt):
                raise KeyboardInterrupt from None
        for inner in errors:
            if isinstance(inner, click.ClickException):
                raise inner from None
        for inner in errors:
            if isinstance(inner, (AnybusError, OSError)):
                raise Failure(describe(inner)) from None
        raise


def describe(error: BaseException) -> str:
    """One line saying what went wrong, in the command's terms."""
    monitor = sys.modules.get("anybus.redis._monitor")  # loaded if a Redis bus ran
    if monitor is not None and isinstance(error, monitor.UnreachableError):
        return (
            f"redis at {error.address} is unreachable after {error.within} s: check that the "
            f"server runs and the url is right (or wait longer with --connect-timeout)"
        )
    text = " ".join(str(error).split())
    return text or type(error).__name__


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


@asynccontextmanager
async def open_client(
    settings: RedisSettings, *, name: str, connect_timeout: float, **options: Any
) -> AsyncIterator[RedisClient]:
    """A Redis client once the server answers (as the buses wait for it), closed on exit.

    Raises:
        UnreachableError: if it does not answer within ``connect_timeout`` seconds.
        NoDatabaseError: if the server has no database of the url's number.
    """
    from ..redis._client import RedisClient
    from ..redis._monitor import Health

    client = await RedisClient.create(settings, name=name, **options)
    try:
        await Health(settings, interval=0.1).wait_for_server(client, connect_timeout)
        yield client
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


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
        help="seconds to wait for redis to answer",
    )
