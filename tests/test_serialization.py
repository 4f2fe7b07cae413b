"""The message registry, the serializers and the field codec."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import anybus
from anybus import (
    BusDataMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    BusWorkerLocalErrorMessage,
    JobStatus,
    JSONSerializer,
    MessageRegistry,
    MsgpackSerializer,
    SerializationError,
    Serializer,
    WireCodec,
    default_registry,
    register_message,
)
from anybus import _messages as messages_module

from .serialization_support import (
    Box,
    Color,
    Computed,
    Level,
    Mood,
    Ping,
    Point,
    RichMessage,
    registry,
    sample,
    serializers,
)

ANYBUS_WIRE_TYPES = sorted(
    name
    for name in messages_module.__all__
    if isinstance(getattr(messages_module, name), type)
    and issubclass(getattr(messages_module, name), BusMessage)
    and name != "BusWorkerLocalErrorMessage"
)


def round_trip(message: BusMessage, serializer: Serializer) -> BusMessage:
    codec = WireCodec(serializer, registry)
    return codec.decode(codec.encode(message, sender="bus-1", seq=1)).message


# --- the registry -----------------------------------------------------------------------------


def test_default_registry_holds_every_anybus_message_but_the_local_ones() -> None:
    # Other code may register more (transports register their own control messages).
    assert list(default_registry)[: len(ANYBUS_WIRE_TYPES)] == ANYBUS_WIRE_TYPES
    assert "BusWorkerLocalErrorMessage" not in default_registry
    assert BusWorkerLocalErrorMessage not in default_registry
    for name in ANYBUS_WIRE_TYPES:
        cls = getattr(anybus, name)
        assert default_registry.lookup(name) is cls
        assert default_registry.name_of(cls) == name


def test_register_as_call_and_as_decorators() -> None:
    reg = MessageRegistry()

    @dataclass(kw_only=True)
    class Plain(BusDataMessage):
        pass

    @reg.register
    @dataclass(kw_only=True)
    class Bare(BusDataMessage):
        pass

    @reg.register(name="app.Named")
    @dataclass(kw_only=True)
    class Named(BusDataMessage):
        pass

    assert reg.register(Plain) is Plain
    assert reg.register(Plain) is Plain  # again, same name: nothing happens
    assert list(reg) == [Bare.__qualname__, "app.Named", Plain.__qualname__]
    assert reg.lookup("app.Named") is Named
    assert reg.name_of(Bare) == Bare.__qualname__
    assert Named in reg
    assert "app.Named" in reg
    assert "Named" not in reg
    assert 42 not in reg
    assert len(reg) == 3
    assert list(reg.items())[1] == ("app.Named", Named)
    assert repr(reg) == "<MessageRegistry [3 types]>"


def test_register_message_uses_the_default_registry() -> None:
    @register_message(name="tests.DefaultRegistered")
    @dataclass(kw_only=True)
    class DefaultRegistered(BusDataMessage):
        pass

    assert default_registry.lookup("tests.DefaultRegistered") is DefaultRegistered
    assert (
        anybus.register_message(DefaultRegistered, "tests.DefaultRegistered") is DefaultRegistered
    )


def test_copy_is_independent() -> None:
    clone = default_registry.copy()
    clone.register(Ping, name="tests.only-in-clone")
    assert "tests.only-in-clone" in clone
    assert "tests.only-in-clone" not in default_registry


@dataclass(kw_only=True)
class _Registrable(BusDataMessage):
    pass


class _Undecorated(BusDataMessage):
    extra: int = 0


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        pytest.param(42, "cls must be a BusMessage subclass, got 42", id="not-a-class"),
        pytest.param("x.Name", r"register\(name='x.Name'\)", id="name-passed-as-cls"),
        pytest.param(Point, "cls must be a BusMessage subclass, got 'Point'", id="not-a-message"),
        pytest.param(BusWorkerLocalErrorMessage, "never leave the process", id="local"),
        pytest.param(_Undecorated, r"not a dataclass: decorate it with @dataclass", id="plain"),
    ],
)
def test_register_refuses_what_cannot_travel(cls: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        MessageRegistry().register(cls)


@pytest.mark.parametrize("name", ["", "a b", "tab\there", 42, "x" * 201, "bell\x07"])
def test_register_refuses_bad_names(name: Any) -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        MessageRegistry().register(_Registrable, name)


def test_register_refuses_a_taken_name_and_a_second_name() -> None:
    reg = MessageRegistry()
    reg.register(_Registrable, "tests.taken")
    with pytest.raises(
        ValueError, match=r"'tests.taken' is already registered for .*_Registrable"
    ):
        reg.register(Ping, "tests.taken")
    with pytest.raises(ValueError, match=r"already registered as 'tests\.taken'"):
        reg.register(_Registrable, "tests.other")


def test_lookup_and_name_of_explain_what_is_missing() -> None:
    with pytest.raises(LookupError, match=r"registered under name 'os\.system'"):
        default_registry.lookup("os.system")
    with pytest.raises(LookupError, match=r"\.\.\.'$"):
        default_registry.lookup("x" * 500)
    with pytest.raises(LookupError, match=r"decorate it with @anybus\.register_message"):
        default_registry.name_of(_Registrable)
    with pytest.raises(LookupError, match="never leaves the process"):
        default_registry.name_of(BusWorkerLocalErrorMessage)


# --- the serializers --------------------------------------------------------------------------


def test_json_serializer_is_compact_utf8() -> None:
    data = JSONSerializer().encode({"a": [1, "é"], "b": None})
    assert data == '{"a":[1,"é"],"b":null}'.encode()
    assert JSONSerializer().decode(data) == {"a": [1, "é"], "b": None}
    assert JSONSerializer().name == "json"


def test_both_serializers_satisfy_the_protocol() -> None:
    for serializer in serializers():
        assert isinstance(serializer, Serializer)
        assert serializer.decode(serializer.encode({"x": [1, 2]})) == {"x": [1, 2]}
    assert repr(MsgpackSerializer()) == "MsgpackSerializer()"


def test_msgpack_serializer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(ImportError, match=r"pip install 'anybus\[msgpack\]'"):
        MsgpackSerializer()


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
@pytest.mark.parametrize("name", ANYBUS_WIRE_TYPES)
def test_every_anybus_message_round_trips(name: str, serializer: Serializer) -> None:
    message = sample(getattr(anybus, name))
    decoded = round_trip(message, serializer)
    assert type(decoded) is type(message)
    assert decoded == message
    assert (decoded.id, decoded.name) == (message.id, message.name)


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
def test_rich_message_round_trips(serializer: Serializer) -> None:
    message = RichMessage(
        source="src",
        target="dst",
        text="héllo \x00 ✓",
        count=-(2**62),
        ratio=1.5,
        flag=True,
        blob=bytes(range(256)),
        when=datetime(
            2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        day=date(1999, 12, 31),
        color=Color.GREEN,
        level=Level.HIGH,
        mood=Mood.BUSY,
        tags=["a", "", "c"],
        pair=(7, "seven"),
        numbers=(1, 2, 3),
        point=Point(1.0, -2.5, "p"),
        box=Box((Point(0, 0), Point(1, 1)), Color.GREEN),
        points=[Point(1, 2), Point(3, 4, None)],
        by_color={Color.RED: 1, Color.GREEN: 2},
        extra={
            "bytes": b"\xff\x00",
            "when": datetime(2020, 1, 1, tzinfo=UTC),
            "naive": datetime(2020, 1, 1, 12, 30),
            "day": date(2020, 2, 29),
            "nested": {"list": [[], {}, [1, [2, [3]]]], "none": None},
            "$reserved": {"$bytes": "not bytes, just a dict"},
        },
        mode="b",
    )
    decoded = round_trip(message, serializer)
    assert decoded == message
    assert isinstance(decoded, RichMessage)
    assert type(decoded.pair) is tuple
    assert type(decoded.numbers) is tuple
    assert type(decoded.box) is Box
    assert type(decoded.box.corners) is tuple
    assert decoded.color is Color.GREEN
    assert decoded.level is Level.HIGH
    assert decoded.extra["$reserved"] == {"$bytes": "not bytes, just a dict"}


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
def test_datetimes_keep_their_instant_and_offset(serializer: Serializer) -> None:
    paris = datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    decoded = round_trip(RichMessage(source="s", when=paris), serializer)
    assert isinstance(decoded, RichMessage)
    assert decoded.when is not None
    assert decoded.when == paris
    assert decoded.when.utcoffset() == timedelta(hours=2)
    naive = datetime(2024, 7, 1, 12, 0)
    decoded = round_trip(RichMessage(source="s", when=naive), serializer)
    assert isinstance(decoded, RichMessage)
    assert decoded.when == naive
    assert decoded.when.tzinfo is None


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
def test_untyped_values_come_back_as_plain_data(serializer: Serializer) -> None:
    message = BusJobRequestMessage(
        source="s",
        job_id="j",
        payload={"tuple": (1, (2, 3)), "status": JobStatus.COMPLETED, "raw": bytearray(b"ab")},
    )
    decoded = round_trip(message, serializer)
    assert isinstance(decoded, BusJobRequestMessage)
    assert decoded.payload == {"tuple": [1, [2, 3]], "status": "completed", "raw": b"ab"}
    assert type(decoded.payload["status"]) is str


def test_init_false_fields_are_computed_again() -> None:
    decoded = round_trip(Computed(source="s", words=["a", "b"]), JSONSerializer())
    assert isinstance(decoded, Computed)
    assert decoded.count == 2


def test_json_envelope_tags_non_json_values() -> None:
    codec = WireCodec(registry=registry)
    data = codec.encode(
        RichMessage(source="s", blob=b"\x01", day=date(2000, 1, 2), extra={"$k": 1}),
        sender="b",
        seq=0,
    )
    fields = json.loads(data[data.index(b"{") :])["fields"]
    assert fields["blob"] == {"$bytes": "AQ=="}
    assert fields["day"] == {"$date": "2000-01-02"}
    assert fields["extra"] == {"$dict": {"$k": 1}}


# --- what cannot be encoded -------------------------------------------------------------------


class _Opaque:
    pass


@dataclass(kw_only=True)
class _Cyclic(BusDataMessage):
    items: list[Any]


registry.register(_Cyclic, "tests.Cyclic")


@pytest.mark.parametrize(
    ("message", "field", "match"),
    [
        pytest.param(
            BusJobRequestMessage(source="s", job_id="j", payload={"s": {1, 2}}),
            "payload['s']",
            r"BusJobRequestMessage\.payload\['s'\]: unsupported type 'set'",
            id="set",
        ),
        pytest.param(
            BusJobRequestMessage(source="s", job_id="j", payload={"o": [_Opaque()]}),
            "payload['o'][0]",
            "unsupported type '_Opaque'",
            id="object",
        ),
        pytest.param(
            BusJobRequestMessage(source="s", job_id="j", payload={1: "x"}),  # type: ignore[dict-item]
            "payload",
            "has a 'int' key; keys must be str",
            id="int-key",
        ),
        pytest.param(
            BusJobRequestMessage(source="s", job_id="j", payload={"c": Color.RED}),
            "payload['c']",
            "not annotated with Color, so the receiver could not rebuild it",
            id="enum-not-in-annotation",
        ),
        pytest.param(
            BusJobRequestMessage(source="s", job_id="j", payload={"p": Point(1, 2)}),
            "payload['p']",
            "holds a 'Point', not its annotation",
            id="dataclass-not-in-annotation",
        ),
        pytest.param(
            RichMessage(source="s", text=3),  # type: ignore[arg-type]
            "text",
            "holds a 'int' but is annotated str",
            id="wrong-type",
        ),
        pytest.param(
            RichMessage(source="s", pair=(1, "a", 2)),  # type: ignore[arg-type]
            "pair",
            r"has 3 items, annotated tuple\[int, str\]",
            id="tuple-length",
        ),
        pytest.param(
            RichMessage(source="s", point=Point(object(), 1)),  # type: ignore[arg-type]
            "point.x",
            "holds a 'object' but is annotated float",
            id="nested-field",
        ),
    ],
)
def test_encode_names_the_field_and_the_bad_type(
    message: BusMessage, field: str, match: str
) -> None:
    for serializer in serializers():
        with pytest.raises(SerializationError, match=match) as caught:
            WireCodec(serializer, registry).encode(message, sender="b", seq=1)
        assert caught.value.field == field
        assert caught.value.message_type == type(message).__qualname__


def test_encode_refuses_a_reference_cycle() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="nested over 64 levels deep"):
        WireCodec(registry=registry).encode(_Cyclic(source="s", items=loop), sender="b", seq=1)


def test_encode_refuses_unregistered_and_local_messages() -> None:
    codec = WireCodec()
    with pytest.raises(SerializationError, match="'_Registrable' is not registered"):
        codec.encode(_Registrable(source="s"), sender="b", seq=1)
    with pytest.raises(SerializationError, match="never leaves the process"):
        codec.encode(BusWorkerLocalErrorMessage(source="s", error="e"), sender="b", seq=1)


def test_encode_reports_what_the_serializer_refuses() -> None:
    message = BusJobRequestMessage(source="s", job_id="j", payload={"big": 2**64})
    with pytest.raises(SerializationError, match="the msgpack serializer failed"):
        WireCodec(MsgpackSerializer()).encode(message, sender="b", seq=1)
    assert WireCodec().encode(message, sender="b", seq=1)  # JSON has no limit


def test_encode_checks_its_arguments() -> None:
    codec = WireCodec()
    message = Ping(source="s", nonce=1)
    with pytest.raises(TypeError, match="message must be a BusMessage"):
        codec.encode(Point(1, 2), sender="b", seq=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sender must be a non-empty str, got ''"):
        codec.encode(message, sender="", seq=1)
    for seq in (-1, 2**64, True, 1.0):
        with pytest.raises(ValueError, match=r"seq must be an int in 0..2\*\*64-1"):
            codec.encode(message, sender="b", seq=seq)  # type: ignore[arg-type]


def test_serialization_error_fields_default_to_none() -> None:
    error = SerializationError("boom")
    assert (str(error), error.message_type, error.field) == ("boom", None, None)
    assert isinstance(error, anybus.AnybusError)


def test_message_fields_are_the_dataclass_fields() -> None:
    names = {f.name for f in dataclasses.fields(BusJobResponseMessage) if f.init}
    codec = WireCodec()
    message = BusJobResponseMessage(source="s", job_id="j", status=JobStatus.ERROR)
    data = codec.encode(message, sender="b", seq=5)
    assert set(json.loads(data[data.index(b"{") :])["fields"]) == names


@pytest.mark.parametrize("serializer", serializers(), ids=lambda s: s.name)
@pytest.mark.parametrize(
    "offset",
    [timedelta(microseconds=1), -timedelta(hours=3, seconds=2, microseconds=5), timedelta(0)],
    ids=["plus-1us", "minus-3h-2.000005s", "utc"],
)
def test_a_utc_offset_with_a_fraction_of_a_second_survives(
    serializer: Serializer, offset: timedelta
) -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=timezone(offset))
    typed = round_trip(RichMessage(source="s", when=when), serializer)
    untyped = round_trip(
        BusJobRequestMessage(source="s", job_id="j", payload={"w": when}), serializer
    )
    assert isinstance(typed, RichMessage)
    assert isinstance(untyped, BusJobRequestMessage)
    assert typed.when is not None
    assert typed.when.utcoffset() == offset
    assert untyped.payload is not None
    assert untyped.payload["w"].utcoffset() == offset
