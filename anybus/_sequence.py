"""Following senders' sequence numbers: gaps (messages lost on the way) and repeats.

Every envelope carries its sender's id and a sequence number that grows by one per message
that sender puts on the network. A network transport gives each envelope it receives to a
:class:`SequenceTracker`, which counts the gaps and the messages missed in them, and spots
repeats (by message id, in a bounded window) so that they can be dropped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from ._wire import Envelope

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """Gaps and repeats in what a transport receives (see the module docs).

    Args:
        dedupe: remember the ids of this many recent messages and call repeats not new
            (0: every message is new; repeats are still counted, by sequence number).
        logger: where gaps are reported (a WARNING each).
        owner: what the log lines name as the receiver.
        count_gaps: count jumps in a sender's sequence numbers as missed messages. A
            transport that sees losses exactly another way (gapless positions in a log)
            turns this off, so that a send that was never stored is not counted as lost.

    Raises:
        ValueError: ``dedupe`` is negative.
    """

    __slots__ = (
        "_count_gaps",
        "_dedupe",
        "_last_seq",
        "_logger",
        "_owner",
        "_seen",
        "duplicates",
        "gaps",
        "missed",
    )

    def __init__(
        self, *, dedupe: int, logger: logging.Logger, owner: object, count_gaps: bool = True
    ) -> None:
        if dedupe < 0:
            raise ValueError(f"dedupe cannot be negative, got {dedupe!r}")
        self._dedupe = dedupe
        self._logger = logger
        self._owner = owner
        self._count_gaps = count_gaps
        self._last_seq: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: Times a sender's sequence numbers jumped.
        self.gaps = 0
        #: Messages lost in those jumps (and any reported through :meth:`report_missed`).
        self.missed = 0
        #: Messages received again.
        self.duplicates = 0

    def is_new(self, envelope: Envelope) -> bool:
        """Note ``envelope``'s sequence number; return False for a repeat to drop."""
        sender, seq = envelope.sender, envelope.seq
        last = self._last_seq.get(sender)
        if last is None or seq > last:
            self._last_seq[sender] = seq
        if self._count_gaps and last is not None and seq > last + 1:
            self.report_missed(
                seq - last - 1,
                f"from {sender} (they were lost on the way: the server was unreachable, or "
                f"they were trimmed before they were read)",
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

    def report_missed(self, count: int, why: str) -> None:
        """Count a gap of ``count`` messages and log it once, saying ``why``."""
        self.gaps += 1
        self.missed += count
        self._logger.warning("%r: missed %d message(s) %s", self._owner, count, why)
