"""Type adapters, and the codec on msgspec: the same bytes as before, and what msgspec adds."""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import attrs
import msgspec
import pydantic
import pytest

import anybus
from anybus import (
    BusDataMessage,
    BusJobRequestMessage,
    BusMessage,
    JSONSerializer,
    MessageRegistry,
    MsgpackSerializer,
    SerializationError,
    Serializer,
    TypeAdapter,
    WireCodec,
    default_registry,
)
from anybus._fields import decode_fields, encode_fields

from .serialization_support import Box, Color, Level, Mood, Point, RichMessage, registry, rejected

ROOT = Path(__file__).resolve().parent.parent


class Tool(pydantic.BaseModel):
    """A pydantic model, carried through an adapter."""

    name: str
    parameters: dict[str, Any] = {}
    limit: int = 3


@attrs.define
class Span:
    """An attrs class, carried through an adapter."""

    start: float
    end: float


class Opaque:
    """A class with no adapter."""


@dataclass
class Node:
    """A recursive dataclass."""

    value: int
    children: list[Node] = field(default_factory=list)


adapted = registry.copy()
adapted.register_adapter(
    Tool, to_plain=lambda tool: tool.model_dump(mode="json"), from_plain=Tool.model_validate
)
adapted.register_adapter(
    Span,
    to_plain=attrs.asdict,
    from_plain=lambda plain: Span(**plain),
    plain_type=dict[str, float],
)


@adapted.register(name="tests.Adapted")
@dataclass(kw_only=True)
class AdaptedMessage(BusDataMessage):
    """Fields of adapted types."""

    tools: list[Tool] = field(default_factory=list)
    span: Span | None = None
    by_name: dict[str, Span] = field(default_factory=dict)


@adapted.register(name="tests.Unadapted")
@dataclass(kw_only=True)
class UnadaptedMessage(BusDataMessage):
    """A field of a type that has no adapter."""

    thing: Opaque | None = None


@adapted.register(name="tests.More")
@dataclass(kw_only=True)
class MoreMessage(BusDataMessage):
    """What msgspec brings: UUID, Decimal, unions it cannot decode alone, recursion."""

    uid: uuid.UUID | None = None
    money: Decimal = Decimal(0)
    either: Point | Box | None = None
    word: str | Mood = ""
    tree: Node | None = None
    points: dict[str, Point] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    choice: Literal[1, "a", None] = None
    floats: list[float] = field(default_factory=list)


def codecs(reg: MessageRegistry = adapted) -> list[WireCodec]:
    return [WireCodec(registry=reg), WireCodec(MsgpackSerializer(), reg)]


def round_trip(message: BusMessage, codec: WireCodec) -> BusMessage:
    return codec.decode(codec.encode(message, sender="b", seq=1)).message


def envelope(type_name: str, fields: dict[str, Any]) -> bytes:
    body = {"type": type_name, "sender": "b", "seq": 1, "id": "i", "name": "n"}
    return (
        b"AB\x01\x04json\x00" + json.dumps({**body, "fields": {"source": "s", **fields}}).encode()
    )


# --- adapters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", codecs(), ids=["json", "msgpack"])
def test_pydantic_and_attrs_values_round_trip(codec: WireCodec) -> None:
    message = AdaptedMessage(
        source="s",
        tools=[Tool(name="search", parameters={"q": "x", "n": [1, 2]})],
        span=Span(1, 2.5),
        by_name={"a": Span(0, 1)},
    )
    decoded = round_trip(message, codec)
    assert decoded == message
    assert isinstance(decoded, AdaptedMessage)
    assert type(decoded.tools[0]) is Tool
    assert type(decoded.span) is Span


def test_the_plain_form_is_on_the_wire() -> None:
    data = WireCodec(registry=adapted).encode(
        AdaptedMessage(source="s", tools=[Tool(name="t")], span=Span(1, 2)), sender="b", seq=1
    )
    fields = json.loads(data[data.index(b"{") :])["fields"]
    assert fields["tools"] == [{"name": "t", "parameters": {}, "limit": 3}]
    assert fields["span"] == {"start": 1.0, "end": 2.0}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (
            {"tools": [{"name": 3}]},
            "AdaptedMessage.tools[0]: the Tool adapter's from_plain raised",
        ),
        ({"tools": [{"limit": 1}]}, "Field required"),
        ({"span": {"start": "a", "end": 1}}, "AdaptedMessage.span['start']: expected float"),
        ({"span": {"start": 1}}, "AdaptedMessage.span: the Span adapter's from_plain raised"),
        ({"span": [1, 2]}, "AdaptedMessage.span: expected a dict, got list"),
        ({"by_name": {"k": {"start": 1, "end": None}}}, "by_name['k']['end']: expected float"),
    ],
)
def test_adapted_fields_are_validated_on_decode(fields: dict[str, Any], match: str) -> None:
    error = rejected(WireCodec(registry=adapted), envelope("tests.Adapted", fields))
    assert error.reason == "invalid-fields"
    assert match in error.detail


