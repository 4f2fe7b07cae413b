"""Watching a Redis connection: waiting for the server, detecting outages."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from anyio import (
    CancelScope,
    Event,
    create_task_group,
    current_time,
    fail_after,
    move_on_after,
    sleep,
)

from .._exceptions import TransportError
from ._client import NoDatabaseError, RedisClient, RedisSettings

__all__ = ["Health", "UnreachableError"]

logger = logging.getLogger("anybus.redis")

#: Seconds between two looks at glide's count of open connections (a cheap local call).
CONNECTIONS_POLL = 0.02
#: Seconds a check woken by a dropped connection may take before the outage is declared.
QUICK_CHECK = 0.25


#: What the server says to a client whose credentials it refuses.
_AUTH_REFUSED = re.compile(r"(WRONGPASS|NOAUTH)[^\n]*")


class UnreachableError(TransportError):
    """Raised when the server has not answered within the bus's ``connect_timeout``.

    Attributes:
        address: the server's ``host:port``.
        within: the seconds waited.
    """

    def __init__(self, address: str, within: float) -> None:
        self.address = address
        self.within = within
        super().__init__(
            f"redis at {address} is unreachable after {within} s: check that the server runs "
            f"and the url is right (or pass connect_timeout=None to wait for it)"
        )


class Health:
    """The state of the connection to one server, kept by regular checks.

    A check asks each watched client for its connection's ``CLIENT INFO``: a failure, or an id
    that changed since the last check (glide reconnected in between, however fast), is an
    outage. Checks come every ``interval``, at once when glide's count of open connections
    drops, and every 0.05 s while the server is away. Others report what they see with
    :meth:`lost` (a publish nobody heard, say).
    """

    def __init__(self, settings: RedisSettings, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"health_interval must be positive, got {interval!r}")
        self._settings = settings
        self._interval = interval
        self.connected = False
        self.outages = 0
        #: Sends that returned while the connection was down (or after the last check that
        #: found it unbroken, when an outage is then found): they may not have arrived.
        self.at_risk = 0
        self._unconfirmed = 0  # sends returned since the last check that found no outage
        self._ids: list[object] | None = None
        self._dropped = Event()  # set when glide's count of open connections drops
        self._checking: CancelScope | None = None  # the check in flight
        self._down_since: float | None = None
        self._changed = Event()
        self._database_checked = False

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._changed.set()
            self._changed = Event()

    def sent(self, count: int = 1) -> None:
        """Count ``count`` sends that returned before Redis confirmed them: at risk if the
        connection is down, or is found to have been down when the next check comes."""
        if self._down_since is not None:
            self.at_risk += count
        else:
            self._unconfirmed += count

    def lost(self, reason: str) -> None:
        """Note an outage seen now (unless one is known already): count it, log it, and
        count what was sent since the last good check as at risk."""
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.outages += 1
        self.at_risk += self._unconfirmed
        self._unconfirmed = 0
        self._set_connected(False)
        logger.warning(
            "redis at %s became unreachable (outage %d): %s",
            self._settings.address,
            self.outages,
            reason,
        )

    async def wait_until(self, connected: bool) -> None:
        """Wait until the connection state is ``connected``."""
        while self.connected != connected:
            await self._changed.wait()

    async def wait_for_server(self, client: RedisClient, within: float | None) -> None:
        """Ping until the server answers (glide reconnects with backoff meanwhile); on a
        database other than 0, first check that the server has it.

        Raises:
            UnreachableError: if it has not answered ``within`` seconds (``None``: no limit).
            NoDatabaseError: if the server has no database of the url's number (at once).
        """
        deadline = math.inf if within is None else within
        errors: list[TransportError] = []
        try:
            with fail_after(deadline):
                if self._settings.database and not self._database_checked:
                    await self._check_database(errors)
                    self._database_checked = True
                await self._until_answered(client.ping, errors)
                self._set_connected(True)
        except TimeoutError:
            raise UnreachableError(self._settings.address, deadline) from (
                errors[-1] if errors else None
            )

    async def _check_database(self, errors: list[TransportError]) -> None:
        """Check, on a client of its own on database 0, that the url's database exists."""
        settings = dataclasses.replace(self._settings, database=0)
        probe = await RedisClient.create(settings, name="anybus-database-check")
        try:
            await self._until_answered(
                lambda: probe.check_database(self._settings.database), errors
            )
        finally:
            with CancelScope(shield=True):
                await probe.close()

    async def _until_answered(
        self, call: Callable[[], Awaitable[None]], errors: list[TransportError]
    ) -> None:
        """Call ``call`` until it does not raise a :class:`TransportError` (other than a
        :class:`NoDatabaseError`), noting each failure in ``errors``."""
        while True:
            try:
                await call()
            except NoDatabaseError:
                raise
            except TransportError as exc:
                refused = _AUTH_REFUSED.search(str(exc))
                if refused is not None:  # it will not change by trying again
                    raise TransportError(
                        f"redis at {self._settings.address} refused this client "
                        f"({refused.group().strip().rstrip('.')}): check the url's user and "
                        f"password (redis://user:password@host:port)"
                    ) from exc
                if not errors:
                    logger.info("waiting for redis at %s: %s", self._settings.address, exc)
                errors.append(exc)
                del errors[:-1]
                await sleep(min(self._interval, 0.1))
            else:
                return

    async def watch(
        self,
        client: RedisClient,
        on_recovery: Callable[[], Awaitable[None]] | None = None,
        *,
        also: Sequence[RedisClient] = (),
    ) -> None:
        """Check ``client`` (and the clients ``also``) forever; log and count each outage
        and each recovery. ``on_recovery`` runs before the connection counts as back; if it
        raises :class:`TransportError`, the next check tries again."""
        self._ids = None  # clients of an earlier run have other connections
        async with create_task_group() as task_group:
            task_group.start_soon(self._watch_drops, client, name="anybus redis drops")
            await self._check_forever([client, *also], on_recovery)

    async def _check_forever(
        self, clients: list[RedisClient], on_recovery: Callable[[], Awaitable[None]] | None
    ) -> None:
        first = True  # the first check comes at once: it learns the connections' ids
        while True:
            if not first:
                interval = self._interval if self._down_since is None else 0.05
                with move_on_after(min(self._interval, interval)):
                    await self._dropped.wait()
            first = False
            # A check after a dropped connection must answer soon: glide holds it until it
            # has reconnected, and the outage is now (so does one in flight when it drops).
            quick, self._dropped = self._dropped.is_set(), Event()
            ids: list[object] = []
            with CancelScope() as scope:
                self._checking = scope
                if quick:
                    scope.deadline = current_time() + QUICK_CHECK
                try:
                    ids = [await each.connection_id() for each in clients]
                except TransportError as exc:
                    self.lost(str(exc))
                    continue
                finally:
                    self._checking = None
            if scope.cancelled_caught:
                self.lost(f"a connection dropped and no answer came within {QUICK_CHECK} s")
                continue
            if self._ids is not None and ids != self._ids:
                self.lost("glide reconnected since the last check (its CLIENT INFO changed)")
            self._ids = ids
            if self._down_since is None:
                self._unconfirmed = 0  # the connection held from the last check to this one
                continue
            if on_recovery is not None:
                try:
                    await on_recovery()
                except TransportError:
                    continue  # not quite back yet
            downtime = time.monotonic() - self._down_since
            self._down_since = None
            self._set_connected(True)
            logger.warning(
                "redis at %s is reachable again after %.1f s", self._settings.address, downtime
            )

    async def _watch_drops(self, client: RedisClient) -> None:
        """Look at glide's count of open connections every ``CONNECTIONS_POLL`` seconds;
        when it drops, wake the checks (and hurry the one in flight)."""
        before = await client.connections()
        while True:
            await sleep(CONNECTIONS_POLL)
            now = await client.connections()
            if now < before:
                checking = self._checking
                if checking is not None:
                    checking.deadline = min(checking.deadline, current_time() + QUICK_CHECK)
                self._dropped.set()
            before = now
