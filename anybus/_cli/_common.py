"""What the ``anybus`` commands share: failures, logging, running on a backend, Redis, and
the bus a URL names."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import click
from rich.console import Console

from .._exceptions import AnybusError

if TYPE_CHECKING:
    from .._bus import WorkerBus
    from ..redis._client import RedisClient, RedisSettings

__all__ = [
    "Seconds",
    "BACKENDS",
    "LOG_LEVELS",
    "BadInput",
    "BusTarget",
    "Failure",
    "StderrHandler",
    "connect_timeout_option",
    "flatten",
    "forget_group",
    "bus_target",
    "open_bus",
    "open_client",
    "postgres_module",
    "redis_module",
    "require_backends",
    "run",
    "settings_of",
    "stdout_console",
]

logger = logging.getLogger("anybus.cli")

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
    Ctrl-C ends it with "interrupted" and the shell's status 130 (128 + SIGINT).
    """
    backend: str = ctx.obj["backend"]
    require_backends([backend])
    try:
        return anyio.run(function, backend=backend)
    except KeyboardInterrupt:
        raise _interrupted() from None
    except (AnybusError, OSError, BaseExceptionGroup) as exc:
        errors = list(flatten(exc))
        for inner in errors:
            if isinstance(inner, (BrokenPipeError, SystemExit)):
                raise inner from None
        for inner in errors:
            if isinstance(inner, KeyboardInterrupt):
                raise _interrupted() from None
        for inner in errors:
            if isinstance(inner, click.ClickException):
                raise inner from None
        for inner in errors:
            if isinstance(inner, (AnybusError, OSError)):
                raise Failure(describe(inner)) from None
        raise


def non_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option's callback: refuse an empty name (a channel, a stream)."""
    if value is not None and not value:
        raise click.BadParameter("cannot be empty: give it a name", ctx=ctx, param=param)
    return value


def _interrupted() -> SystemExit:
    click.echo("\ninterrupted", err=True)  # the blank line closes the terminal's ^C
    return SystemExit(130)


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


