"""pipecat's messages in anybus, and pipecat's wire format (``PipecatWireCodec``), without
pipecat: what pipecat 1.14 writes decodes, what anybus writes has pipecat's shape, hostile input
is only ever rejected, and every message crosses a Redis channel in both formats.

tests/test_pipecat_bridge.py runs the same exchanges against a real pipecat process.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import json
from datetime import UTC, date, datetime
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anybus
from anybus import (
    BusAddWorkerMessage,
    BusDataMessage,
    BusFlushProgressMessage,
    BusFrameMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusTTSSpeakMessage,
    BusWorkerPresenceMessage,
    BusWorkerRegistryMessage,
    FrameDirection,
    JobStatus,
    JSONSerializer,
    MessageRegistry,
    MessageRejected,
    MsgpackSerializer,
    PipecatFrame,
    PipecatWireCodec,
    SerializationError,
    WireCodec,
    WorkerRegistryEntry,
    default_registry,
    pipecat_registry,
)
from anybus import _pipecat_messages as pipecat_messages
from anybus.redis import RedisBus
from anybus.testing import RecordingSubscriber

from .pipecat_support import fields_of, pipecat_bus, same
from .redis_support import unique_name
from .serialization_support import Box, Color, Level, Mood, Point, RichMessage, sample

#: The wire messages anybus has for pipecat's pipeline and runner layers.
NEW_WIRE_TYPES = [
    getattr(pipecat_messages, name)
    for name in pipecat_messages.__all__
    if name.startswith("Bus") and name != "BusAddWorkerMessage"
]
#: Every type the pipecat codec carries.
PIPECAT_TYPES = [cls for _, cls in pipecat_registry.items()]

#: What pipecat 1.14's JSONMessageSerializer writes (captured from a pipecat process).
PIPECAT_WROTE = {
    "text frame": '{"__type__":"pipecat.bus.messages.BusFrameMessage","__data__":{"id":1,"name'
    '":"BusFrameMessage#0","source":"a","frame":{"__type__":"pipecat.frames.frames.TextFrame",'
    '"__data__":{"id":0,"name":"TextFrame#0","metadata":{},"interruptible":true,"text":"hi","i'
    'ncludes_inter_frame_spaces":false,"append_to_context":true}},"direction":{"__type__":"pip'
    'ecat.processors.frame_processor.FrameDirection","__data__":"UPSTREAM"}}}',
    "registry": '{"__type__":"pipecat.bus.messages.BusWorkerRegistryMessage","__data__":{"id":4'
    ',"name":"BusWorkerRegistryMessage#0","source":"r","runner":"r","workers":[{"__type__":"pip'
    'ecat.registry.types.WorkerRegistryEntry","__data__":{"name":"w","active":false,"bridged":'
    'false,"started_at":1.5}}]}}',
    "response": '{"__type__":"pipecat.bus.messages.BusJobResponseMessage","__data__":{"id":5,"n'
    'ame":"BusJobResponseMessage#0","source":"w","target":"c","job_id":"j","status":"completed'
    '","response":{"x":null,"y":{"__type__":"bytes","__data__":"YWI="}}}}',
    "cancel": '{"__type__":"pipecat.bus.messages.BusCancelMessage","__data__":{"id":9,"name":"B'
    'usCancelMessage#0","source":"a"}}',
}


def codec() -> PipecatWireCodec:
    return PipecatWireCodec()


def decode(text: str | bytes, on: PipecatWireCodec | None = None) -> BusMessage:
    data = text.encode() if isinstance(text, str) else text
    return (on or codec()).decode(data).message


def rejected(data: bytes | str, on: PipecatWireCodec | None = None) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        decode(data, on)
    return caught.value


def wire(message: BusMessage) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(codec().encode(message, sender="bus", seq=1))
    return parsed


# --- the messages -----------------------------------------------------------------------------


def test_the_new_messages_have_pipecats_priorities_fields_and_defaults() -> None:
    assert issubclass(BusFrameMessage, BusDataMessage)
    assert issubclass(BusTTSSpeakMessage, BusDataMessage)
    assert issubclass(BusFlushProgressMessage, BusDataMessage)
    assert issubclass(BusWorkerRegistryMessage, BusSystemMessage)
    assert issubclass(BusAddWorkerMessage, BusSystemMessage)
    assert issubclass(BusAddWorkerMessage, BusLocalMessage)
    frame = BusFrameMessage(
        source="s", frame=PipecatFrame("f.F"), direction=FrameDirection.DOWNSTREAM
    )
    assert (frame.bridge, frame.frame.data) == (None, {})
    assert BusTTSSpeakMessage(source="s", text="hi").append_to_context is True
    assert [m.value for m in FrameDirection] == [1, 2]
    entry = WorkerRegistryEntry("w")
    assert (entry.parent, entry.active, entry.bridged, entry.started_at) == (
        None,
        False,
        False,
        None,
    )


def test_the_wire_messages_are_in_the_default_registry_and_the_local_one_is_not() -> None:
    for cls in NEW_WIRE_TYPES:
        assert default_registry.lookup(cls.__qualname__) is cls
        assert getattr(anybus, cls.__qualname__) is cls
    assert BusAddWorkerMessage not in default_registry
    assert BusAddWorkerMessage not in pipecat_registry


@pytest.mark.parametrize("serializer", [JSONSerializer(), MsgpackSerializer()], ids=str)
@pytest.mark.parametrize("cls", NEW_WIRE_TYPES, ids=lambda cls: cls.__qualname__)
def test_the_new_messages_round_trip_in_anybus_format(
    cls: type[BusMessage], serializer: Any
) -> None:
    message = sample(cls)
    wire_codec = WireCodec(serializer)
    assert wire_codec.decode(wire_codec.encode(message, sender="b", seq=1)).message == message


# --- the registry -------------------------------------------------------------------------------


def test_the_pipecat_registry_names_every_message_anybus_can_send() -> None:
    names = {cls: name for name, cls in pipecat_registry.items()}
    anybus_types = [cls for name, cls in default_registry.items() if hasattr(anybus, name)]
    assert set(anybus_types) == set(names)
    for cls, name in names.items():
        if (
            cls.__name__.startswith("BusWorkerPresence")
            or cls.__name__ == "BusWorkerGoodbyeMessage"
        ):
            assert name == f"anybus:{cls.__name__}"  # no dot: pipecat resolves nothing
        else:
            assert name == f"pipecat.bus.messages.{cls.__name__}"


def test_the_probe_target_is_the_redis_buses() -> None:
    from anybus._pipecat_wire import PROBE_TARGET
    from anybus.redis._pubsub import PROBE_TARGET as REDIS_PROBE_TARGET

    assert PROBE_TARGET == REDIS_PROBE_TARGET


# --- decoding what pipecat writes ---------------------------------------------------------------


def test_a_pipecat_frame_message_decodes_with_its_frame_as_it_was() -> None:
    message = decode(PIPECAT_WROTE["text frame"])
    assert isinstance(message, BusFrameMessage)
    assert (message.id, message.name, message.source) == ("pipecat:1@a", "BusFrameMessage#0", "a")
    assert message.direction is FrameDirection.UPSTREAM
    assert message.frame.type == "pipecat.frames.frames.TextFrame"
    assert message.frame.data["text"] == "hi"
    assert message.frame.data["id"] == 0
    # Forwarded, it reaches pipecat as it came (its id too).
    assert wire(message) == json.loads(PIPECAT_WROTE["text frame"])


def test_a_registry_a_response_and_a_cancel_decode() -> None:
    registry = decode(PIPECAT_WROTE["registry"])
    assert isinstance(registry, BusWorkerRegistryMessage)
    assert registry.workers == [WorkerRegistryEntry("w", started_at=1.5)]
    response = decode(PIPECAT_WROTE["response"])
    assert isinstance(response, BusJobResponseMessage)
    assert response.status is JobStatus.COMPLETED
    assert response.response == {"x": None, "y": b"ab"}
    cancel = decode(PIPECAT_WROTE["cancel"])
    assert (type(cancel).__name__, cancel.target) == ("BusCancelMessage", None)


def test_messages_from_pipecat_get_one_sender_and_consecutive_numbers() -> None:
    on = codec()
    envelopes = [on.decode(text.encode()) for text in PIPECAT_WROTE.values()]
    assert [(e.sender, e.seq, e.key_id) for e in envelopes] == [
        ("pipecat", n, None) for n in range(1, len(envelopes) + 1)
    ]
    assert envelopes[0].type_name == "pipecat.bus.messages.BusFrameMessage"


# --- encoding as pipecat does -------------------------------------------------------------------


def test_an_encoded_message_has_pipecats_shape() -> None:
    message = BusJobRequestMessage(source="c", target="w", job_id="j", payload={"a": None})
    assert list(wire(message)) == ["__type__", "__data__"]
    data = wire(message)["__data__"]
    assert wire(message)["__type__"] == "pipecat.bus.messages.BusJobRequestMessage"
    assert list(data) == ["id", "name", "source", "target", "job_id", "payload"]  # no job_name
    assert type(data["id"]) is int
    assert 0 <= data["id"] < 2**63
    assert data["name"] == message.name
    assert data["payload"] == {"a": None}  # None is left out of fields, not of dicts


def test_typed_values_are_written_as_pipecat_writes_them() -> None:
    frame = BusFrameMessage(
        source="s",
        frame=PipecatFrame("pipecat.frames.frames.TextFrame", {"text": "hi"}),
        direction=FrameDirection.DOWNSTREAM,
    )
    data = wire(frame)["__data__"]
    assert data["frame"] == {
        "__type__": "pipecat.frames.frames.TextFrame",
        "__data__": {"text": "hi"},
    }
    assert data["direction"] == {
        "__type__": "pipecat.processors.frame_processor.FrameDirection",
        "__data__": "DOWNSTREAM",
    }
    assert "bridge" not in data
    registry = BusWorkerRegistryMessage(source="r", runner="r", workers=[WorkerRegistryEntry("w")])
    assert wire(registry)["__data__"]["workers"] == [
        {
            "__type__": "pipecat.registry.types.WorkerRegistryEntry",
            "__data__": {"name": "w", "active": False, "bridged": False},
        }
    ]
    response = BusJobResponseMessage(
        source="w",
        job_id="j",
        status=JobStatus.FAILED,
        response={"b": b"ab", "when": datetime(2024, 1, 2, tzinfo=UTC), "$k": 1},
    )
    data = wire(response)["__data__"]
    assert data["status"] == "failed"
    assert data["response"] == {
        "b": {"__type__": "bytes", "__data__": "YWI="},
        "when": {"__type__": "datetime", "__data__": "2024-01-02T00:00:00+00:00"},
        "$k": 1,
    }
    assert same(decode(codec().encode(response, sender="bus", seq=1)), response)


def test_ids_travel_as_ints_and_a_pipecat_id_goes_back_as_it_came() -> None:
    message = BusDataMessage(source="s")
    first, again = wire(message)["__data__"]["id"], wire(message)["__data__"]["id"]
    assert first == again  # a hash of the id
    assert wire(BusDataMessage(source="s"))["__data__"]["id"] != first
    from_pipecat = decode(PIPECAT_WROTE["cancel"])
    assert wire(from_pipecat)["__data__"]["id"] == 9
    assert wire(dataclasses.replace(from_pipecat, source="other"))["__data__"]["id"] != 9


@pytest.mark.parametrize("cls", PIPECAT_TYPES, ids=lambda cls: cls.__qualname__)
def test_every_message_round_trips_in_pipecat_format(cls: type[BusMessage]) -> None:
    message = sample(cls)
    envelope = codec().decode(codec().encode(message, sender="bus", seq=5))
    assert same(envelope.message, message), (fields_of(envelope.message), fields_of(message))
    assert envelope.sender == "pipecat"


def test_every_kind_of_field_round_trips_in_pipecat_format() -> None:
    registry = MessageRegistry()
    registry.register(RichMessage, "tests.Rich")
    on = PipecatWireCodec(registry, value_types={Point: "tests.Point"})
    message = RichMessage(
        source="s",
        text="héllo \x00 ✓",
        count=-(2**62),
        ratio=1.5,
        flag=True,
        blob=bytes(range(256)),
        when=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        day=date(1999, 12, 31),
        color=Color.GREEN,
        level=Level.HIGH,
        mood=Mood.BUSY,
        tags=["a", "b"],
        pair=(1, "x"),
        numbers=(1, 2, 3),
        point=Point(1.0, 2.5, "p"),
        box=Box((Point(0, 0), Point(1, 1)), Color.GREEN),
        points=[Point(3, 4)],
        by_color={Color.GREEN: 2},
        extra={"$k": [1, {"$bytes": "x"}], "raw": b"\x01", "none": None},
        mode="b",
    )
    data = json.loads(on.encode(message, sender="b", seq=1))["__data__"]
    assert data["color"] == {"__type__": "anybus:Color", "__data__": "GREEN"}
    assert (data["level"], data["mood"]) == (2, "busy")  # int and str enums: plain values
    assert data["point"] == {
        "__type__": "tests.Point",
        "__data__": {"x": 1.0, "y": 2.5, "label": "p"},
    }
    decoded = on.decode(on.encode(message, sender="b", seq=2)).message
    assert same(decoded, message), (fields_of(decoded), fields_of(message))


def test_a_field_whose_default_is_not_none_arrives_as_its_default_when_none() -> None:
    @dataclasses.dataclass(kw_only=True)
    class Odd(BusDataMessage):
        count: int | None = 3

    registry = MessageRegistry()
    registry.register(Odd, "myapp.Odd")
    on = PipecatWireCodec(registry)
    decoded = on.decode(on.encode(Odd(source="s", count=None), sender="b", seq=1)).message
    assert isinstance(decoded, Odd)
    assert decoded.count == 3


def test_what_pipecat_cannot_read_is_refused_when_encoding() -> None:
    class Unregistered(BusDataMessage):
        pass

    with pytest.raises(SerializationError, match="not registered"):
        codec().encode(Unregistered(source="s"), sender="b", seq=1)
    with pytest.raises(SerializationError, match="BusLocalMessage"):
        codec().encode(
            BusAddWorkerMessage(source="s", worker=RecordingSubscriber("w")), sender="b", seq=1
        )
    smuggled = BusJobRequestMessage(
        source="s", job_id="j", payload={"x": {"__type__": "os.system", "__data__": "ls"}}
    )
    with pytest.raises(SerializationError, match=r"payload\['x'\].*typed value"):
        codec().encode(smuggled, sender="b", seq=1)
    raw = BusFrameMessage(
        source="s",
        frame=PipecatFrame("f.F", {"audio": b"\x00"}),
        direction=FrameDirection.UPSTREAM,
    )
    with pytest.raises(SerializationError, match="a frame's data is JSON"):
        codec().encode(raw, sender="b", seq=1)
    big = PipecatWireCodec(max_size=100)
    with pytest.raises(SerializationError, match="over the max_size of 100"):
        big.encode(BusJobRequestMessage(source="s", job_id="j" * 100), sender="b", seq=1)


def test_one_codec_serves_one_bus() -> None:
    on = codec()
    on.encode(BusDataMessage(source="s"), sender="bus-1", seq=1)
    with pytest.raises(ValueError, match="give each bus a PipecatWireCodec of its own"):
        on.encode(BusDataMessage(source="s"), sender="bus-2", seq=1)


def test_the_echo_of_a_probe_is_known_as_the_buses_own() -> None:
    on = codec()
    probe = BusSystemMessage(source="bus-1", target="anybus:probe")
    envelope = on.decode(on.encode(probe, sender="bus-1", seq=7))
    assert (envelope.sender, envelope.seq) == ("bus-1", 7)
    # Another bus's probe is from the pipecat side.
    other = codec().encode(BusSystemMessage(source="x", target="anybus:probe"), sender="x", seq=1)
    assert on.decode(other).sender == "pipecat"


def test_the_codec_has_a_repr_and_checks_its_arguments() -> None:
    assert (
        repr(codec())
        == f"<PipecatWireCodec [json, max_size=1048576, unsigned, {len(pipecat_registry)} types]>"
    )
    with pytest.raises(ValueError, match="max_size"):
        PipecatWireCodec(max_size=10)
    with pytest.raises(TypeError, match="enums or dataclasses"):
        PipecatWireCodec(value_types={int: "builtins.int"})
    with pytest.raises(ValueError, match="must be a name"):
        PipecatWireCodec(value_types={FrameDirection: ""})


@dataclasses.dataclass
class Spot:
    """A value type of an application's own."""

    x: int


