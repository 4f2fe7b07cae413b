"""The growth of a process's resident set size over a measurement (W4, W5).

Standard library only, like ``_common.py``: the repository's reference memory worker imports it
too.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

__all__ = ["PeakRss"]


def _proc_status_kb(*fields: str) -> dict[str, int] | None:
    """Read ``fields`` (``VmRSS``, ``VmHWM``; kB) of ``/proc/self/status``, or ``None``."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            found[key] = int(value.split()[0])
    return found if len(found) == len(fields) else None


def _ru_maxrss_kb() -> int:
    """The process's lifetime peak RSS from ``getrusage`` (kB; macOS reports bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class PeakRss:
    """The growth of the process's resident set size over a window: peak and at the end.

    ``start()`` takes the baseline right before the clock; ``stop()`` reads the peak since.
    The peak is the kernel's own high-water mark, not a sample, so no short spike is missed
    and nothing has to run during the measurement (while the publisher of a bus whose
    ``send()`` never yields to the event loop runs, an in-loop sampler would not run at all):

    * ``vmhwm`` (Linux): ``start()`` resets the high-water mark to the current RSS by writing
      ``5`` to ``/proc/self/clear_refs`` and reads it back (``VmHWM``) as the baseline;
      ``stop()`` reads ``VmHWM`` again, the highest RSS since the reset. ``ru_maxrss`` reads
      the same kernel counter (and is reset with it). The kernel's RSS counters are per-CPU
      and approximate: ``VmRSS`` and ``VmHWM`` read at the same moment can differ by a few
      dozen pages, so growths below ~0.3 MB are noise; reading both ends from ``VmHWM``
      keeps the same counter on both sides. The kernel moves the mark up before any path
      that unmaps or discards pages (``munmap``, ``madvise``, ``brk``), so a peak that is
      freed again before ``stop()`` still counts.
    * ``ru_maxrss`` (elsewhere, or if the reset is refused): the growth of the lifetime peak,
      ``ru_maxrss`` at the end minus ``ru_maxrss`` at the start. That is exact when the
      process's earlier peak was its RSS at the start (true of a fresh worker process, whose
      RSS only grew while it imported and set up), and a lower bound otherwise.
    """

    def __init__(self) -> None:
        self.method = "ru_maxrss"
        self.before_kb = 0

    def start(self) -> None:
        """Take the baseline (call it last, right before the clock starts)."""
        status = _proc_status_kb("VmRSS", "VmHWM") if _reset_peak_rss() else None
        if status is not None:
            self.method = "vmhwm"
            self.before_kb = status["VmHWM"]
        else:
            self.method = "ru_maxrss"
            self.before_kb = _ru_maxrss_kb()

    def stop(self) -> dict[str, object]:
        """Read the peak since :meth:`start` and the current RSS, in MB (10^6 bytes)."""
        status = _proc_status_kb("VmRSS", "VmHWM")
        peak_kb = status["VmHWM"] if self.method == "vmhwm" and status else _ru_maxrss_kb()
        now_kb = status["VmRSS"] if status else peak_kb
        return {
            "rss_method": self.method,
            "rss_before_mb": self.before_kb * 1024 / 1e6,
            "rss_peak_mb": peak_kb * 1024 / 1e6,
            "rss_end_mb": now_kb * 1024 / 1e6,
            "rss_peak_growth_mb": (peak_kb - self.before_kb) * 1024 / 1e6,
            "rss_end_growth_mb": (now_kb - self.before_kb) * 1024 / 1e6,
        }
