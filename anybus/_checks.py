"""Checks of the options buses and transports take: a bad value is refused when the object is
made, with a message that names the option, the value and what to give instead (a codec is
checked by :func:`anybus._codec.check_codec`)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_count", "check_name", "check_optional_name", "check_seconds"]


def check_seconds(
    name: str, value: object, *, none: bool = False, zero: bool = False, finite: bool = False
) -> Any:
    """``value``: a number of seconds above 0, ``math.inf`` for no limit (``zero``: 0 too;
    ``none``: or None; ``finite``: not inf, where there must be a limit)."""
    if value is None and none:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or math.isnan(value) or value < 0 or (value == 0 and not zero):  # type: ignore[operator, arg-type]
        least = "0 or more" if zero else "more than 0"
        also = " (or None: no limit)" if none else ""
        raise ValueError(f"{name} must be a number of seconds, {least}{also}; got {value!r}")
    if finite and value == math.inf:
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return value


def check_name(name: str, value: object) -> str:
    """``value``: a non-empty str (a channel, a stream)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_optional_name(name: str, value: object) -> str | None:
    """``value``: a non-empty str, or None for the default (a bus instance's name)."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(
            f"{name} must be a non-empty string (or None for the default), got {value!r}"
        )
    return value


def check_count(name: str, value: object, minimum: int) -> int:
    """``value``: an int of at least ``minimum`` (not a bool, a float or a str)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return value
