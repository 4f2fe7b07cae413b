"""One name, one running instance: a lease on a stream bus's name, kept in Redis.

The lease is a key (beside the stream, in its cluster slot) holding the holder's token,
which expires ``lease`` seconds after it was last renewed. An instance takes it when it
starts — refused while another instance's lease runs — renews it every third of the lease,
and gives it up when it stops; the lease of an instance that died runs out. An instance
that could not renew it for a whole lease (Redis unreachable from it) stops reading until it
has renewed it; if another instance took the name meanwhile, it stops with an error rather
than share the name's consumer group.
"""

from __future__ import annotations

import logging
import math
from typing import final

from anyio import Event, current_time, sleep

from .._checks import check_seconds
from .._exceptions import TransportError
from ._client import RedisClient

__all__ = ["Lease", "LeaseLostError"]

logger = logging.getLogger("anybus.redis")

#: KEYS: the lease. ARGV: the token, the prefix every token of this instance starts with, the
#: lease (ms). Takes the lease if it is free or this instance's; else returns {0, its holder,
#: its time left in ms}.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and string.sub(holder, 1, #ARGV[2]) ~= ARGV[2] then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1}
"""
#: Renews the lease if the token holds it, or takes it if it is free; else returns {0, holder}.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1}
end
return {0, holder}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLostError(TransportError):
    """Raised when another instance took a running instance's name: its lease ran out while
    Redis was unreachable from it."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@final
class Lease:
    """The lease of one running instance on its name (see the module docs)."""

    def __init__(self, *, key: str, name: str, instance: str, seconds: float, what: str) -> None:
        check_seconds("lease", seconds, finite=True)
        self._key = key
        self._name = name
        self._prefix = f"{instance} "
        self._token = self._prefix
        self._runs = 0
        self._ms = str(max(1, int(seconds * 1000)))
        self._seconds = seconds
        self._what = what  # the transport, for messages
        self._held_until = -math.inf
        self._lapse_told = False
        self._renewed: Event | None = None  # set when the lease is renewed after it lapsed

    @property
    def key(self) -> str:
        """The lease's key."""
        return self._key

    @property
    def token(self) -> str:
        """The token the lease holds while this instance has it."""
        return self._token

    def held(self) -> bool:
        """Whether the lease surely still runs (it was renewed less than a lease ago)."""
        return current_time() < self._held_until

    async def wait_held(self) -> None:
        """Return once the lease surely runs (at once, unless it could not be renewed for a
        whole lease)."""
        while not self.held():
            renewed = self._renewed
            if renewed is None:
                renewed = self._renewed = Event()
            await renewed.wait()

    async def take(self, client: RedisClient) -> None:
        """Take the lease for a new run of this instance.

        Raises:
            TransportError: if another running instance holds the name, or Redis does not
                answer.
        """
        self._runs += 1
        self._token = f"{self._prefix}{self._runs}"
        sent = current_time()
        reply = await client.command(
            "EVAL", _TAKE, "1", self._key, self._token, self._prefix, self._ms
        )
        if int(reply[0]) != 1:
            holder, left = _text(reply[1]), int(reply[2])
            runs_out = f"in {math.ceil(left / 1000)} s" if left >= 0 else "never (no expiry)"
            raise TransportError(
                f"cannot run {self._what}: the name {self._name!r} is in use by another running "
                f"instance ({holder.partition(' ')[0]!r}; its lease runs out {runs_out}) — two "
                f"running instances may not share a name; give this one another name, or stop "
                f"the other"
            )
        self._renew_done(sent)

    async def keep(self, client: RedisClient) -> None:
        """Renew the lease every third of it, until cancelled.

        Raises:
            LeaseLostError: if another instance holds the name (it ran out meanwhile).
        """
        failed = False
        while True:
            # Every third of the lease; after a failure, again soon (it runs out meanwhile).
            await sleep(min(0.25, self._seconds / 10) if failed else self._seconds / 3)
            sent = current_time()
            try:
                reply = await client.command("EVAL", _RENEW, "1", self._key, self._token, self._ms)
                failed = False
            except TransportError as exc:
                failed = True
                if not self.held() and not self._lapse_told:
                    self._lapse_told = True
                    logger.warning(
                        "%s: could not renew its lease on the name %r for %s s (%s): not "
                        "reading until it is renewed",
                        self._what,
                        self._name,
                        self._seconds,
                        exc,
                    )
                continue
            if int(reply[0]) != 1:
                holder = _text(reply[1]).partition(" ")[0]
                raise LeaseLostError(
                    f"{self._what} lost its lease on the name {self._name!r}: it ran out while "
                    f"redis was unreachable from here, and another instance ({holder!r}) took "
                    f"the name; this one stopped rather than share it — two running instances "
                    f"may not share a name"
                )
            self._renew_done(sent)

    def _renew_done(self, sent: float) -> None:
        self._held_until = sent + self._seconds
        self._lapse_told = False
        renewed = self._renewed
        if renewed is not None:
            self._renewed = None
            renewed.set()

    async def release(self, client: RedisClient) -> None:
        """Give the lease up, so that the next run of this name may start at once; errors
        are logged, not raised (the lease runs out anyway)."""
        self._held_until = -math.inf
        try:
            await client.command("EVAL", _RELEASE, "1", self._key, self._token)
        except TransportError as exc:
            logger.debug("%s: giving the lease up failed: %s", self._what, exc)