@dataclasses.dataclass(kw_only=True)
class Moved(BusDataMessage):
    """An application's message holding one."""

    to: Spot
    where: list[Spot] = dataclasses.field(default_factory=list)


def test_value_types_name_a_users_enums_and_dataclasses() -> None:
    registry = MessageRegistry()
    registry.register(Moved, "myapp.messages.Moved")
    on = PipecatWireCodec(registry, value_types={Spot: "myapp.types.Spot"})
    data = json.loads(on.encode(Moved(source="s", to=Spot(1)), sender="b", seq=1))["__data__"]
    assert data["to"] == {"__type__": "myapp.types.Spot", "__data__": {"x": 1}}
    # Without a name, the class travels as anybus:<qualified name>, which pipecat drops.
    plain = PipecatWireCodec(registry)
    data = json.loads(plain.encode(Moved(source="s", to=Spot(1)), sender="b", seq=1))["__data__"]
    assert data["to"]["__type__"].startswith("anybus:")
    text = pipecat_json(
        "myapp.messages.Moved", to={"__type__": "myapp.types.Spot", "__data__": {"x": 2}}
    )
    moved = decode(text, on)
    assert isinstance(moved, Moved)
    assert moved.to == Spot(2)
    assert rejected(text, plain).reason == "unknown-type"  # the name is not Spot's there


