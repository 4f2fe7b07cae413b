"""Following senders' sequence numbers: gaps (messages lost on the way), repeats and replays.

Every envelope carries its sender's id and a sequence number that grows by one per message
that sender puts on the network. A network transport gives each envelope it receives to a
:class:`SequenceTracker`, which counts the gaps and the messages missed in them, spots
repeats (by message id, in a bounded window) so that they can be dropped, and refuses
replayed signed messages.

Replay protection covers the messages whose signature the codec verified, when the codec has
a ``replay_window`` (the default when signing). Such a message is refused as ``replayed``

- when its timestamp is more than ``replay_window`` seconds from the receiver's clock, either
  way (or it has none: it was signed by an anybus without replay protection);
- when its sender's number is one this tracker took before, or is older than the numbers it
  took from that sender. Per sender it keeps the highest number taken and a bitmap of the
  :data:`SEQ_WINDOW` numbers below it: the numbers below the first one taken count as taken
  (a copy of a message sent before this receiver started is refused), a number skipped by a
  jump may still come (once), and one more than ``SEQ_WINDOW`` below the highest may not.

A copy of a signed message that the transport reads again from the same stored entry (its
``redelivered`` flag: a stream's pending entries) is a *duplicate*, not a replay; it is
dropped all the same. A sender is forgotten once its newest message is stale: a copy of any
of its messages would be refused by its timestamp by then.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ._checks import check_count
from ._hints import short
from ._rejections import RejectionCounter
from ._wire import Envelope

__all__ = ["SEQ_WINDOW", "SequenceTracker"]

#: How many numbers below a sender's highest one the replay window tells apart.
SEQ_WINDOW: Final = 1024
_ALL_TAKEN: Final = (1 << SEQ_WINDOW) - 1


class _Window:
    """One sender's replay window."""

    __slots__ = ("fresh_until", "high", "taken")

    def __init__(self, high: int, fresh_until: float) -> None:
        #: The highest number taken from the sender.
        self.high = high
        #: Bit ``n`` set: number ``high - n`` was taken (or comes before the first one taken).
        self.taken = _ALL_TAKEN
        #: When the newest message taken from the sender goes stale.
        self.fresh_until = fresh_until