def test_from_plain_must_return_the_type() -> None:
    reg = MessageRegistry()
    reg.register_adapter(Span, to_plain=attrs.asdict, from_plain=dict)
    reg.register(AdaptedMessage, "tests.Adapted")
    codec = WireCodec(registry=reg)
    data = codec.encode(AdaptedMessage(source="s", span=Span(1, 2)), sender="b", seq=1)
    error = rejected(codec, data)
    assert "the Span adapter's from_plain returned a 'dict', not a 'Span'" in error.detail


def test_an_unadapted_type_is_refused_at_send_time_with_the_fix() -> None:
    with pytest.raises(SerializationError) as caught:
        WireCodec(registry=adapted).encode(
            UnadaptedMessage(source="s", thing=Opaque()), sender="b", seq=1
        )
    assert caught.value.field == "thing"
    assert str(caught.value) == (
        "cannot encode UnadaptedMessage.thing: is annotated Opaque, which the codec cannot "
        "carry; register an adapter on both sides: anybus.register_adapter(Opaque, "
        "to_plain=..., from_plain=...)"
    )
    # None fits the annotation; the receiver refuses a value it could not build.
    codec = WireCodec(registry=adapted)
    empty = UnadaptedMessage(source="s")
    assert round_trip(empty, codec) == empty
    error = rejected(codec, envelope("tests.Unadapted", {"thing": {"x": 1}}))
    assert "expected Opaque, which has no adapter on this side, got dict" in error.detail


def test_an_adapted_value_the_annotation_does_not_name_is_refused() -> None:
    message = BusJobRequestMessage(source="s", job_id="j", payload={"tool": Tool(name="t")})
    with pytest.raises(SerializationError, match=r"payload\['tool'\]: unsupported type 'Tool'"):
        WireCodec(registry=adapted).encode(message, sender="b", seq=1)


def test_register_adapter_checks_its_arguments() -> None:
    reg = MessageRegistry()
    with pytest.raises(TypeError, match="cls must be a class, got 'Span'"):
        reg.register_adapter("Span", to_plain=str, from_plain=str)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="from_plain must be callable, got 1"):
        reg.register_adapter(Span, to_plain=str, from_plain=1)  # type: ignore[arg-type]
    for native in (int, str, bytes, datetime, date, dict, list, uuid.UUID, Decimal):
        with pytest.raises(ValueError, match="travels without an adapter"):
            reg.register_adapter(native, to_plain=str, from_plain=str)
    with pytest.raises(ValueError, match="plain_type must be the plain form of 'Span'"):
        reg.register_adapter(Span, to_plain=str, from_plain=str, plain_type=Span)
    reg.register_adapter(Span, to_plain=str, from_plain=str)
    reg.register_adapter(Span, to_plain=str, from_plain=str)  # the same again: nothing happens
    with pytest.raises(ValueError, match="'Span' already has an adapter"):
        reg.register_adapter(Span, to_plain=repr, from_plain=str)
    assert reg.adapters[Span] == TypeAdapter(Span, str, str)
    assert list(reg.adapters) == [Span]
    assert repr(reg) == "<MessageRegistry [0 types, 1 adapters]>"


def test_adapters_belong_to_a_registry_and_copies_keep_them() -> None:
    assert Span not in default_registry.adapters
    clone = adapted.copy()
    assert Span in clone.adapters
    clone.register_adapter(Opaque, to_plain=lambda _: {}, from_plain=lambda _: Opaque())
    assert Opaque not in adapted.adapters
    encoded = WireCodec(registry=clone).encode(
        UnadaptedMessage(source="s", thing=Opaque()), sender="b", seq=1
    )
    assert b'"thing":{}' in encoded


