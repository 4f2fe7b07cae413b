"""The checks of :class:`~anybus.WireCodec`'s options: each bad value refused as the codec is
made, with a message naming the option (apart from the codec, so that it stays short)."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["check_label", "check_wire_options"]


def check_label(label: object, what: str) -> bytes:
    """A serializer name or key id as it appears in the header: 1 to 255 printable ASCII bytes."""
    if isinstance(label, str) and label.isascii() and label.isprintable() and 0 < len(label) < 256:
        return label.encode("ascii")
    raise ValueError(f"{what} must be 1 to 255 printable ASCII characters, got {label!r}")


def check_wire_options(
    *,
    serializer: object,
    registry: object,
    max_size: object,
    replay_window: object,
    clock: object,
    signing_keys: object,
    signing_key_id: object,
) -> tuple[float | None, dict[str, bytes], str | None]:
    """The replay window (seconds, or None), the signing keys by id, and the id of the key
    that signs (None: no signing), once every option is checked."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 64:
        raise ValueError(f"max_size must be an int of at least 64 bytes, got {max_size!r}")
    window = replay_window
    if window is not None and (
        type(window) not in (int, float) or not 0 < window < math.inf  # type: ignore[operator]
    ):
        raise ValueError(
            f"replay_window must be a positive number of seconds or None, got {window!r}"
        )
    if not callable(clock):
        raise TypeError(f"clock must be a function returning seconds (time.time), got {clock!r}")
    if serializer is not None and not all(
        hasattr(serializer, attribute) for attribute in ("name", "encode", "decode")
    ):
        raise TypeError(
            f"serializer must be a serializer (JSONSerializer(), MsgpackSerializer(), or an "
            f"object with name, encode and decode), got {serializer!r}"
        )
    if not all(hasattr(registry, attribute) for attribute in ("lookup", "name_of")):
        raise TypeError(f"registry must be a MessageRegistry, got {registry!r}")
    if signing_keys is not None and not isinstance(signing_keys, Mapping):
        raise TypeError(
            f"signing_keys takes a mapping of key id to secret bytes, as {{'k1': b'...'}}, "
            f"got {signing_keys!r}"
        )
    keys: dict[str, bytes] = {}
    for key_id, secret in (signing_keys or {}).items():
        check_label(key_id, "signing key id")
        if not isinstance(secret, bytes):
            raise TypeError(f"signing key {key_id!r} must be bytes, got {type(secret)!r}")
        if not secret:
            raise ValueError(f"signing key {key_id!r} must not be empty")
        keys[key_id] = secret
    if signing_key_id is None and len(keys) == 1:
        signing_key_id = next(iter(keys))
    if keys and signing_key_id not in keys:
        raise ValueError(
            f"signing_key_id must name one of the signing_keys {sorted(keys)!r}, "
            f"got {signing_key_id!r}"
        )
    if not keys and signing_key_id is not None:
        raise ValueError(f"signing_key_id {signing_key_id!r} given without signing_keys")
    return (None if window is None else float(window)), keys, signing_key_id  # type: ignore[arg-type, return-value]
