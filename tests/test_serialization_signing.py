"""The envelope: signing and key rotation, size limits, counting and logging rejections."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from anybus import (
    BusCancelMessage,
    BusJobRequestMessage,
    JSONSerializer,
    MessageRejected,
    RejectionCounter,
    SerializationError,
    Serializer,
    WireCodec,
)

from .serialization_support import Ping, RichMessage, registry, rejected, serializers

KEY1, KEY2 = b"1" * 32, b"2" * 32


# --- signing ----------------------------------------------------------------------------------


def signed_codec(keys: dict[str, bytes], key_id: str | None = None) -> WireCodec:
    return WireCodec(registry=registry, signing_keys=keys, signing_key_id=key_id)


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
def test_signed_round_trip(serializer: Serializer) -> None:
    codec = WireCodec(serializer, registry, signing_keys={"k1": KEY1})
    assert codec.signing_key_id == "k1"
    message = RichMessage(source="s", blob=b"\x00" * 10)
    data = codec.encode(message, sender="b", seq=1)
    name = serializer.name.encode()
    header = b"AB\x01" + bytes([len(name)]) + name + b"\x02k1"
    mac, rest = data[len(header) : len(header) + 32], data[len(header) + 32 :]
    assert data.startswith(header)
    assert mac == hmac.new(KEY1, header + rest, hashlib.sha256).digest()
    envelope = codec.decode(data)
    assert (envelope.message, envelope.key_id) == (message, "k1")


def test_every_tampered_byte_is_rejected_as_forged_or_malformed() -> None:
    codec = signed_codec({"k1": KEY1})
    data = codec.encode(Ping(source="s", nonce=1), sender="b", seq=1)
    reasons = set()
    for index in range(len(data)):
        for flip in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= flip
            reasons.add(rejected(codec, bytes(tampered)).reason)
    # The magic and lengths give "malformed", the version byte "version", the rest "forged".
    assert reasons == {"malformed", "version", "forged"}
    body_start = data.index(b"{")
    for index in range(body_start, len(data)):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        assert rejected(codec, bytes(tampered)).reason == "forged"


def test_unsigned_and_wrongly_signed_messages_are_refused_when_keys_are_configured() -> None:
    codec = signed_codec({"k1": KEY1})
    message = Ping(source="s", nonce=1)
    unsigned = WireCodec(registry=registry).encode(message, sender="b", seq=1)
    assert rejected(codec, unsigned).reason == "unsigned"
    other_secret = signed_codec({"k1": b"x" * 32}).encode(message, sender="b", seq=1)
    error = rejected(codec, other_secret)
    assert (error.reason, error.detail) == ("forged", "bad signature for key id 'k1'")
    other_id = signed_codec({"zz": KEY1}).encode(message, sender="b", seq=1)
    error = rejected(codec, other_id)
    assert (error.reason, error.detail) == ("forged", "signed with unknown key id 'zz'")


def test_a_codec_without_keys_reads_signed_messages_without_verifying() -> None:
    message = Ping(source="s", nonce=1)
    data = signed_codec({"k1": KEY1}).encode(message, sender="b", seq=1)
    envelope = WireCodec(registry=registry).decode(data)
    assert (envelope.message, envelope.key_id) == (message, None)


def test_key_rotation() -> None:
    message = Ping(source="s", nonce=1)
    old_sender = signed_codec({"k1": KEY1})
    rotating = signed_codec({"k1": KEY1, "k2": KEY2}, "k2")
    rotated = signed_codec({"k2": KEY2})
    old_data = old_sender.encode(message, sender="b", seq=1)
    new_data = rotating.encode(message, sender="b", seq=2)
    assert rotating.decode(old_data).key_id == "k1"  # old key still listed: accepted
    assert rotating.decode(new_data).key_id == "k2"
    assert rotated.decode(new_data).key_id == "k2"
    assert rejected(rotated, old_data).reason == "forged"  # old key removed: refused
    assert rejected(old_sender, new_data).reason == "forged"
    assert rotating.key_ids == frozenset({"k1", "k2"})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"signing_keys": {"a": KEY1, "b": KEY2}}, ValueError, "signing_key_id must name one"),
        ({"signing_keys": {"a": KEY1}, "signing_key_id": "b"}, ValueError, "got 'b'"),
        ({"signing_key_id": "a"}, ValueError, "signing_key_id 'a' given without signing_keys"),
        ({"signing_keys": {"a": "secret"}}, TypeError, "signing key 'a' must be bytes"),
        ({"signing_keys": {"a": b""}}, ValueError, "signing key 'a' must not be empty"),
        ({"signing_keys": {"": KEY1}}, ValueError, "signing key id must be 1 to 255 printable"),
        ({"signing_keys": {"é": KEY1}}, ValueError, "signing key id must be 1 to 255 printable"),
        ({"signing_keys": {"k" * 256: KEY1}}, ValueError, "signing key id must be 1 to 255"),
        ({"max_size": 10}, ValueError, "max_size must be an int of at least 64 bytes, got 10"),
        ({"max_size": 1e6}, ValueError, "max_size must be an int"),
    ],
)
def test_codec_settings_are_checked(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        WireCodec(**kwargs)


def test_repr_shows_the_settings_and_never_a_secret() -> None:
    codec = WireCodec(
        registry=registry, signing_keys={"k1": KEY1, "k2": KEY2}, signing_key_id="k2"
    )
    text = repr(codec)
    assert text.startswith("<WireCodec [json, max_size=1048576, signing_key_id='k2', 2 key(s)")
    assert "1111" not in text
    assert "2222" not in text
    assert repr(WireCodec()).startswith("<WireCodec [json, max_size=1048576, unsigned, 0 key(s)")


# --- size limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
def test_encode_refuses_an_oversized_message(serializer: Serializer) -> None:
    codec = WireCodec(serializer, max_size=1000)
    small = BusJobRequestMessage(source="s", job_id="j", payload={"x": "a" * 500})
    assert len(codec.encode(small, sender="b", seq=1)) <= 1000
    big = BusJobRequestMessage(source="s", job_id="j", payload={"x": "a" * 1000})
    with pytest.raises(SerializationError, match=r"is 1\d{3} bytes, over the max_size of 1000"):
        codec.encode(big, sender="b", seq=1)


def test_the_signature_counts_towards_the_size() -> None:
    message = BusJobRequestMessage(source="s", job_id="j", payload={"x": "a" * 100})
    size = len(WireCodec().encode(message, sender="b", seq=1))
    WireCodec(max_size=size).encode(message, sender="b", seq=1)
    # The key id's length byte, the MAC, and the signed send time (replay protection).
    overhead = 1 + 32 + len(b',"time_ms":') + 13
    with pytest.raises(SerializationError, match=f"is {size + overhead} bytes"):
        WireCodec(max_size=size, signing_keys={"k": KEY1}).encode(message, sender="b", seq=1)


class _SpySerializer:
    name = "json"

    def __init__(self) -> None:
        self.decoded = 0

    def encode(self, obj: dict[str, Any]) -> bytes:
        return JSONSerializer().encode(obj)

    def decode(self, data: bytes) -> Any:
        self.decoded += 1
        return JSONSerializer().decode(data)


def test_decode_refuses_oversized_input_before_parsing() -> None:
    spy = _SpySerializer()
    big = WireCodec(spy, registry).encode(
        BusCancelMessage(source="s", reason="r" * 2000), sender="b", seq=1
    )
    assert spy.decoded == 0
    WireCodec(spy, registry, max_size=len(big)).decode(big)
    assert spy.decoded == 1
    error = rejected(WireCodec(spy, registry, max_size=len(big) - 1), big)
    assert error.reason == "oversized"
    assert error.detail == f"{len(big)} bytes, over the max_size of {len(big) - 1} bytes"
    assert spy.decoded == 1
    huge = b"\x00" * 10_000_000  # not even looked at
    assert rejected(WireCodec(spy), huge).reason == "oversized"


# --- counting and logging rejections ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wire_records(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    with caplog.at_level(logging.WARNING, logger="anybus.wire"):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == "anybus.wire"]


def test_rejection_counter_counts_every_rejection_and_logs_at_most_once_per_interval(
    wire_records: Callable[[], list[str]],
) -> None:
    clock = FakeClock()
    counter = RejectionCounter(interval=10, clock=clock)
    assert repr(counter) == "<RejectionCounter [no rejections]>"
    for _ in range(5):
        counter.record(MessageRejected("forged", "bad signature for key id 'k1'"), origin="ch")
    counter.record(MessageRejected("malformed", "not an anybus envelope"))
    assert counter.counts == {"forged": 5, "malformed": 1}
    assert counter.total == 6
    assert wire_records() == [
        "rejected 1 message(s) as forged from ch so far (1 since the last report); "
        "latest: bad signature for key id 'k1'",
        "rejected 1 message(s) as malformed so far (1 since the last report); "
        "latest: not an anybus envelope",
    ]
    clock.now += 9.9
    counter.record(MessageRejected("forged", "again"))
    assert len(wire_records()) == 2
    clock.now += 0.1
    counter.record(MessageRejected("forged", "later"))
    assert wire_records()[-1] == (
        "rejected 7 message(s) as forged so far (6 since the last report); latest: later"
    )
    counter.record("inbound-overflow")
    assert counter.counts["inbound-overflow"] == 1
    assert repr(counter) == "<RejectionCounter [forged: 7, inbound-overflow: 1, malformed: 1]>"


def test_rejection_counter_settings() -> None:
    with pytest.raises(
        ValueError, match="interval must be a number of seconds, 0 or more; got -1"
    ):
        RejectionCounter(interval=-1)
    with pytest.raises(ValueError, match=r"interval must be a number of seconds.*got '60'"):
        RejectionCounter(interval="60")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"logger must be a logging\.Logger.*got 'anybus'"):
        RejectionCounter(logger="anybus")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a function returning seconds, got 5"):
        RejectionCounter(clock=5)  # type: ignore[arg-type]
    logger = logging.getLogger("anybus.test-wire")
    counter = RejectionCounter(interval=0, logger=logger)
    counter.record(MessageRejected("unsigned", "x"))
    counter.record(MessageRejected("unsigned", "x"))
    assert counter.counts == {"unsigned": 2}