def test_the_documented_adapters_work() -> None:
    page = (ROOT / "docs" / "serialization.md").read_text()
    section = page[page.index("## Type adapters") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    reg = default_registry.copy()  # the page registers in the default registry; a copy here
    namespace: dict[str, Any] = {"registry": reg, "__name__": __name__}
    source = code.group(1).replace("anybus.register_adapter(", "registry.register_adapter(")
    source = source.replace("@register_message\n", "@registry.register\n")
    exec(compile(source, "serialization.md", "exec", dont_inherit=True), namespace)
    quote = namespace["Quote"](
        source="s",
        tools=[namespace["Tool"](name="search", parameters={"q": "x"})],
        price=namespace["Money"](Decimal("9.99"), "EUR"),
    )
    for codec in codecs(reg):
        assert round_trip(quote, codec) == quote


# --- the same wire as before msgspec ------------------------------------------------------------


def fixed_messages() -> list[BusMessage]:
    rich = RichMessage(
        source="src",
        target="dst",
        text="héllo ✓",
        count=-7,
        ratio=1.5,
        flag=True,
        blob=b"\x00\xff",
        when=datetime(
            2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        day=date(1999, 12, 31),
        color=Color.GREEN,
        level=Level.HIGH,
        mood=Mood.BUSY,
        tags=["a", ""],
        pair=(7, "seven"),
        numbers=(1, 2),
        point=Point(1.0, -2.5, "p"),
        box=Box((Point(0, 0), Point(1, 1)), Color.GREEN),
        points=[Point(3, 4)],
        by_color={Color.RED: 1},
        extra={"bytes": b"\x01", "when": datetime(2020, 1, 1), "$k": [1, None], "n": {"x": 1.25}},
        mode="b",
    )
    job = BusJobRequestMessage(
        source="caller",
        job_id="j-1",
        job_name="transcribe",
        payload={"file": "a.wav", "opts": {"beam": 5}},
    )
    for message, message_id in ((rich, "rich-1"), (job, "job-1")):
        object.__setattr__(message, "id", message_id)
        object.__setattr__(message, "name", f"{type(message).__name__}#1")
    return [rich, job]


#: What the codec wrote before msgspec (anybus at 3ebf16b), for ``fixed_messages()``.
BEFORE_MSGSPEC = [
    b'AB\x01\x04json\x00{"type":"tests.Rich","sender":"bus-1","seq":5,"id":"rich-1","name":"RichMessage#1","fields":{"source":"src","target":"dst","text":"h\xc3\xa9llo \xe2\x9c\x93","count":-7,"ratio":1.5,"flag":true,"blob":{"$bytes":"AP8="},"when":{"$datetime":"2024-05-06T07:08:09.123456+05:30"},"day":{"$date":"1999-12-31"},"color":"green","level":2,"mood":"busy","tags":["a",""],"pair":[7,"seven"],"numbers":[1,2],"point":{"x":1.0,"y":-2.5,"label":"p"},"box":{"corners":[{"x":0,"y":0,"label":null},{"x":1,"y":1,"label":null}],"color":"green"},"points":[{"x":3,"y":4,"label":null}],"by_color":{"red":1},"extra":{"$dict":{"bytes":{"$bytes":"AQ=="},"when":{"$datetime":"2020-01-01T00:00:00"},"$k":[1,null],"n":{"x":1.25}}},"mode":"b"}}',  # noqa: E501
    b'AB\x01\x04json\x00{"type":"BusJobRequestMessage","sender":"bus-1","seq":5,"id":"job-1","name":"BusJobRequestMessage#1","fields":{"source":"caller","target":null,"job_id":"j-1","job_name":"transcribe","payload":{"file":"a.wav","opts":{"beam":5}}}}',
    b"AB\x01\x07msgpack\x00\x86\xa4type\xaatests.Rich\xa6sender\xa5bus-1\xa3seq\x05\xa2id\xa6rich-1\xa4name\xadRichMessage#1\xa6fields\xde\x00\x15\xa6source\xa3src\xa6target\xa3dst\xa4text\xaah\xc3\xa9llo \xe2\x9c\x93\xa5count\xf9\xa5ratio\xcb?\xf8\x00\x00\x00\x00\x00\x00\xa4flag\xc3\xa4blob\xc4\x02\x00\xff\xa4when\x81\xa9$datetime\xd9 2024-05-06T07:08:09.123456+05:30\xa3day\x81\xa5$date\xaa1999-12-31\xa5color\xa5green\xa5level\x02\xa4mood\xa4busy\xa4tags\x92\xa1a\xa0\xa4pair\x92\x07\xa5seven\xa7numbers\x92\x01\x02\xa5point\x83\xa1x\xcb?\xf0\x00\x00\x00\x00\x00\x00\xa1y\xcb\xc0\x04\x00\x00\x00\x00\x00\x00\xa5label\xa1p\xa3box\x82\xa7corners\x92\x83\xa1x\x00\xa1y\x00\xa5label\xc0\x83\xa1x\x01\xa1y\x01\xa5label\xc0\xa5color\xa5green\xa6points\x91\x83\xa1x\x03\xa1y\x04\xa5label\xc0\xa8by_color\x81\xa3red\x01\xa5extra\x81\xa5$dict\x84\xa5bytes\xc4\x01\x01\xa4when\x81\xa9$datetime\xb32020-01-01T00:00:00\xa2$k\x92\x01\xc0\xa1n\x81\xa1x\xcb?\xf4\x00\x00\x00\x00\x00\x00\xa4mode\xa1b",  # noqa: E501
    b"AB\x01\x07msgpack\x00\x86\xa4type\xb4BusJobRequestMessage\xa6sender\xa5bus-1\xa3seq\x05\xa2id\xa5job-1\xa4name\xb6BusJobRequestMessage#1\xa6fields\x85\xa6source\xa6caller\xa6target\xc0\xa6job_id\xa3j-1\xa8job_name\xaatranscribe\xa7payload\x82\xa4file\xa5a.wav\xa4opts\x81\xa4beam\x05",
]


def test_the_bytes_are_the_ones_written_before_msgspec() -> None:
    encoded = [
        codec.encode(message, sender="bus-1", seq=5)
        for codec in (WireCodec(registry=registry), WireCodec(MsgpackSerializer(), registry))
        for message in fixed_messages()
    ]
    assert encoded == BEFORE_MSGSPEC
    for data, message in zip(BEFORE_MSGSPEC, fixed_messages() * 2, strict=True):
        codec = WireCodec(MsgpackSerializer() if b"msgpack" in data[:12] else None, registry)
        assert codec.decode(data).message == message


def test_the_one_call_path_and_the_serializer_path_agree() -> None:
    class Plain:  # the same serializer, but one the codec does not know: the slow path
        name = "json"

        def encode(self, obj: dict[str, Any]) -> bytes:
            return JSONSerializer().encode(obj)

        def decode(self, data: bytes) -> Any:
            return JSONSerializer().decode(data)

    slow, fast = WireCodec(Plain(), registry), WireCodec(registry=registry)
    for message in fixed_messages():
        data = fast.encode(message, sender="b", seq=1)
        assert slow.encode(message, sender="b", seq=1) == data
        assert slow.decode(data) == fast.decode(data)
    assert encode_fields(fixed_messages()[0])["pair"] == [7, "seven"]  # lists, not tuples


# --- what msgspec brings, and where the codec stays strict --------------------------------------


@pytest.mark.parametrize("codec", codecs(), ids=["json", "msgpack"])
def test_uuid_decimal_unions_and_recursive_dataclasses_round_trip(codec: WireCodec) -> None:
    tree = Node(1, [Node(2, [Node(3)]), Node(4)])
    for message in [
        MoreMessage(source="s", uid=uuid.UUID(int=5), money=Decimal("1.25"), tree=tree),
        MoreMessage(source="s", either=Box((Point(1, 2), Point(3, 4))), word=Mood.BUSY),
        MoreMessage(source="s", either=Point(1, 2), word="plain", choice="a"),
        MoreMessage(source="s", points={"p": Point(0, 1)}, counts={"$odd": 1}, choice=1),
    ]:
        decoded = round_trip(message, codec)
        assert decoded == message
        assert isinstance(decoded, MoreMessage)
        assert type(decoded.word) is type(message.word)  # a str stays a str, a Mood a Mood


@pytest.mark.parametrize(
    "serializer", [JSONSerializer(), MsgpackSerializer()], ids=["json", "msgpack"]
)
def test_infinities_and_nan_travel(serializer: Serializer) -> None:
    codec = WireCodec(serializer, adapted)
    message = MoreMessage(source="s", floats=[math.inf, -math.inf, 1.0])
    data = codec.encode(message, sender="b", seq=1)
    assert round_trip(message, codec) == message
    if serializer.name == "json":
        assert b"[Infinity,-Infinity,1.0]" in data  # as Python's json writes them
    nan = round_trip(MoreMessage(source="s", floats=[math.nan]), codec)
    assert isinstance(nan, MoreMessage)
    assert math.isnan(nan.floats[0])
    payload = round_trip(
        BusJobRequestMessage(source="s", job_id="j", payload={"x": -math.inf}), codec
    )
    assert isinstance(payload, BusJobRequestMessage)
    assert payload.payload == {"x": -math.inf}


def test_the_json_serializer_writes_infinity_not_null() -> None:
    serializer = JSONSerializer()
    assert serializer.encode({"a": math.inf, "b": None}) == b'{"a":Infinity,"b":null}'
    assert serializer.decode(b'{"a":-Infinity}') == {"a": -math.inf}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"uid": "nope"}, "MoreMessage.uid: expected UUID, got str"),
        ({"money": "abc"}, "MoreMessage.money: expected Decimal, got str"),
        ({"either": 3}, "MoreMessage.either: int does not fit"),
        ({"word": 3}, "MoreMessage.word: int does not fit str | "),
        (
            {"tree": {"value": 1, "children": [{"value": "x"}]}},
            "tree.children[0].value: expected int",
        ),
        (
            {"points": {"k": {"x": "a", "y": 1}}},
            "MoreMessage.points['k'].x: expected float, got str",
        ),
        ({"counts": {"a": "x"}}, "MoreMessage.counts['a']: expected int, got str"),
        ({"counts": {"$a": 1}}, "MoreMessage.counts: has a reserved key '$a'"),
        ({"choice": 2}, "MoreMessage.choice: 2 is not one of Literal[1, 'a', None]"),
        ({"floats": [1, "a"]}, "MoreMessage.floats[1]: expected float, got str"),
    ],
)
def test_more_invalid_fields(fields: dict[str, Any], match: str) -> None:
    error = rejected(WireCodec(registry=adapted), envelope("tests.More", fields))
    assert error.reason == "invalid-fields"
    assert match in error.detail


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (
            MoreMessage(source="s", counts={"a": True}),
            r"counts\['a'\]: holds a 'bool' but is annotated int",
        ),
        (MoreMessage(source="s", choice=True), r"choice: holds a 'bool' but is annotated Literal"),  # type: ignore[arg-type]
        (
            MoreMessage(source="s", points={"p": Box((Point(0, 0), Point(0, 0)))}),  # type: ignore[dict-item]
            r"holds a 'Box' but",
        ),
        (RichMessage(source="s", color="red"), r"color: holds a 'str' but is annotated Color"),  # type: ignore[arg-type]
        (RichMessage(source="s", count=True), r"count: holds a 'bool' but is annotated int"),
    ],
)
def test_encode_is_strict(message: BusMessage, match: str) -> None:
    for codec in codecs():
        with pytest.raises(SerializationError, match=match):
            codec.encode(message, sender="b", seq=1)


