"""Watching a Redis connection: waiting for the server, detecting outages."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from anyio import Event, fail_after, sleep

from .._exceptions import TransportError
from ._client import RedisClient, RedisSettings

__all__ = ["Health"]

logger = logging.getLogger("anybus.redis")


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
        """Ping until the server answers (glide reconnects with backoff meanwhile).

        Raises:
            TransportError: if it has not answered ``within`` seconds (``None``: no limit).
        """
        deadline = math.inf if within is None else within
        last_error: TransportError | None = None
        try:
            with fail_after(deadline):
                while True:
                    try:
                        await client.ping()
                    except TransportError as exc:
                        if last_error is None:
                            logger.info("waiting for redis at %s: %s", self._settings.address, exc)
                        last_error = exc
                        await sleep(min(self._interval, 0.1))
                    else:
                        self._set_connected(True)
                        return
        except TimeoutError:
            raise TransportError(
                f"redis at {self._settings.address} is unreachable after {within} s: check "
                f"that the server runs and the url is right (or pass connect_timeout=None to "
                f"wait for it)"
            ) from last_error

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
