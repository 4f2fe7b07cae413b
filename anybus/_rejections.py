"""The counter of the messages a transport's reader refused, per reason, logged politely."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import final

from ._checks import check_seconds
from ._exceptions import MessageRejected

__all__ = ["RejectionCounter"]


@final
class RejectionCounter:
    """Counts messages refused by `WireCodec.decode`, per reason, and logs them politely.

    The first rejection for a reason is logged at WARNING on ``anybus.wire`` at once; after
    that at most one line per ``interval`` seconds per reason, carrying the running count and
    the latest detail, so a flood of bad input cannot flood the log. Typical use in a
    transport's reader::

        try:
            envelope = codec.decode(data)
        except MessageRejected as exc:
            rejections.record(exc, origin=stream_name)
            continue

    Raises:
        ValueError: ``interval`` is not a number of seconds, 0 or more.
        TypeError: ``logger`` is not a :class:`logging.Logger`, or ``clock`` not callable.
    """

    def __init__(
        self,
        *,
        interval: float = 60.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval: float = check_seconds("interval", interval, zero=True)
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(
                f"logger must be a logging.Logger (or None: anybus.wire's), got {logger!r}"
            )
        if not callable(clock):
            raise TypeError(f"clock must be a function returning seconds, got {clock!r}")
        self._logger = logger if logger is not None else logging.getLogger("anybus.wire")
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._unreported: dict[str, int] = {}
        self._last_report: dict[str, float] = {}

    @property
    def counts(self) -> dict[str, int]:
        """Rejections so far per reason (a copy; reasons never seen are absent)."""
        return dict(self._counts)

    @property
    def total(self) -> int:
        """Rejections so far, all reasons together."""
        return sum(self._counts.values())

    def record(
        self,
        rejection: MessageRejected | str,
        *,
        origin: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Count ``rejection``, and log it unless its reason was logged under ``interval`` ago.

        ``rejection`` is a :class:`~anybus.MessageRejected`, or a reason of the transport's
        own (such as ``"inbound-overflow"``, or ``"replayed"``) as a str, with an optional
        ``detail``. ``origin`` (a stream or channel name, say) is added to the log line.
        """
        if isinstance(rejection, str):
            reason, detail = rejection, detail or "-"
        else:
            reason, detail = rejection.reason, rejection.detail
        self._counts[reason] = self._counts.get(reason, 0) + 1
        self._unreported[reason] = self._unreported.get(reason, 0) + 1
        now = self._clock()
        last = self._last_report.get(reason)
        if last is not None and now - last < self._interval:
            return
        self._last_report[reason] = now
        unreported, self._unreported[reason] = self._unreported[reason], 0
        self._logger.warning(
            "rejected %d message(s) as %s%s so far (%d since the last report); latest: %s",
            self._counts[reason],
            reason,
            f" from {origin}" if origin else "",
            unreported,
            detail,
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(self._counts.items()))
        return f"<RejectionCounter [{counts or 'no rejections'}]>"