def test_a_deep_recursive_value_is_refused_on_both_sides() -> None:
    deep = Node(0)
    for value in range(80):
        deep = Node(value, [deep])
    with pytest.raises(SerializationError, match="nested over 64 levels deep"):
        WireCodec(registry=adapted).encode(MoreMessage(source="s", tree=deep), sender="b", seq=1)
    nested: dict[str, Any] = {"value": 0}
    for value in range(80):
        nested = {"value": value, "children": [nested]}
    error = rejected(WireCodec(registry=adapted), envelope("tests.More", {"tree": nested}))
    assert (error.reason, "nested over 64 levels deep" in error.detail) == ("invalid-fields", True)


def test_a_msgpack_timestamp_is_not_a_datetime_field() -> None:
    body = {"type": "tests.Rich", "sender": "b", "seq": 1, "id": "i", "name": "n"}
    fields = {"source": "s", "when": datetime(2024, 1, 1, tzinfo=UTC)}
    # msgspec writes a datetime as a msgpack timestamp (an extension type), anybus never does
    data = b"AB\x01\x07msgpack\x00" + msgspec.msgpack.encode({**body, "fields": fields})
    error = rejected(WireCodec(MsgpackSerializer(), registry), data)
    assert error.reason == "invalid-fields"
    assert "RichMessage.when: expected datetime" in error.detail


def test_decode_fields_leaves_its_input_alone() -> None:
    fields = {
        "source": "s",
        "job_id": "j",
        "payload": {"when": {"$datetime": "2020-01-01T00:00:00"}},
    }
    message = decode_fields(BusJobRequestMessage, fields, message_id="i", name="n")
    assert message.payload == {"when": datetime(2020, 1, 1)}
    assert fields["payload"] == {"when": {"$datetime": "2020-01-01T00:00:00"}}
    assert (message.id, message.name) == ("i", "n")


def test_the_public_names() -> None:
    assert anybus.register_adapter is not None
    assert anybus.TypeAdapter is TypeAdapter
