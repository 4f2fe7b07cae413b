"""A thin adapter over valkey-glide: with `_handover`, the only module that imports it.

Everything the Redis buses need from a client goes through :class:`RedisClient`, and every
glide exception is translated here, at one boundary, into :class:`~anybus.TransportError`. A
second client library could sit behind the same few methods.

Facts about glide this adapter handles:

* ``GlideClient.create()`` without ``lazy_connect`` blocks the event loop until it connects
  and cannot be cancelled: clients are always created lazily, then pinged.
* Pub/sub messages are taken with the callback form (``get_pubsub_message()`` is not
  cancel-safe); glide calls it on the event loop's thread.
* glide's Rust core logs to stderr unless told otherwise: it is switched off by default
  (:func:`configure_glide_logging` turns it back on, to a file).
* A client carries at most ~1,000 requests in flight before failing them: callers cap
  their concurrency (``MAX_IN_FLIGHT``).
* While the server is away, glide holds commands until it has reconnected (or until the
  request timeout): a short outage fails nothing, and shows only as a new connection.
  glide's count of open connections (one figure for the whole process) drops at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NoReturn

from glide import (
    AdvancedGlideClientConfiguration,
    AdvancedGlideClusterClientConfiguration,
    AllNodes,
    BackoffStrategy,
    Batch,
    ClusterBatch,
    GlideClient,
    GlideClientConfiguration,
    GlideClusterClient,
    GlideClusterClientConfiguration,
    Logger,
    LogLevel,
    NodeAddress,
    Script,
    ServerCredentials,
)
from glide import ClosingError as GlideClosingError
from glide import ConnectionError as GlideConnectionError
from glide import RequestError as GlideRequestError
from glide import TimeoutError as GlideTimeoutError

from .._exceptions import TransportError
from ._handover import StartedPublish, start_publish
from ._settings import RedisSettings

__all__ = [
    "MAX_IN_FLIGHT",
    "LuaScript",
    "NoDatabaseError",
    "NoGroupError",
    "RedisClient",
    "RedisSettings",
    "StartedPublish",
    "configure_glide_logging",
]

logger = logging.getLogger("anybus.redis")

#: Requests one client may have in flight; glide fails requests beyond ~1,000.
MAX_IN_FLIGHT = 500

_glide_logging_configured = False


def configure_glide_logging(level: str = "off", file_name: str | None = None) -> None:
    """Set the log level of glide's Rust core (``"off"``, ``"error"``, ``"warn"``, ``"info"``,
    ``"debug"``), logging to ``file_name`` (by default, glide's own choice).

    anybus switches it off on first use unless this was called before.
    """
    global _glide_logging_configured
    levels = {
        "off": LogLevel.OFF,
        "error": LogLevel.ERROR,
        "warn": LogLevel.WARN,
        "info": LogLevel.INFO,
        "debug": LogLevel.DEBUG,
    }
    try:
        chosen = levels[level]
    except KeyError:
        raise ValueError(f"level must be one of {sorted(levels)}, got {level!r}") from None
    Logger.set_logger_config(chosen, file_name)
    _glide_logging_configured = True


class NoGroupError(TransportError):
    """Raised when a stream or its consumer group does not exist (any more): a server that
    restarted without persistence lost them."""


class NoDatabaseError(TransportError):
    """Raised when the url's database number is beyond the databases the server has."""


class map_errors:  # a lowercase name: used as contextlib's context managers are
    """Translate glide's exceptions raised inside the block into :class:`TransportError`.

    A class rather than a ``@contextmanager`` generator: it wraps every command, and this
    costs a third as much on entry and exit.
    """

    __slots__ = ("action", "settings")

    def __init__(self, action: str, settings: RedisSettings) -> None:
        self.action = action
        self.settings = settings

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, _GLIDE_ERRORS):
            _translate(exc, self.action, self.settings)


def _translate(exc: BaseException, action: str, settings: RedisSettings) -> NoReturn:
    if isinstance(exc, GlideTimeoutError):
        raise TransportError(
            f"redis at {settings.address} did not answer {action} within "
            f"{settings.request_timeout} s (it may still have happened)"
        ) from exc
    if isinstance(exc, GlideConnectionError):
        raise TransportError(
            f"cannot reach redis at {settings.address} for {action}: is the server running?"
        ) from exc
    if isinstance(exc, GlideClosingError):
        raise TransportError(f"the redis client was closed during {action}") from exc
    text = str(exc)
    if "NOGROUP" in text:
        raise NoGroupError(f"redis at {settings.address}: {text}") from exc
    if "WRONGTYPE" in text:
        raise TransportError(
            f"redis at {settings.address} refused {action}: the key holds another type "
            f"of value than {action} works on; use a key name no other kind of data uses"
        ) from exc
    raise TransportError(f"redis at {settings.address} refused {action}: {exc}") from exc


