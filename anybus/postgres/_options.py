"""What the Postgres transport is told and does by the clock: its options checked, its
timings, and the statements it runs (on the functions of :mod:`anybus.postgres._schema`)."""

from __future__ import annotations

import math
import os
from typing import final

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
    "session_options",
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


def positive(name: str, value: float, most: float = math.inf) -> float:
    """``value``, a positive number of seconds (the option ``name``) of at most ``most``, as
    a float (``most`` finite: the server or libpq takes it as a number, so inf is refused)."""
    seconds = float(check_seconds(name, value))
    if seconds > most:
        raise ValueError(f"{name} must be at most {most:g} seconds, got {value!r}")
    return seconds


def session_options(dsn: str, *, statement_timeout: float, durable: bool) -> str:
    """libpq's ``options`` for a bus's session: the dsn's own (or ``PGOPTIONS``'s), then the
    settings the bus needs, which win where both set one (not ``durable``: the session's
    commits do not wait for the disk)."""
    try:
        given = conninfo_to_dict(dsn).get("options")
    except psycopg.Error:  # connecting says what is wrong with it
        given = None
    if given is None:
        given = os.environ.get("PGOPTIONS")
    options = f"{given} " if given else ""
    options += f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
    # What the schema's functions assume, whatever the role's or database's default.
    options += " -c default_transaction_isolation=read\\ committed"
    if not durable:
        options += " -c synchronous_commit=off"
    return options


#: The largest value a bigint column or parameter holds.
BIGINT_MAX = 2**63 - 1


def count(name: str, value: int, minimum: int) -> int:
    """``value``, an integer of at least ``minimum`` (the option ``name``) that fits a bigint."""
    check_count(name, value, minimum)
    if value > BIGINT_MAX:
        raise ValueError(f"{name} must be at most 2**63 - 1 (a bigint), got {value!r}")
    return value


@final
class Statements:
    """The statements of a bus on the anybus schema ``schema`` (a checked name)."""

    __slots__ = ("ack", "attach", "housekeep", "listen", "publish", "read")

    def __init__(self, schema: str) -> None:
        s = schema
        self.read = (
            f"SELECT id, sender, body FROM {s}.read("
            f"%s, %s, %s, %s::bigint, %s::bigint, %s::integer, %s::bigint)"
        )
        self.ack = f"SELECT {s}.ack(%s, %s, %s, %s::bigint, %s)"
        self.attach = f"SELECT * FROM {s}.attach(%s, %s, %s, %s::interval)"
        self.housekeep = f"SELECT * FROM {s}.housekeep(%s, %s::interval, %s::bigint)"
        self.listen = f"SELECT {s}.listen(%s)"
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
