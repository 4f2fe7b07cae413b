"""What the Postgres transport is told and does by the clock: its options checked, its
timings, and the statements it runs (on the functions of :mod:`anybus.postgres._schema`)."""

from __future__ import annotations

from typing import final

from .._checks import check_count, check_seconds
from .._wire import WireCodec

__all__ = [
    "ACK_CHECK",
    "ACK_INTERVAL",
    "OWN_READ_DELAY",
    "Statements",
    "count",
    "durability",
    "flag",
    "positive",
    "seconds",
]

#: How often a reader with messages in flight looks whether it can acknowledge them.
ACK_CHECK = 0.05

#: The least time between two acknowledgements of a running reader, in seconds: an
#: acknowledgement is a write, so those due meanwhile wait for the next one (after a crash,
#: the next run of the name gets what they covered again). Stopping acknowledges exactly.
ACK_INTERVAL = 0.05

#: Seconds a reader woken by nothing but its own bus's notifications waits before it reads
#: past those rows (unless another bus's message, or an acknowledgement, calls for a read
#: first): its own rows need no delivery, so a sender reads them in batches.
OWN_READ_DELAY = 0.05


def flag(name: str, value: object) -> bool:
    """``value`` if it is a bool, else TypeError naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def durability(value: str) -> bool:
    """Whether ``value`` (the ``durability`` option) asks for queued sends."""
    if value not in ("stored", "queued"):
        raise ValueError(f"durability must be 'stored' or 'queued', got {value!r}")
    return value == "queued"


def positive(name: str, value: float) -> float:
    """``value``, a positive number of seconds (the option ``name``), as a float."""
    return float(check_seconds(name, value))


def seconds(name: str, value: float) -> float:
    """``value``, a number of seconds of at least 0 (the option ``name``), as a float."""
    return float(check_seconds(name, value, zero=True))


def count(name: str, value: int, minimum: int) -> int:
    """``value``, an integer of at least ``minimum`` (the option ``name``)."""
    return check_count(name, value, minimum)


@final
class Statements:
    """The statements of a bus on the anybus schema ``schema`` (a checked name)."""

    __slots__ = ("ack", "attach", "housekeep", "publish", "read")

    def __init__(self, schema: str) -> None:
        s = schema
        self.read = (
            f"SELECT id, sender, body FROM {s}.read("
            f"%s, %s, %s, %s::bigint, %s::bigint, %s::integer, %s::bigint)"
        )
        self.ack = f"SELECT {s}.ack(%s, %s, %s, %s::bigint, %s)"
        self.attach = f"SELECT * FROM {s}.attach(%s, %s, %s, %s::interval)"
        self.housekeep = f"SELECT * FROM {s}.housekeep(%s, %s::interval, %s::bigint)"
        self.publish = (
            f"SELECT o_stored, o_last FROM {s}.publish("
            f"%s, %s, %s::bigint[], %s::bytea[], %s::integer)"
        )


def wire_codec(value: object) -> WireCodec:
    """``value``: a :class:`WireCodec`, or None for the default one."""
    if value is None:
        return WireCodec()
    if not isinstance(value, WireCodec):
        raise TypeError(
            f"codec must be a WireCodec (PostgresBus speaks anybus's wire format), got "
            f"{value!r}; to use a serializer, wrap it: codec=WireCodec(serializer=...)"
        )
    return value