class SequenceTracker:
    """Gaps, repeats and replays in what a transport receives (see the module docs).

    Args:
        dedupe: remember the ids of this many recent messages and call repeats not new
            (0: every message is new; repeats are still counted, by sequence number).
        logger: where gaps are reported (a WARNING each).
        owner: what the log lines name as the receiver.
        count_gaps: count jumps in a sender's sequence numbers as missed messages. A
            transport that sees losses exactly another way (gapless positions in a log)
            turns this off, so that a send that was never stored is not counted as lost.
        why_lost: what the gap warnings say the missed messages were lost to.
        rejections: where replays are counted and logged (reason ``replayed``); a counter
            of its own on ``logger`` by default.
        replay_window: the codec's :attr:`~anybus.WireCodec.replay_window`; ``None``: no
            replay protection.
        clock: the codec's :attr:`~anybus.WireCodec.clock`.

    Raises:
        ValueError: ``dedupe`` is negative.
    """

    __slots__ = (
        "_clock",
        "_count_gaps",
        "_dedupe",
        "_last_seq",
        "_logger",
        "_losses",
        "_losses_seen",
        "_owner",
        "_rejections",
        "_replay_window",
        "_seen",
        "_why_lost",
        "_windows",
        "duplicates",
        "gaps",
        "missed",
        "replayed",
    )

    def __init__(
        self,
        *,
        dedupe: int,
        logger: logging.Logger,
        owner: object,
        count_gaps: bool = True,
        why_lost: str = "the server was unreachable, or they were trimmed before they were read",
        rejections: RejectionCounter | None = None,
        replay_window: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dedupe = check_count("dedupe", dedupe, 0)
        self._logger = logger
        self._owner = owner
        self._count_gaps = count_gaps
        self._why_lost = why_lost
        self._rejections = RejectionCounter(logger=logger) if rejections is None else rejections
        self._replay_window = replay_window
        self._clock = clock
        self._last_seq: dict[str, int] = {}
        # Losses reported that may hide any sender's messages, and per sender how many of
        # those had been reported when its last message came.
        self._losses = 0
        self._losses_seen: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Senders of signed messages, the least recently heard first.
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        #: Times a sender's sequence numbers jumped.
        self.gaps = 0
        #: Messages lost in those jumps (and any reported through :meth:`report_missed`).
        self.missed = 0
        #: Messages received again (a redelivery, or a retried send).
        self.duplicates = 0
        #: Signed messages refused as replays (also counted by ``rejections``).
        self.replayed = 0

    def is_new(self, envelope: Envelope, *, redelivered: bool = False) -> bool:
        """Note ``envelope``'s sequence number; return False for a repeat or a replay to drop.

        ``redelivered`` says that the transport reads this entry again (one it gave before,
        unacknowledged): a signed message taken before is then a duplicate, not a replay.
        """
        window = self._replay_window
        if (
            window is not None
            and envelope.key_id is not None
            and not self._take_signed(envelope, window, redelivered)
        ):
            return False
        sender, seq = envelope.sender, envelope.seq
        last = self._last_seq.get(sender)
        if last is None or seq > last:
            self._last_seq[sender] = seq
        losses = self._losses
        if losses:
            seen, self._losses_seen[sender] = self._losses_seen.get(sender, 0), losses
            if seen < losses:
                last = None  # the jump spans messages reported lost already
        if self._count_gaps and last is not None and seq > last + 1:
            self.report_missed(
                seq - last - 1, f"from {sender} (they were lost on the way: {self._why_lost})"
            )
        if not self._dedupe:
            if last is not None and seq <= last:
                self.duplicates += 1
            return True
        message_id = envelope.message.id
        if message_id in self._seen:
            self.duplicates += 1
            self._logger.debug("%r: dropped a repeat of %s", self._owner, envelope.message)
            return False
        self._seen[message_id] = None
        if len(self._seen) > self._dedupe:
            self._seen.popitem(last=False)
        return True

    def _take_signed(self, envelope: Envelope, replay_window: float, redelivered: bool) -> bool:
        """Check a signed message against the freshness bound and its sender's window, and
        note its number; False: a replay (counted) or a duplicate (counted) to drop."""
        now = self._clock()
        windows = self._windows
        while windows and next(iter(windows.values())).fresh_until < now:
            windows.popitem(last=False)  # every message of theirs is stale by now
        sender, seq = envelope.sender, envelope.seq
        window = windows.get(sender)
        behind = 0 if window is None else window.high - seq
        if (
            window is not None
            and behind >= 0
            and (behind >= SEQ_WINDOW or window.taken >> behind & 1)
        ):
            if redelivered:
                self.duplicates += 1
                self._logger.debug("%r: dropped a redelivered %s", self._owner, envelope.message)
                return False
            return self._replayed(
                envelope, "a number taken before, or older than those taken from that sender"
            )
        sent = envelope.timestamp
        if sent is None:
            return self._replayed(envelope, "no timestamp (signed by an older anybus?)")
        age = now - sent
        if age > replay_window:
            return self._replayed(
                envelope,
                f"sent {age:.1f} s ago, over the replay_window of {replay_window:g} s (a "
                f"replay, or a backlog that old, or the sender's clock is behind)",
            )
        if -age > replay_window:
            return self._replayed(
                envelope,
                f"timestamped {-age:.1f} s ahead of this clock, over the replay_window of "
                f"{replay_window:g} s (the sender's clock is ahead)",
            )
        fresh_until = sent + replay_window
        if window is None:
            windows[sender] = _Window(seq, fresh_until)
            return True
        if behind < 0:  # a new highest number: the ones it skipped may still come
            jump = -behind
            window.taken = 1 if jump >= SEQ_WINDOW else (window.taken << jump | 1) & _ALL_TAKEN
            window.high = seq
        else:  # one a jump skipped, come late
            window.taken |= 1 << behind
        window.fresh_until = max(window.fresh_until, fresh_until)
        windows.move_to_end(sender)
        return True

    def _replayed(self, envelope: Envelope, why: str) -> bool:
        self.replayed += 1
        detail = f"seq {envelope.seq} from {short(envelope.sender, 80)}: {why}"
        self._rejections.record("replayed", detail=detail)
        return False

    def report_missed(self, count: int, why: str | None, *, any_sender: bool = False) -> None:
        """Count a gap of ``count`` messages and log it once, saying ``why`` (``None``: the
        caller logs it). ``any_sender``: the loss may hide any sender's messages (a trimmed
        stream), so a jump in a sender's numbers across it is counted already, not again."""
        self.gaps += 1
        self.missed += count
        if any_sender:
            self._losses += 1
        if why is not None:
            self._logger.warning("%r: missed %d message(s) %s", self._owner, count, why)
