"""Fuzzing the decoder: whatever bytes arrive, ``decode`` returns an envelope or raises
``MessageRejected``, never anything else; and random messages survive the round trip."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anybus import (
    BusJobRequestMessage,
    BusMessage,
    JSONSerializer,
    MessageRejected,
    MsgpackSerializer,
    Serializer,
    WireCodec,
)
from anybus._fields import encode_fields

from .serialization_support import (
    Box,
    Color,
    Computed,
    Level,
    Mood,
    Ping,
    Point,
    RichMessage,
    Validated,
    registry,
    sample,
)

KEY = b"k" * 32
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def codecs() -> tuple[WireCodec, ...]:
    return (
        WireCodec(registry=registry),
        WireCodec(MsgpackSerializer(), registry),
        WireCodec(registry=registry, signing_keys={"k1": KEY}),
        WireCodec(MsgpackSerializer(), registry, signing_keys={"k1": KEY}),
    )


def decode_or_reject(codec: WireCodec, data: bytes) -> str:
    """Decode: return ``"ok"`` or the rejection's reason; any other exception fails the test."""
    try:
        codec.decode(data)
    except MessageRejected as exc:
        return exc.reason
    return "ok"


OUTCOMES = {"ok", *MessageRejected.REASONS}


@cache
def seeds() -> tuple[tuple[WireCodec, bytes], ...]:
    """Valid envelopes for every codec: every anybus message type and the rich test message."""
    return tuple(
        (codec, codec.encode(message, sender="bus-1", seq=index))
        for codec in codecs()
        for index, message in enumerate(sample_messages())
    )


def sample_messages() -> list[BusMessage]:
    """A message of every anybus type, and a rich test message."""
    messages = [sample(cls) for _, cls in registry.items() if cls.__module__ == "anybus"]
    messages.append(
        RichMessage(
            source="s",
            blob=b"\x00\xff",
            box=Box((Point(1, 2), Point(3, 4))),
            by_color={Color.GREEN: 1},
            extra={"$k": [1, {"$bytes": "x"}]},
            pair=(1, "a"),
            when=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            day=date(2024, 1, 2),
            level=Level.LOW,
            points=[Point(0, 0)],
        )
    )
    return messages


@settings(FUZZ, max_examples=2000)
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected(data: bytes) -> None:
    for codec in codecs():
        assert decode_or_reject(codec, data) in OUTCOMES