class Seconds(click.FloatRange):
    """A number of seconds of at least 0 (``positive``: above 0); refuses nan, which
    :class:`click.FloatRange` lets through (every comparison with it is false)."""

    name = "seconds"

    def __init__(self, *, positive: bool = False) -> None:
        super().__init__(min=0.0, min_open=positive)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def connect_timeout_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--connect-timeout`` option of the commands that talk to Redis."""
    return click.option(
        "--connect-timeout",
        type=Seconds(positive=True),
        default=5.0,
        show_default=True,
        help="seconds to wait for redis to answer",
    )


# --- the bus a URL names ----------------------------------------------------------------------

#: How a Postgres dsn written as a URL begins (a libpq ``key=value`` string is one too).
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def postgres_module() -> Any:
    """``anybus.postgres``, or a failure naming the extra to install."""
    try:
        from .. import postgres
    except ModuleNotFoundError:
        raise Failure(
            "this command needs postgres support: pip install 'anybus[postgres,cli]'"
        ) from None
    return postgres


@dataclass(frozen=True, slots=True)
class BusTarget:
    """The bus a command's URL and ``--channel`` / ``--stream`` name: a :class:`RedisBus`
    (``kind`` ``"pubsub"``), a :class:`RedisStreamBus` (``"stream"``) or a
    :class:`PostgresBus` (``"postgres"``); see :func:`bus_target`."""

    kind: Literal["pubsub", "stream", "postgres"]
    url: str
    #: The channel's name (the stream's, for ``"stream"``).
    channel: str
    #: The server, without a password (``host:port``, ``host:port/dbname`` for Postgres).
    where: str
    #: The Redis settings of the url (``None`` for Postgres).
    settings: Any = None
    #: The anybus schema of a Postgres bus (``None``: the default, ``anybus``).
    schema: str | None = None

    def describe(self) -> str:
        """``channel 'x' at redis 127.0.0.1:6379``, and so on."""
        what = "stream" if self.kind == "stream" else "channel"
        server = "postgres" if self.kind == "postgres" else "redis"
        return f"{what} {self.channel!r} at {server} {self.where}"


def bus_target(
    url: str, *, channel: str | None, stream: str | None = None, schema: str | None = None
) -> BusTarget:
    """The bus ``url`` names: a ``postgresql://`` (or ``postgres://``, or ``key=value``) dsn is
    a Postgres bus on ``channel``; a ``redis://`` or ``rediss://`` url, a Redis bus on
    ``channel`` or, with ``stream``, a Redis stream bus. ``channel`` ``None``: the buses'
    default, ``anybus``.

    Raises:
        BadInput: the url names no network bus, does not parse, or ``stream`` is given with
            a channel or a Postgres dsn (one line, exit code 2).
        Failure: the support for that server is not installed.
    """
    if stream is not None and channel is not None:
        raise BadInput("give one of --channel NAME or --stream NAME, not both")
    postgres = url.startswith(POSTGRES_SCHEMES) or ("://" not in url and "=" in url)
    if schema is not None and not postgres:
        raise BadInput("--schema is for a postgres bus: give a postgresql:// dsn")
    if postgres:
        if stream is not None:
            raise BadInput("--stream is for redis streams: a postgres bus takes --channel NAME")
        postgres_module()  # a failure naming the extra, if postgres support is missing
        from ..postgres._client import describe

        where = describe(url)
        if where == "an invalid dsn":  # (describe's word for what libpq cannot parse)
            raise BadInput(f"Invalid value for URL: not a valid postgres dsn: {url!r}")
        return BusTarget("postgres", url, channel or "anybus", where, schema=schema)
    if not url.startswith(("redis://", "rediss://")):
        if url == "memory" or url.startswith("memory:"):
            raise BadInput(
                f"Invalid value for URL: {url!r}: a memory bus is seen only from inside its "
                f"own process; give a redis:// url or a postgresql:// dsn"
            )
        raise BadInput(
            f"Invalid value for URL: {url!r} names no bus; give a redis:// or rediss:// url, "
            f"or a postgresql:// dsn"
        )
    try:
        settings = redis_module().RedisSettings.from_url(url)
    except ValueError as exc:
        raise BadInput(f"Invalid value for URL: {exc}") from None
    kind: Literal["pubsub", "stream"] = "pubsub" if stream is None else "stream"
    name = stream if stream is not None else channel or "anybus"
    return BusTarget(kind, url, name, settings.address, settings)


@asynccontextmanager
async def open_bus(
    target: BusTarget, *, name: str, connect_timeout: float
) -> AsyncIterator[WorkerBus]:
    """``target``'s bus, started (as ``name``; waiting up to ``connect_timeout`` seconds for
    the server), stopped on exit. A Redis stream bus's consumer group is destroyed once it
    stopped (best effort, bounded by ``connect_timeout``), so that the command leaves no
    trace on the stream; a Postgres bus's consumer stays until the channel's housekeeping
    removes it (after its ``retention``). Cancelled, it stops the bus as on any exit, and
    still destroys the group (shielded)."""
    bus: Any
    if target.kind == "postgres":
        schema = {} if target.schema is None else {"schema": target.schema}
        bus = postgres_module().PostgresBus(
            target.url,
            channel=target.channel,
            name=name,
            connect_timeout=connect_timeout,
            create_schema=False,  # a command that looks creates nothing
            **schema,
        )
    elif target.kind == "stream":
        bus = redis_module().RedisStreamBus(
            target.settings, stream=target.channel, name=name, connect_timeout=connect_timeout
        )
    else:
        bus = redis_module().RedisBus(
            target.settings, channel=target.channel, name=name, connect_timeout=connect_timeout
        )
    started = False
    try:
        async with bus:
            started = True
            yield bus
    finally:
        if started and target.kind == "stream":
            await _destroy_group(target, bus.group, connect_timeout)


async def forget_group(
    client: RedisClient, settings: RedisSettings, stream: str, group: str
) -> None:
    """Destroy a stream's consumer group, and the count the bus keeps beside it of the
    entries its own stores moved the group past."""
    from ..redis._fence import skipped_key

    await client.command("XGROUP", "DESTROY", stream, group)
    await client.command("DEL", skipped_key(stream, group, cluster=settings.cluster))


async def _destroy_group(target: BusTarget, group: str, connect_timeout: float) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(connect_timeout):
        try:
            async with open_client(
                target.settings, name="anybus-cli-cleanup", connect_timeout=connect_timeout
            ) as client:
                await forget_group(client, target.settings, target.channel, group)
        except (AnybusError, OSError) as exc:
            logger.warning(
                "could not destroy the consumer group %r of stream %r: %s",
                group,
                target.channel,
                exc,
            )
