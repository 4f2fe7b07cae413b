"""The fence that keeps one sender's entries in a stream in the order of their numbers.

A stream bus stores its messages with one script call per batch (``FENCED_ADD``: one round
trip, atomic). The script keeps, beside the stream (in its cluster slot), the last sequence
number stored for the sender and the try that stored it, and stores a batch only if its first
number is above that. So a copy that arrives late — the client sent its queue after
reconnecting, or the network delivered it after a partition — is refused once anything after
it is stored; and after a try whose answer was lost, the sender can ask the fence exactly
what that try did.

The same script spares the sending bus its own entries: while the bus's reader runs, if the
bus's own consumer group had read everything before the batch and the instance still holds
the lease on its name, it moves the group past the batch, as if the bus had read its entries
and dropped them (it drops its own messages anyway). Its reader then stays
blocked instead of waking to read them, which had cost a stream round trip per message
(about a sixth of a W7 round trip). The entries the group skips so are counted in a key
beside the stream (:func:`skipped_key`), which the reads' loss accounting subtracts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import final

from anyio import sleep

from .._exceptions import TransportError
from ._base import RecentPayloads
from ._client import RedisClient
from ._lease import Lease

__all__ = ["FENCED_ADD", "Fence", "same_slot_key", "skipped_key"]

#: Seconds a sender's fence outlives its last batch: longer than a copy can be on its way.
FENCE_LIFETIME = 3600
#: Longest pause between two questions to the fence while Redis is away, in seconds.
MAX_RETRY_DELAY = 1.0

#: KEYS: the stream, the sender's fence, the count of entries its group skipped, the lease
#: on its name. ARGV: the batch's first number, max_len, the fence's lifetime (ms), the
#: try's id, the sender's own consumer group (empty: none), its lease token, then the
#: payloads. Returns {stored (1 or 0), last number, moved the group past the batch (1 or 0)}.
FENCED_ADD = """
local fence = redis.call('GET', KEYS[2])
local last = 0
if fence then last = tonumber(string.match(fence, '^%d+')) end
local first = tonumber(ARGV[1])
if first <= last then return {0, last} end
local id
for i = 7, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i])
end
local added = #ARGV - 6
last = first + added - 1
redis.call('SET', KEYS[2], last .. ' ' .. ARGV[4], 'PX', ARGV[3])
local group, skipped = ARGV[5], 0
-- Only while this instance holds the name: another holding it reads these as others'.
if group ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
  if ok then
    for _, g in ipairs(groups) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f['name'] == group then
        -- A lag of just this batch: the group had read everything before it (Redis 7).
        if f['lag'] == added and f['entries-read'] then
          redis.call('XGROUP', 'SETID', KEYS[1], group, id, 'ENTRIESREAD',
            f['entries-read'] + added)
          redis.call('INCRBY', KEYS[3], added)
          skipped = 1
        end
        break
      end
    end
  end
end
return {1, last, skipped}
"""
_FENCED_ADD_SHA = hashlib.sha1(FENCED_ADD.encode()).hexdigest()


def same_slot_key(stream: str, suffix: str, *, cluster: bool) -> str:
    """A key that hashes to the stream's cluster slot: the stream's hash tag, or the whole
    stream name made one.

    Raises:
        ValueError: on a cluster, if the stream has no hash tag and holds a ``}`` (no tag can
            match it).
    """
    start = stream.find("{")
    if start >= 0 and stream.find("}", start + 2) >= 0:
        return f"{stream}{suffix}"  # its own tag (non-empty) decides the slot
    if "}" not in stream:
        return f"{{{stream}}}{suffix}"
    if cluster:
        raise ValueError(
            f"stream {stream!r} holds '}}' but no hash tag, so no other key can share its "
            f"cluster slot: use a name without braces, or with a tag ('{{tag}}rest')"
        )
    return f"{stream}{suffix}"  # one server: any key will do


def skipped_key(stream: str, group: str, *, cluster: bool) -> str:
    """The key that counts the entries of ``stream`` that its consumer group ``group`` was
    moved past by its own bus's stores (see the module docs)."""
    return same_slot_key(stream, f":anybus:skipped:{group}", cluster=cluster)


@final
class Fence:
    """One sender's fence on one stream."""

    def __init__(
        self,
        *,
        stream: str,
        sender: str,
        group: str,
        skipped: str,
        lease: Lease,
        caught_up: Callable[[], bool],
        own: RecentPayloads,
        max_len: int,
        cluster: bool,
    ) -> None:
        self.key = same_slot_key(stream, f":anybus:sent:{sender}", cluster=cluster)
        self._group = group
        # Whether the bus's reader has read to the end (only then may the group be moved past
        # a batch: the script checks it, this spares it the check when it cannot be so).
        self._caught_up = caught_up
        self._lease = lease
        self._own = own  # the bus's payloads, to know its echoes: these will not come back
        self._skipped = skipped  # the key counting what the group was moved past
        self._stream = stream
        self._max_len = str(max_len)
        self._tries = 0
        #: The last error of a store or a question that failed.
        self.last_error: TransportError | None = None

    async def store(
        self, client: RedisClient, first: int, payloads: Sequence[bytes]
    ) -> tuple[bool, int]:
        """Store ``payloads``, numbered from ``first``, unless the fence holds ``first`` or
        more; return whether they were stored, and the last number stored.

        Raises:
            TransportError: if the answer was lost (ask :meth:`check` what was done).
        """
        self._tries += 1
        args: list[str | bytes] = [
            "4",
            self._stream,
            self.key,
            self._skipped,
            self._lease.key,
            str(first),
            self._max_len,
            str(FENCE_LIFETIME * 1000),
            str(self._tries),
            self._group if self._caught_up() else "",
            self._lease.token,
            *payloads,
        ]
        try:
            try:
                reply = await client.command("EVALSHA", _FENCED_ADD_SHA, *args)
            except TransportError as exc:
                if "noscript" not in str(exc).lower():
                    raise
                reply = await client.command("EVAL", FENCED_ADD, *args)  # loads it
        except TransportError as exc:
            self.last_error = exc
            raise
        if len(reply) > 2 and int(reply[2]):  # its group was moved past them: no echoes come
            for payload in payloads:
                self._own.discard_if_present(payload)
        return bool(int(reply[0])), int(reply[1])

    async def check(self, client: RedisClient) -> tuple[bool, int]:
        """Whether the last :meth:`store` stored its batch, and the last number stored:
        asked as often as it takes (Redis may be away)."""
        delay = 0.05
        while True:
            try:
                fence = await client.command("GET", self.key)
            except TransportError as exc:
                self.last_error = exc
                await sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if fence is None:
                return False, 0
            text = fence.decode() if isinstance(fence, bytes) else str(fence)
            last, _, tried = text.partition(" ")
            return tried == str(self._tries), int(last)