# --- hostile input ------------------------------------------------------------------------------


def pipecat_json(type_name: str = "pipecat.bus.messages.BusDataMessage", **data: Any) -> bytes:
    """A pipecat message's JSON; ``data`` defaults to a valid BusDataMessage's."""
    fields = {"id": 1, "name": "x", "source": "s", **data}
    return json.dumps(
        {"__type__": type_name, "__data__": {k: v for k, v in fields.items() if v is not ...}}
    ).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"__type__": "x"}', "malformed"),
        (b'{"__type__": 1, "__data__": {}}', "malformed"),
        (b'{"__type__": "pipecat.bus.messages.BusDataMessage", "__data__": []}', "malformed"),
        (pipecat_json()[:-1] + b', "x": 1}', "malformed"),
        (b"[" * 100_000, "malformed"),
        (pipecat_json("os.system"), "unknown-type"),
        (pipecat_json("BusDataMessage"), "unknown-type"),  # anybus's own name, not pipecat's
        (pipecat_json(id=...), "invalid-fields"),
        (pipecat_json(id="1"), "invalid-fields"),
        (pipecat_json(id=True), "invalid-fields"),
        (pipecat_json(name=...), "invalid-fields"),
        (pipecat_json(source=...), "invalid-fields"),
        (pipecat_json(source=5), "invalid-fields"),
        (pipecat_json(evil=1), "invalid-fields"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    assert rejected(data).reason == reason


def job_request(payload: str) -> bytes:
    return (
        '{"__type__":"pipecat.bus.messages.BusJobRequestMessage","__data__":{"id":1,"name":"x",'
        f'"source":"s","job_id":"j","payload":{payload}}}}}'
    ).encode()


def frame_message(frame: str, direction: str = '"UPSTREAM"') -> bytes:
    return (
        '{"__type__":"pipecat.bus.messages.BusFrameMessage","__data__":{"id":1,"name":"x",'
        f'"source":"s","frame":{frame},"direction":{{"__type__":'
        f'"pipecat.processors.frame_processor.FrameDirection","__data__":{direction}}}}}}}'
    ).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (job_request('{"x": {"__type__": "os.system", "__data__": "ls"}}'), "unknown-type"),
        (job_request('{"x": {"__type__": "bytes", "__data__": 5}}'), "invalid-fields"),
        (job_request('{"x": {"__type__": "bytes", "__data__": "@@"}}'), "invalid-fields"),
        (job_request('{"x": {"__type__": "bytes", "__data__": "", "y": 1}}'), "invalid-fields"),
        (job_request('{"x": {"__type__": 3, "__data__": ""}}'), "invalid-fields"),
        (job_request("[1]"), "invalid-fields"),
        (job_request('{"a": ' * 70 + "1" + "}" * 70), "invalid-fields"),
        (frame_message('{"text": "hi"}'), "invalid-fields"),  # a frame is a typed value
        (frame_message('{"__type__": "f.F", "__data__": 1}'), "invalid-fields"),
        (frame_message('{"__type__": "f.F", "__data__": {}}', '"SIDEWAYS"'), "invalid-fields"),
        (frame_message('{"__type__": "f.F", "__data__": {}}', "1"), "invalid-fields"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    assert rejected(data).reason == reason


def test_a_wrongly_named_typed_value_is_an_unknown_type() -> None:
    data = frame_message('{"__type__": "f.F", "__data__": {}}').replace(
        b"pipecat.processors.frame_processor.FrameDirection", b"os.FrameDirection"
    )
    assert rejected(data).reason == "unknown-type"


def test_oversized_input_is_rejected_before_parsing() -> None:
    small = PipecatWireCodec(max_size=64)
    assert rejected(b"{" * 65, small).reason == "oversized"


def test_nothing_named_in_a_payload_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    imports: list[str] = []
    real_import = builtins.__import__

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        imports.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", spy)
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imports.append(name))
    for text in (
        pipecat_json("anybus_never.Imported"),
        job_request('{"x": {"__type__": "anybus_never.Imported", "__data__": {}}}'),
        frame_message('{"__type__": "anybus_never.Frame", "__data__": {}}'),
    ):
        outcome(text)  # rejected, or (the frame) kept as a name
    assert not [name for name in imports if "anybus_never" in name]


OUTCOMES = {"ok", *MessageRejected.REASONS}


def outcome(data: bytes) -> str:
    """``"ok"`` or the rejection's reason; any other exception fails the test."""
    try:
        codec().decode(data)
    except MessageRejected as exc:
        return exc.reason
    return "ok"


FUZZ = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [
    *(text.encode() for text in PIPECAT_WROTE.values()),
    *(codec().encode(sample(cls), sender="b", seq=1) for cls in PIPECAT_TYPES),
]


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_payloads_decode_or_are_rejected(seed: bytes, data: st.DataObject) -> None:
    mutated = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    assert outcome(bytes(mutated)) in OUTCOMES


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda kids: (
            st.lists(kids, max_size=3)
            | st.dictionaries(
                st.sampled_from(["__type__", "__data__", "$bytes", "k", "id"]), kids, max_size=3
            )
        ),
        max_leaves=12,
    )
)
def test_random_json_in_fields_decodes_or_is_rejected(value: Any) -> None:
    for field in ("payload", "frame", "workers", "status"):
        for type_name in (
            "BusJobRequestMessage",
            "BusFrameMessage",
            "BusWorkerRegistryMessage",
            "BusJobResponseMessage",
        ):
            text = json.dumps(
                {
                    "__type__": f"pipecat.bus.messages.{type_name}",
                    "__data__": {
                        "id": 1,
                        "name": "x",
                        "source": "s",
                        "job_id": "j",
                        "runner": "r",
                        field: value,
                    },
                }
            )
            assert outcome(text.encode()) in OUTCOMES


