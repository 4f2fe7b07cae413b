"""Watching a Redis connection: waiting for the server, detecting outages."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable

from anyio import CancelScope, Event, fail_after, sleep

from .._exceptions import TransportError
from ._client import NoDatabaseError, RedisClient, RedisSettings

__all__ = ["Health", "UnreachableError"]

logger = logging.getLogger("anybus.redis")


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
    """The state of the connection to one server, kept by regular pings."""

    def __init__(self, settings: RedisSettings, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"health_interval must be positive, got {interval!r}")
        self._settings = settings
        self._interval = interval
        self.connected = False
        self.outages = 0
        self._down_since: float | None = None
        self._changed = Event()
        self._database_checked = False

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._changed.set()
            self._changed = Event()

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
                if not errors:
                    logger.info("waiting for redis at %s: %s", self._settings.address, exc)
                errors.append(exc)
                del errors[:-1]
                await sleep(min(self._interval, 0.1))
            else:
                return

    async def watch(
        self, client: RedisClient, on_recovery: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Ping every interval, forever; log and count each outage and each recovery."""
        while True:
            await sleep(self._interval)
            try:
                await client.ping()
            except TransportError as exc:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self.outages += 1
                    self._set_connected(False)
                    logger.warning(
                        "redis at %s became unreachable (outage %d): %s",
                        self._settings.address,
                        self.outages,
                        exc,
                    )
                continue
            if self._down_since is not None:
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
