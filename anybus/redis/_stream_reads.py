"""Reading a Redis stream through a consumer group: batches bounded by bytes as well as by
count (the bytes the script reads in Redis, so an entry left unread counts too), entries
over the size limit left in Redis, and entries the stream trimmed before the group read
them counted exactly.

The count comes from the stream's own counters (Redis 7): ``XINFO GROUPS`` gives the group's
``entries-read`` and ``lag`` (the entries added since, trimmed ones included) and ``XLEN``
what the stream still holds. Trimming drops the oldest entries first, so where the lag
exceeds the length, the difference was trimmed before the group read it. The read script
checks that and reads in one atomic step (a script), then sets the group's counter past the
loss, so that the next check starts from an exact count. A blocking read cannot run in a
script; it comes only when the group has caught up, and if it returns so many entries that
the stream may have been trimmed past the group in between (as many as the stream keeps),
an audit settles it from the stream's first entry.

A bus's own stores may move its group past its own entries (``_fence.py``), counted in a
key beside the stream. Those moves change the group's read counter behind the reader's back,
so the reader keeps the counter less that count (the entries it read itself, and the losses
counted), which they leave alone; the scripts add the count back.

On an older server (no counters) nothing is counted here and a line says so once; losses
show as sequence gaps alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .._exceptions import MessageRejected
from ._client import LuaScript, RedisClient

__all__ = ["READ_BYTES", "RETRY_DELAY", "Batch", "StreamReads", "create_group", "oversized"]

logger = logging.getLogger("anybus.redis")

#: The bytes a batch aims at: a read takes fewer entries when they are large (always one).
READ_BYTES = 4 * 1024 * 1024
#: Most entries a blocking read takes (it cannot see their sizes before they are sent).
WAIT_COUNT = 8
#: Longest pause between two tries of a read while Redis is away, in seconds: short, since
#: glide holds a read until it has reconnected anyway.
RETRY_DELAY = 0.2

# The group's counters: (entries-read, lag, last-delivered-id) or an error reply.
_GROUP = """
local function group_info(stream, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if not ok then return nil end
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == group then return f end
  end
  return nil
end
"""

_READ = LuaScript(
    _GROUP
    + """
local stream, group, consumer, start = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local count, budget, max_size = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local chunk, biggest = tonumber(ARGV[7]), math.max(1, tonumber(ARGV[8]))
local lost, read = 0, -1
if start == '>' then
  local info = group_info(stream, group)
  if not info then return redis.error_reply('NOGROUP no group ' .. group .. ' on ' .. stream) end
  local entries_read, lag = info['entries-read'], info['lag']
  if lag == nil then read = -1
  elseif not entries_read or not lag then read = -2
  else
    local length = redis.call('XLEN', stream)
    read = entries_read
    if lag > length then
      lost = lag - length
      read = read + lost
      redis.call('XGROUP', 'SETID', stream, group, info['last-delivered-id'], 'ENTRIESREAD', read)
    end
  end
end
local out, seen, taken, after = {}, 0, 0, start
while taken < count and seen < budget do
  -- Eight at most per step: a run of large entries after small ones is seen early.
  local want = math.max(1, math.min(chunk, count - taken, 8))
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
    'STREAMS', stream, after)
  local entries = {}
  if reply and reply[1] then entries = reply[1][2] end
  for _, entry in ipairs(entries) do
    local fields, payload = entry[2], false
    if fields then
      local size = 0
      for i = 2, #fields, 2 do size = size + #fields[i] end
      if size > max_size then payload = size else payload = fields[2] or false end
      seen = seen + size
      if size > biggest then biggest = size end
    end
    out[#out + 1] = entry[1]
    out[#out + 1] = payload
    if start ~= '>' then after = entry[1] end
  end
  taken = taken + #entries
  if #entries < want then break end
  chunk = math.floor((budget - seen) / biggest)
end
if read >= 0 then
  read = read + taken - tonumber(redis.call('GET', KEYS[2]) or '0')
  if read < 0 then read = -2 end  -- the group was set back by hand: not known
end
return {lost, read, out}
"""
)

_AUDIT = LuaScript(
    _GROUP
    + """
local function below(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) < tonumber(bs))
end
local stream, group, before = KEYS[1], ARGV[1], tonumber(ARGV[2])
local info = group_info(stream, group)
if not info then return redis.error_reply('NOGROUP no group ' .. group .. ' on ' .. stream) end
local entries_read, lag = info['entries-read'], info['lag']
if not entries_read or not lag then return {0, -2} end
local skipped = tonumber(redis.call('GET', KEYS[2]) or '0')
-- Entries the group was moved past since the read was served (its bus's own stores, once
-- it had read to the end): they come after the read's entries.
local since, position = 0, info['last-delivered-id']
if position ~= ARGV[#ARGV] then
  since = #redis.call('XRANGE', stream, '(' .. ARGV[#ARGV], position)
end
before = before + skipped - since
local removed = entries_read + lag - redis.call('XLEN', stream)
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
local taken, gone = #ARGV - 2, 0
for i = 3, #ARGV do
  if #first == 0 or below(ARGV[i], first[1][1]) then gone = gone + 1 end
end
local lost = math.max(0, removed - before - gone)
local read = before + lost + taken + since
if read ~= entries_read then
  redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', read)
end
return {lost, read - skipped}
"""
)

_CREATE = LuaScript(
    """
local stream, group, start = KEYS[1], ARGV[1], ARGV[2]
local created = redis.pcall('XGROUP', 'CREATE', stream, group, start, 'MKSTREAM')
if type(created) == 'table' and created.err then
  if string.find(created.err, 'BUSYGROUP') then return 0 end
  return created
end
redis.call('DEL', KEYS[2])  -- a new group has been moved past nothing
local info = redis.call('XINFO', 'STREAM', stream)
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then
    local read = 0
    if start == '$' then read = info[i + 1] end
    redis.call('XGROUP', 'SETID', stream, group, start, 'ENTRIESREAD', read)
  end
end
return 1
"""
)


async def create_group(
    client: RedisClient, stream: str, group: str, start: str, *, skipped: str
) -> bool:
    """Create the consumer group (and the stream) at ``start`` (``$``: what comes next;
    ``0``: everything) unless it exists, its read counter set and its count of skipped
    entries (the key ``skipped``) reset; return whether it was created.

    Raises:
        TransportError: if Redis refused or did not answer.
    """
    return bool(await client.run_script(_CREATE, [stream, skipped], [group, start]))


def oversized(size: int, max_size: int) -> MessageRejected:
    """The rejection of an entry the read script left in Redis for its size."""
    return MessageRejected(
        "oversized", f"{size} bytes, over the max_size of {max_size} bytes (left unread in redis)"
    )


@dataclass(slots=True)
class Batch:
    """What one read gave: entries in order, each with its payload, or the size of one left
    in Redis for being over the size limit, or ``None`` (trimmed since it was delivered); and
    how many entries the stream trimmed before the group read them."""

    entries: list[tuple[str, bytes | int | None]]
    lost: int = 0
    #: A blocking read that took fewer entries than it asked for: the group has caught up,
    #: so the next read may block at once.
    caught_up: bool = False


class StreamReads:
    """The reads of one consumer (named after its group) of one stream.

    Not safe for concurrent use: one reader task calls it, one call at a time.
    """

    def __init__(
        self,
        client: RedisClient,
        stream: str,
        group: str,
        *,
        skipped: str,
        count: int,
        max_size: int,
        max_len: int,
        where: str,
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._skipped = skipped  # the key counting the entries the group was moved past
        self._count = count
        self._max_size = max_size
        self._max_len = max_len
        self._where = where
        # The group's read counter after the last read, less the entries the group was moved
        # past (None: not known, or not kept).
        self._read: int | None = None
        # The largest entry of recent reads (halved at each read), which sizes the next one.
        self._biggest: int | None = None
        self._told: set[int] = set()  # the reasons already logged for not counting losses

    def forget(self) -> None:
        """A read failed: what it did is not known (the next read asks the stream)."""
        self._read = None

    def _chunk(self) -> int:
        """How many entries the next read may take, from the sizes seen lately."""
        if self._biggest is None:
            return 1  # nothing seen yet: the script sizes the rest of the batch by the first
        return max(1, min(self._count, READ_BYTES // max(1, self._biggest)))

    def _sized(self, entries: list[tuple[str, bytes | int | None]]) -> None:
        # An entry left unread counts by its size too: the script still reads it in Redis.
        sizes = [len(p) if isinstance(p, bytes) else p or 0 for _, p in entries]
        if sizes:
            self._biggest = max(max(sizes), (self._biggest or 0) // 2)

    async def pending(self, after: str) -> Batch:
        """Entries given to this consumer before and not yet acknowledged, with ids above
        ``after`` (``None``: trimmed since).

        Raises:
            NoGroupError: if the stream or the group is gone.
            TransportError: if Redis did not answer.
        """
        _, _, entries = await self._run(after)
        return Batch(entries)

    async def new(self) -> Batch:
        """New entries, without waiting; counts what was trimmed before they were read."""
        lost, read, entries = await self._run(">")
        self._read = read if read >= 0 else None
        if read < 0:
            self._cannot_count(read)
        return Batch(entries, lost)

    async def wait(self, block: float) -> Batch:
        """New entries, waiting up to ``block`` seconds for some; call it once :meth:`new`
        found nothing."""
        before, count = self._read, max(2, min(self._chunk(), WAIT_COUNT))
        reply = await self._client.command(
            "XREADGROUP",
            "GROUP",
            self._group,
            self._group,
            "COUNT",
            str(count),
            "BLOCK",
            str(max(1, int(block * 1000))),
            "STREAMS",
            self._stream,
            ">",
        )
        entries = _entries(reply)
        self._sized(entries)
        if before is None:
            return Batch(entries, caught_up=len(entries) < count)
        if len(entries) < min(count, self._max_len):
            # Had the stream been trimmed past the group meanwhile, it would hold at least
            # max_len entries, all new: this read would have been full.
            self._read = before + len(entries)
            return Batch(entries, caught_up=len(entries) < count)
        audit = await self._client.run_script(
            _AUDIT,
            [self._stream, self._skipped],
            [self._group, str(before), *(key for key, _ in entries)],
        )
        lost, read = int(audit[0]), int(audit[1])
        self._read = read if read >= 0 else None
        return Batch(entries, lost)

    async def _run(self, start: str) -> tuple[int, int, list[tuple[str, bytes | int | None]]]:
        """The read script from ``start`` (``>``: new entries): what it lost, the group's
        read counter after it less the entries it was moved past (below 0: not known), and
        the entries."""
        reply = await self._client.run_script(
            _READ,
            [self._stream, self._skipped],
            [
                self._group,
                self._group,
                start,
                str(self._count),
                str(READ_BYTES),
                str(self._max_size),
                str(self._chunk()),
                str(self._biggest or 0),  # later calls of the script are sized by it too
            ],
        )
        entries = _pairs(reply[2])
        self._sized(entries)
        return int(reply[0]), int(reply[1]), entries

    def _cannot_count(self, reason: int) -> None:
        if reason in self._told:
            return
        self._told.add(reason)
        if reason == -1:
            logger.warning(
                "%s: redis keeps no read counters for stream %r (they came with Redis 7): "
                "entries trimmed before this instance read them are not counted (only the "
                "gaps in a sender's sequence numbers are)",
                self._where,
                self._stream,
            )
        else:
            logger.info(
                "%s: the read counter of group %r is not known (the group was made by an "
                "older anybus, or entries were deleted with XDEL): what was trimmed before "
                "now is not counted; counting starts once the group has read to the end",
                self._where,
                self._group,
            )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: object) -> list[tuple[str, bytes | int | None]]:
    """The read script's ``[id, payload-or-size-or-nil, ...]`` as pairs."""
    items = list(flat) if isinstance(flat, list) else []
    return [
        (_text(items[i]), value if isinstance(value, (bytes, int)) else None)
        for i in range(0, len(items) - 1, 2)
        for value in (items[i + 1],)
    ]


def _entries(reply: Any) -> list[tuple[str, bytes | int | None]]:
    """XREADGROUP's answer (RESP3 maps, or RESP2 lists) as ``(id, payload)`` pairs; an entry
    trimmed since it was delivered has the payload ``None``."""
    entries: list[tuple[str, bytes | int | None]] = []
    if not reply:
        return entries
    streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
    for stream_entries in streams:
        items = stream_entries.items() if isinstance(stream_entries, dict) else stream_entries
        for entry_id, fields in items:
            payload = None
            if fields:
                flat = (
                    [value for pair in fields for value in pair]
                    if isinstance(fields[0], list)
                    else list(fields)
                )
                payload = flat[1] if len(flat) >= 2 else None
            entries.append((_text(entry_id), payload))
    return entries
