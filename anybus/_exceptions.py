"""The anybus exception hierarchy.

::

    AnybusError
     └── BusStateError      an operation does not fit the bus's lifecycle
"""

from __future__ import annotations

__all__ = ["AnybusError", "BusStateError"]


class AnybusError(Exception):
    """Base class of every error raised by anybus."""


class BusStateError(AnybusError):
    """Raised when a call does not fit the bus's lifecycle state (for example ``start()`` with
    no running scope, or running a bus that already runs)."""