# --- over Redis ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_message_crosses_a_redis_channel_in_pipecats_format(redis_url: str) -> None:
    channel = unique_name()
    recorder = RecordingSubscriber("r", accepts=lambda m: m.source == "sender")
    sent = [_from(cls) for cls in PIPECAT_TYPES]
    async with (
        pipecat_bus(redis_url, channel) as receiver,
        pipecat_bus(redis_url, channel) as sender,
    ):
        await receiver.subscribe(recorder)
        for message in sent:
            await sender.send(message)
        with anyio.fail_after(15):
            await recorder.wait_for(lambda seen: len(seen) == len(sent))
        statistics = receiver.transport_statistics()
    # System messages overtake data messages: match them by name (which crosses).
    received = {message.name: message for message in recorder.messages}
    assert all(same(received[message.name], message) for message in sent)
    assert (statistics.gaps, statistics.missed, statistics.duplicates) == (0, 0, 0)
    assert statistics.rejected == {}


def _from(cls: type[BusMessage]) -> BusMessage:
    message = sample(cls)
    message.source = "sender"
    return message


@pytest.mark.anyio
async def test_the_new_messages_cross_a_redis_channel_in_anybus_format(redis_url: str) -> None:
    channel = unique_name()
    recorder = RecordingSubscriber("r", accepts=lambda m: m.source == "sender")
    sent = [_from(cls) for cls in NEW_WIRE_TYPES]
    async with (
        RedisBus(redis_url, channel=channel) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(recorder)
        for message in sent:
            await sender.send(message)
        with anyio.fail_after(15):
            await recorder.wait_for(lambda seen: len(seen) == len(sent))
    assert sorted(recorder.messages, key=sent.index) == sent  # the system message overtakes


@pytest.mark.anyio
async def test_bad_input_on_a_pipecat_channel_is_counted_and_dropped(redis_url: str) -> None:
    from anybus.redis._client import RedisClient, RedisSettings

    channel = unique_name()
    recorder = RecordingSubscriber("r", accepts=lambda m: m.source == "t")
    async with (
        pipecat_bus(redis_url, channel) as receiver,
        pipecat_bus(redis_url, channel) as sender,
    ):
        await receiver.subscribe(recorder)
        client = await RedisClient.create(
            RedisSettings.from_url(redis_url), name="anybus-test-raw"
        )
        try:
            for payload in (
                b"garbage",
                b'{"__type__": "os.system", "__data__": {}}',
                job_request('{"x": {"__type__": "os.system", "__data__": 1}}'),
            ):
                await client.publish(channel, payload)
        finally:
            await client.close()
        await sender.send(after := BusDataMessage(source="t"))
        with anyio.fail_after(15):
            await recorder.wait_for(lambda seen: len(seen) == 1)
        statistics = receiver.transport_statistics()
    assert same(recorder.messages[0], after)
    assert statistics.rejected == {"malformed": 1, "unknown-type": 2}
    assert (statistics.gaps, statistics.duplicates) == (0, 0)


def test_presence_messages_travel_under_anybus_names() -> None:
    message = BusWorkerPresenceMessage(source="w", worker="w", incarnation="i")
    assert wire(message)["__type__"] == "anybus:BusWorkerPresenceMessage"
    assert same(decode(codec().encode(message, sender="b", seq=1)), message)
