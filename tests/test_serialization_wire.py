"""The envelope: its layout, and decode rejections by reason."""

from __future__ import annotations

import builtins
import dataclasses
import json
import pickle
import sys
from typing import Any

import pytest

from anybus import (
    BusMessage,
    Envelope,
    JSONSerializer,
    MessageRejected,
    MsgpackSerializer,
    Serializer,
    WireCodec,
)

from .serialization_support import Ping, Validated, registry, rejected


def envelope_bytes(body: Any, *, serializer: Serializer | None = None, version: int = 1) -> bytes:
    """An unsigned envelope around any body, valid or not."""
    serializer = serializer or JSONSerializer()
    name = serializer.name.encode()
    return b"AB" + bytes([version, len(name)]) + name + b"\x00" + serializer.encode(body)


def body(**changes: Any) -> dict[str, Any]:
    good = {
        "type": "Ping",
        "sender": "bus-1",
        "seq": 7,
        "id": "abc-1",
        "name": "Ping#1",
        "fields": {"source": "s", "target": None, "nonce": 3},
    }
    good.update(changes)
    return {key: value for key, value in good.items() if value is not ...}


def content(message: BusMessage) -> dict[str, Any]:
    """The fields of a message but its ``id`` and ``name``."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message) if f.init}


def test_envelope_carries_sender_seq_type_and_the_message_identity() -> None:
    codec = WireCodec(registry=registry)
    message = Ping(source="s", target="t", nonce=99)
    data = codec.encode(message, sender="bus-1", seq=12)
    assert data.startswith(b"AB\x01\x04json\x00{")
    envelope = codec.decode(data)
    assert envelope == Envelope(message, "bus-1", 12, "Ping", None)
    assert (envelope.message.id, envelope.message.name) == (message.id, message.name)
    with pytest.raises(AttributeError):
        envelope.seq = 3  # type: ignore[misc]


def test_decode_accepts_the_hand_built_body() -> None:
    envelope = WireCodec(registry=registry).decode(envelope_bytes(body()))
    assert content(envelope.message) == content(Ping(source="s", nonce=3))
    assert (envelope.message.id, envelope.message.name) == ("abc-1", "Ping#1")


# --- rejections, by reason --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", "not an anybus envelope", id="empty"),
        pytest.param(b"GET / HTTP/1.1\r\n", "not an anybus envelope", id="garbage"),
        pytest.param(b"AB\x01", "truncated header", id="short"),
        pytest.param(b"AB\x01\x04js", "truncated header", id="short-name"),
        pytest.param(b"AB\x01\x04json\x05ab", "truncated header", id="short-key-id"),
        pytest.param(b"AB\x01\x04json\x01k" + b"x" * 31, "truncated signature", id="short-mac"),
        pytest.param(b"AB\x01\x04json\x00", "json body does not parse", id="no-body"),
        pytest.param(b"AB\x01\x04json\x00{nope", "json body does not parse", id="bad-json"),
        pytest.param(b"AB\x01\x04json\x00\xff\xfe", "json body does not parse", id="not-utf8"),
        pytest.param(b"AB\x01\x04json\x00[1]", "body is not an envelope body", id="list"),
        pytest.param(envelope_bytes(body(seq=...)), "not an envelope body", id="missing-key"),
        pytest.param(envelope_bytes(body(more=1)), "not an envelope body", id="extra-key"),
        pytest.param(envelope_bytes(body(seq="7")), "bad envelope values", id="seq-str"),
        pytest.param(envelope_bytes(body(seq=-1)), "bad envelope values", id="seq-negative"),
        pytest.param(envelope_bytes(body(seq=2**64)), "bad envelope values", id="seq-huge"),
        pytest.param(envelope_bytes(body(seq=True)), "bad envelope values", id="seq-bool"),
        pytest.param(envelope_bytes(body(sender="")), "bad envelope values", id="no-sender"),
        pytest.param(envelope_bytes(body(type=None)), "bad envelope values", id="type-null"),
        pytest.param(envelope_bytes(body(id=1)), "bad envelope values", id="id-int"),
        pytest.param(
            envelope_bytes(body(), serializer=MsgpackSerializer()),
            "encoded with serializer 'msgpack', this side reads 'json'",
            id="other-serializer",
        ),
        pytest.param(
            b"AB\x01\x04json\x00" + b"[" * 100_000, "json body does not parse", id="deep-json"
        ),
    ],
)
def test_malformed(data: bytes, match: str) -> None:
    error = rejected(WireCodec(registry=registry), data)
    assert error.reason == "malformed"
    assert match in error.detail


def test_malformed_msgpack() -> None:
    codec = WireCodec(MsgpackSerializer(), registry)
    for data in (b"AB\x01\x07msgpack\x00\xc1", b"AB\x01\x07msgpack\x00\x91\x01extra"):
        assert rejected(codec, data).reason == "malformed"
    # An extension type (here a msgpack timestamp) is never turned into anything.
    timestamp = b"\xd6\xff\x00\x00\x00\x01"
    packed = MsgpackSerializer().encode(body())
    data = envelope_bytes(body(), serializer=MsgpackSerializer()).replace(
        packed, packed.replace(b"\xa3seq\x07", b"\xa3seq" + timestamp)
    )
    assert rejected(codec, data).reason == "malformed"


def test_version() -> None:
    error = rejected(WireCodec(registry=registry), envelope_bytes(body(), version=2))
    assert error.reason == "version"
    assert error.detail == "envelope format version 2, this side reads 1"


@pytest.mark.parametrize(
    "type_name",
    [
        "NoSuchMessage",
        "os.system",
        "subprocess.Popen",
        "anybus_fake_module_xyz.Evil",
        "__import__",
    ],
)
def test_unknown_type_is_rejected_and_nothing_is_imported(
    type_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    imports: list[str] = []
    real_import = builtins.__import__

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        imports.append(name)
        return real_import(name, *args, **kwargs)

    codec = WireCodec(registry=registry)
    data = envelope_bytes(body(type=type_name))
    modules_before = set(sys.modules)
    monkeypatch.setattr(builtins, "__import__", spy)
    error = rejected(codec, data)
    monkeypatch.undo()
    assert error.reason == "unknown-type"
    assert repr(type_name) in error.detail
    assert imports == []
    assert set(sys.modules) == modules_before
    assert "anybus_fake_module_xyz" not in sys.modules


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        pytest.param(
            {"source": "s", "nonce": 1, "evil": 1}, "unknown field(s) 'evil'", id="unknown"
        ),
        pytest.param({"source": "s"}, "missing required field(s) nonce", id="missing"),
        pytest.param(
            {"source": "s", "nonce": "1"}, "Ping.nonce: expected int, got str", id="type"
        ),
        pytest.param({"source": 1, "nonce": 1}, "Ping.source: expected str", id="source"),
        pytest.param(
            {"source": "s", "target": [], "nonce": 1}, "expected str, got list", id="opt"
        ),
        pytest.param([1], "expected a dict, got list", id="not-a-dict"),
        pytest.param({"$dict": {"source": "s", "nonce": 1}}, "", id="escaped-fields-ok"),
        pytest.param({"source": "s", "nonce": 1, "$x": 1}, "reserved key '$x'", id="reserved"),
    ],
)
def test_invalid_fields(fields: Any, match: str) -> None:
    codec = WireCodec(registry=registry)
    data = envelope_bytes(body(fields=fields))
    if not match:
        assert content(codec.decode(data).message) == content(Ping(source="s", nonce=1))
        return
    error = rejected(codec, data)
    assert error.reason == "invalid-fields"
    assert match in error.detail


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"color": "blue"}, "RichMessage.color: 'blue' is not a Color"),
        ({"color": ["red"]}, "expected a Color, got list"),
        ({"level": 3}, "RichMessage.level: 3 is not a Level"),
        ({"blob": "AAE="}, "RichMessage.blob: expected bytes, got str"),
        ({"blob": {"$bytes": "!!"}}, "$bytes tag holds an invalid value '!!'"),
        ({"blob": {"$bytes": 1}}, "$bytes tag holds a int, not a str"),
        ({"when": {"$datetime": "yesterday"}}, "$datetime tag holds an invalid value"),
        ({"when": "2024-01-01T00:00:00"}, "RichMessage.when: expected datetime, got str"),
        ({"day": {"$date": "2024-13-01"}}, "$date tag holds an invalid value"),
        ({"pair": [1]}, "RichMessage.pair: 1 items do not fit tuple[int, str]"),
        ({"pair": [1, 2]}, "RichMessage.pair[1]: expected str, got int"),
        ({"tags": "abc"}, "RichMessage.tags: expected a list, got str"),
        ({"point": {"x": 1}}, "RichMessage.point: missing required field(s) y"),
        ({"point": {"x": 1, "y": 2, "z": 3}}, "unknown field(s) 'z' for Point"),
        ({"points": [{"x": "a", "y": 1}]}, "RichMessage.points[0].x: expected float, got str"),
        ({"box": {"corners": [{"x": 0, "y": 0}]}}, "RichMessage.box.corners: 1 items do not fit"),
        ({"by_color": {"blue": 1}}, "RichMessage.by_color['blue']: not a Color key"),
        ({"extra": {"$unknown": 1}}, "RichMessage.extra: has a reserved key '$unknown'"),
        ({"extra": {"a": {"b": {"x": 1, "$y": 2}}}}, "extra['a']['b']: has a reserved key"),
        ({"extra": {"$dict": [1]}}, "$dict tag holds a list"),
        ({"mode": "c"}, "RichMessage.mode: 'c' is not one of Literal['a', 'b']"),
        ({"flag": 1}, "RichMessage.flag: expected bool, got int"),
    ],
)
def test_invalid_field_values(fields: dict[str, Any], match: str) -> None:
    error = rejected(
        WireCodec(registry=registry),
        envelope_bytes(body(type="tests.Rich", fields={"source": "s", **fields})),
    )
    assert error.reason == "invalid-fields"
    assert match in error.detail


def test_a_constructor_that_raises_is_invalid_fields() -> None:
    codec = WireCodec(registry=registry)
    data = envelope_bytes(body(type="Validated", fields={"source": "s", "positive": -1}))
    error = rejected(codec, data)
    assert error.reason == "invalid-fields"
    assert "positive must be positive, got -1" in error.detail
    assert codec.decode(codec.encode(Validated(source="s", positive=1), sender="b", seq=1))


def test_too_deep_fields_are_invalid() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    data = envelope_bytes(body(type="BusJobRequestMessage", fields={"source": "s", "job_id": "j"}))
    data = data.replace(
        b'"job_id":"j"', b'"job_id":"j","payload":{"d":' + json.dumps(deep).encode() + b"}"
    )
    error = rejected(WireCodec(), data)
    assert (error.reason, "nested over 64 levels deep" in error.detail) == ("invalid-fields", True)


def test_message_rejected_is_an_anybus_error_with_a_fixed_set_of_reasons() -> None:
    assert set(MessageRejected.REASONS) == {
        "malformed",
        "oversized",
        "unknown-type",
        "forged",
        "unsigned",
        "version",
        "invalid-fields",
    }
    error = MessageRejected("forged", "bad signature")
    assert str(error) == "message rejected (forged): bad signature"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail) == ("forged", "bad signature")
    with pytest.raises(ValueError, match="reason must be one of"):
        MessageRejected("boring", "x")  # type: ignore[arg-type]