_GLIDE_ERRORS = (GlideTimeoutError, GlideConnectionError, GlideClosingError, GlideRequestError)


def _identity(info: object) -> str:
    """The ``id=`` and ``addr=`` fields of a ``CLIENT INFO`` line."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    return " ".join(f for f in text.split() if f.startswith(("id=", "addr=")))


class LuaScript:
    """A Lua script, run by its hash; glide loads it again where the server forgot it (after
    a restart, say)."""

    __slots__ = ("_code", "_script")

    def __init__(self, code: str) -> None:
        self._code = code
        self._script: Script | None = None

    def glide_script(self) -> Script:
        if self._script is None:  # made on first use: glide's core keeps the code
            self._script = Script(self._code)  # type: ignore[no-untyped-call]
        return self._script


def _subscriptions(
    configuration: Any, channels: Sequence[str], deliver: Callable[[Any, Any], None]
) -> Any:
    """Exact-channel subscriptions with a callback, for a standalone or a cluster client."""
    if not channels:
        return None
    return configuration.PubSubSubscriptions(
        channels_and_patterns={configuration.PubSubChannelModes.Exact: set(channels)},
        callback=deliver,
        context=None,
    )


class RedisClient:
    """One glide client: commands, and optionally a pub/sub subscription with a callback."""

    def __init__(
        self, settings: RedisSettings, glide_client: GlideClient | GlideClusterClient
    ) -> None:
        self.settings = settings
        self._client = glide_client
        self._publish_errors = map_errors("PUBLISH", settings)  # stateless: one for every send

    @classmethod
    async def create(
        cls,
        settings: RedisSettings,
        *,
        name: str,
        channels: Sequence[str] = (),
        on_message: Callable[[bytes], None] | None = None,
    ) -> RedisClient:
        """Create a client lazily (no I/O yet: glide connects on the first command).

        With ``channels``, the client subscribes to them and calls ``on_message(payload)``
        for each message, on the event loop's thread; glide resubscribes after reconnects.
        """
        if not _glide_logging_configured:
            configure_glide_logging("off")
        callback = on_message
        credentials = None
        if settings.password is not None:
            credentials = ServerCredentials(password=settings.password, username=settings.username)
        common: dict[str, Any] = {
            "use_tls": settings.tls,
            "credentials": credentials,
            "client_name": name,
            "request_timeout": int(settings.request_timeout * 1000),
            "reconnect_strategy": BackoffStrategy(
                num_of_retries=settings.reconnect_steps,
                factor=max(1, int(settings.reconnect_first_delay * 1000)),
                exponent_base=settings.reconnect_growth,
                jitter_percent=settings.reconnect_jitter,
            ),
            "lazy_connect": True,
        }
        reconcile = max(1, int(settings.resubscribe_interval * 1000))
        address = [NodeAddress(settings.host, settings.port)]

        def deliver(message: Any, context: Any) -> None:
            assert callback is not None
            callback(message.message)

        client: GlideClient | GlideClusterClient
        with map_errors("the connection", settings):
            if settings.cluster:
                client = await GlideClusterClient.create(
                    GlideClusterClientConfiguration(
                        address,
                        pubsub_subscriptions=_subscriptions(
                            GlideClusterClientConfiguration, channels, deliver
                        ),
                        advanced_config=AdvancedGlideClusterClientConfiguration(
                            pubsub_reconciliation_interval=reconcile
                        ),
                        **common,
                    )
                )
            else:
                client = await GlideClient.create(
                    GlideClientConfiguration(
                        address,
                        database_id=settings.database or None,
                        pubsub_subscriptions=_subscriptions(
                            GlideClientConfiguration, channels, deliver
                        ),
                        advanced_config=AdvancedGlideClientConfiguration(
                            pubsub_reconciliation_interval=reconcile
                        ),
                        **common,
                    )
                )
        return cls(settings, client)

    async def ping(self) -> None:
        """Round trip to the server.

        Raises:
            TransportError: if it is unreachable or does not answer in time.
        """
        with map_errors("PING", self.settings):
            await self._client.ping()

    async def check_database(self, database: int) -> None:
        """Check that the server has ``database``, with ``SELECT`` on this client: call it
        on a client of its own (it stays on that database), connected to database 0.

        glide does not say why a client on a missing database cannot connect (its connection
        attempts just time out), so the buses ask this way first.

        Raises:
            NoDatabaseError: if the server has no database of that number.
            TransportError: if it is unreachable or does not answer in time.
        """
        with map_errors("SELECT", self.settings):
            try:
                await self._client.custom_command(["SELECT", str(database)])
            except GlideRequestError as exc:
                text = str(exc)
                if "connect" in text.lower():
                    raise  # unreachable: translated by map_errors
                if "out of range" not in text:
                    return  # SELECT refused for another reason (not allowed, renamed): go on
                known = await self._databases_known()
                raise NoDatabaseError(
                    f"database {database} does not exist on redis at {self.settings.address}"
                    f"{known}: use a database number the server has in the url"
                ) from exc

    async def _databases_known(self) -> str:
        """`` (it has N: 0 to N-1)``, if the server says how many databases it has."""
        try:
            reply = await self.command("CONFIG", "GET", "databases")
            if isinstance(reply, dict):  # RESP3: {name: value}; RESP2: [name, value]
                reply = [item for pair in reply.items() for item in pair]
            count = int(reply[1])
        except (TransportError, LookupError, TypeError, ValueError):
            return ""
        return f" (it has {count}: 0 to {count - 1})"

    async def connection_id(self) -> object:
        """What tells this client's connection from any other: the ``id`` and the client's
        ``addr`` from ``CLIENT INFO`` (on a cluster, per node). It changes when glide
        reconnects, however fast: a restarted server hands out the same ids again, but the
        new connection comes from another port. ``None`` where the server refuses ``CLIENT
        INFO`` (Redis before 6.2, an ACL): then it is a ``PING``.

        Raises:
            TransportError: if the server is unreachable or does not answer in time.
        """
        with map_errors("CLIENT INFO", self.settings):
            try:
                if isinstance(self._client, GlideClusterClient):
                    reply = await self._client.custom_command(["CLIENT", "INFO"], AllNodes())
                    if isinstance(reply, dict):
                        return {node: _identity(info) for node, info in reply.items()}
                    return _identity(reply)
                return _identity(await self._client.custom_command(["CLIENT", "INFO"]))
            except GlideRequestError as exc:
                if "connect" in str(exc).lower():
                    raise  # unreachable: translated by map_errors
                await self._client.ping()  # CLIENT refused (an old server, an ACL)
                return None

    async def connections(self) -> int:
        """How many connections glide holds open in this process, every client together: a
        drop says that some connection was lost, at once."""
        statistics = await self._client.get_statistics()
        return int(statistics.get("total_connections", 0))

    async def run_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[str | bytes]
    ) -> Any:
        """Run ``script`` (``EVALSHA``, loading it where the server does not have it)."""
        with map_errors("a script", self.settings):
            return await self._client.invoke_script(
                script.glide_script(), keys=list(keys), args=list(args)
            )

    async def publish(self, channel: str, payload: bytes) -> int:
        """PUBLISH; return how many subscribers received it (0 during a resubscribe gap)."""
        with map_errors("PUBLISH", self.settings):
            return int(await self._client.publish(payload, channel))

    def start_publish(self, channel: str, payload: bytes) -> StartedPublish | None:
        """Hand a PUBLISH to glide's core at once, in this task (see ``_handover``); ``None``
        (nothing done) where that cannot be done without awaiting: use :meth:`publish`."""
        if self.settings.cluster:
            return None
        return start_publish(self._client, channel, payload, self._publish_errors)

    async def publish_many(self, channel: str, payloads: Sequence[bytes]) -> list[int | None]:
        """PUBLISH each payload, in one pipelined round trip (a non-atomic batch).

        Returns, per payload, how many subscribers received it, or ``None`` where that
        publish failed.
        """
        kind = ClusterBatch if self.settings.cluster else Batch
        batch = kind(is_atomic=False)
        for payload in payloads:
            batch.publish(payload, channel)
        with map_errors("PUBLISH", self.settings):
            replies = await self._client.exec(batch, raise_on_error=False)
        if replies is None:
            return [None] * len(payloads)
        return [reply if isinstance(reply, int) else None for reply in replies]

    async def command(self, *args: str | bytes) -> Any:
        """Run any command (``XADD``, ``XREADGROUP``, ...) and return glide's answer."""
        with map_errors(str(args[0]) if args else "a command", self.settings):
            return await self._client.custom_command(list(args))

    async def add(self, stream: str, payload: bytes, *, max_len: int) -> str:
        """XADD ``payload`` to ``stream``, trimming it to about ``max_len`` entries; return
        the entry id."""
        reply = await self.command("XADD", stream, "MAXLEN", "~", str(max_len), "*", "m", payload)
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        """XACK the entries."""
        if entry_ids:
            await self.command("XACK", stream, group, *entry_ids)

    async def close(self) -> None:
        """Close the client; errors on the way are logged, not raised."""
        try:
            await self._client.close()
        except Exception as exc:  # closing is best effort
            logger.debug("closing the redis client failed: %r", exc)