@settings(FUZZ, max_examples=1000)
@given(st.sampled_from(["json", "msgpack"]), st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header_are_rejected(name: str, data: bytes) -> None:
    for codec in codecs():
        header = b"AB\x01" + bytes([len(name)]) + name.encode() + b"\x00"
        assert decode_or_reject(codec, header + data) in OUTCOMES


@st.composite
def mutated(draw: st.DrawFn) -> tuple[WireCodec, bytes]:
    codec, original = draw(st.sampled_from(seeds()))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        if operation == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif data:
            data[position] = draw(st.integers(0, 255))
    return codec, bytes(data)


@settings(FUZZ, max_examples=2500)
@given(mutated())
def test_mutated_envelopes_are_rejected_or_decoded(case: tuple[WireCodec, bytes]) -> None:
    codec, data = case
    assert decode_or_reject(codec, data) in OUTCOMES


_KEYS = ["$bytes", "$datetime", "$date", "$dict", "x", "", "é"]
_LEAVES: list[Any] = [None, True, False, 0, -1, 2**63, 2**64 - 1, 1.5, -0.0, float("inf")]
_LEAVES += ["", "red", "calm", "a", "2024-01-01", "2024-01-01T00:00:00+01:00", "AAE=", "$dict"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Plain data, built from a seed: far cheaper to draw than a recursive strategy."""
    kind = rng.random()
    if depth > 4 or kind < 0.5:
        return rng.choice(_LEAVES)
    if kind < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [*_KEYS, "".join(rng.choices("ab$xyz", k=3))]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


@cache
def valid_fields() -> dict[str, dict[str, Any]]:
    """The encoded fields of a valid message of each registered type, by type name."""
    return {
        registry.name_of(type(message)): encode_fields(message)
        for message in [
            *sample_messages(),
            Ping(source="s", nonce=1),
            Validated(source="s", positive=1),
            Computed(source="s", words=["a"]),
        ]
    }


def random_body(type_name: str, seed: int) -> dict[str, Any]:
    """An envelope body for ``type_name`` whose fields are random plain data."""
    rng = random.Random(seed)
    names = [f.name for f in dataclasses.fields(registry.lookup(type_name)) if f.init]
    valid = valid_fields().get(type_name, {})
    # Mostly the right field names, so the values get checked; a valid value more often than
    # not, so the decoder gets past the first field; sometimes a wrong name.
    fields = {
        name: valid[name] if name in valid and rng.random() < 0.6 else random_value(rng)
        for name in names
        if rng.random() < 0.95
    }
    if rng.random() < 0.1:
        fields[rng.choice(_KEYS)] = random_value(rng)
    return {"type": type_name, "sender": "b", "seq": 1, "id": "i", "name": "n", "fields": fields}


@settings(FUZZ, max_examples=3000)
@given(
    st.sampled_from([JSONSerializer(), MsgpackSerializer()]),
    st.sampled_from(list(registry)),
    st.integers(0, 2**32),
)
def test_random_field_values_are_rejected_or_decoded(
    serializer: Serializer, type_name: str, seed: int
) -> None:
    body = random_body(type_name, seed)
    name = serializer.name.encode()
    data = b"AB\x01" + bytes([len(name)]) + name + b"\x00" + serializer.encode(body)
    assert decode_or_reject(WireCodec(serializer, registry), data) in {"ok", "invalid-fields"}


points = st.builds(
    Point,
    st.floats(allow_nan=False) | st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False),
    st.none() | st.text(max_size=5),
)
timezones = st.none() | st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
extra_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(timezones=timezones)
    | st.dates(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=4) | st.just("$bytes"), children, max_size=3)
    ),
    max_leaves=8,
)
rich_messages = st.builds(
    RichMessage,
    source=st.text(max_size=5),
    target=st.none() | st.text(max_size=5),
    text=st.text(max_size=20),
    count=st.integers(-(2**63), 2**63 - 1),
    ratio=st.floats(allow_nan=False),
    flag=st.booleans(),
    blob=st.binary(max_size=20),
    when=st.none() | st.datetimes(timezones=timezones),
    day=st.none() | st.dates(),
    color=st.sampled_from(Color),
    level=st.none() | st.sampled_from(Level),
    mood=st.sampled_from(Mood),
    tags=st.lists(st.text(max_size=3), max_size=3),
    pair=st.tuples(st.integers(0, 9), st.text(max_size=3)),
    numbers=st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3).map(tuple),
    point=st.none() | points,
    box=st.none() | st.builds(Box, st.tuples(points, points), st.sampled_from(Color)),
    points=st.lists(points, max_size=2),
    by_color=st.dictionaries(st.sampled_from(Color), st.integers(0, 9), max_size=2),
    extra=st.dictionaries(st.text(max_size=4) | st.just("$dict"), extra_values, max_size=3),
    mode=st.sampled_from(["a", "b"]),
)


@settings(FUZZ, max_examples=200)
@given(rich_messages, st.sampled_from(range(4)))
def test_random_messages_round_trip(message: RichMessage, codec_index: int) -> None:
    codec = codecs()[codec_index]
    assert codec.decode(codec.encode(message, sender="b", seq=1)).message == message


@settings(FUZZ, max_examples=200)
@given(st.dictionaries(st.text(max_size=5), extra_values, max_size=4), st.integers(0, 2**64 - 1))
def test_random_payloads_round_trip(payload: dict[str, Any], seq: int) -> None:
    message = BusJobRequestMessage(source="s", job_id="j", payload=payload)
    for codec in codecs():
        envelope = codec.decode(codec.encode(message, sender="b", seq=seq))
        assert envelope.message == message
        assert envelope.seq == seq


def test_the_seeds_decode() -> None:
    for codec, data in seeds():
        codec.decode(data)
    assert Ping in registry
