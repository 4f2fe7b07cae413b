"""Message types and helpers shared by the serialization tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any, Literal

import pytest

from anybus import (
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
    FrameDirection,
    JobStatus,
    JSONSerializer,
    MessageRegistry,
    MessageRejected,
    MsgpackSerializer,
    PipecatFrame,
    Serializer,
    WireCodec,
    WorkerRegistryEntry,
    default_registry,
)


class Color(Enum):
    """A plain enum: only ever rebuilt from a field annotation."""

    RED = "red"
    GREEN = "green"


class Level(IntEnum):
    """An int enum."""

    LOW = 1
    HIGH = 2


class Mood(StrEnum):
    """A str enum."""

    CALM = "calm"
    BUSY = "busy"


@dataclass
class Point:
    """A nested dataclass."""

    x: float
    y: float
    label: str | None = None


@dataclass(frozen=True)
class Box:
    """A nested dataclass holding nested dataclasses."""

    corners: tuple[Point, Point]
    color: Color = Color.RED


#: A registry for the tests: anybus's own types plus the ones below.
registry = default_registry.copy()


@registry.register(name="tests.Rich")
@dataclass(kw_only=True)
class RichMessage(BusDataMessage):
    """A message using every supported kind of field."""

    text: str = ""
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    blob: bytes = b""
    when: datetime | None = None
    day: date | None = None
    color: Color = Color.RED
    level: Level | None = None
    mood: Mood = Mood.CALM
    tags: list[str] = field(default_factory=list)
    pair: tuple[int, str] = (0, "")
    numbers: tuple[int, ...] = ()
    point: Point | None = None
    box: Box | None = None
    points: list[Point] = field(default_factory=list)
    by_color: dict[Color, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    mode: Literal["a", "b"] = "a"


@registry.register
@dataclass(kw_only=True)
class Ping(BusSystemMessage):
    """A small system message with a required field."""

    nonce: int


@registry.register
@dataclass(kw_only=True)
class Validated(BusDataMessage):
    """A message whose constructor checks its field."""

    positive: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.positive <= 0:
            raise ValueError(f"positive must be positive, got {self.positive!r}")


@registry.register
@dataclass(kw_only=True)
class Computed(BusDataMessage):
    """A message with an ``init=False`` field, computed again on the receiving side."""

    words: list[str]
    count: int = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.count = len(self.words)


def serializers() -> list[Serializer]:
    """Every serializer, for parametrizing."""
    return [JSONSerializer(), MsgpackSerializer()]


def sample(cls: type[BusMessage]) -> BusMessage:
    """An instance of an anybus message class with every field set to something."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name == "status":
            values[f.name] = JobStatus.FAILED
        elif f.name in ("active", "bridged"):
            values[f.name] = True
        elif f.type in (bool, "bool"):
            values[f.name] = False  # not the default: it must travel
        elif f.name == "frame":
            values[f.name] = PipecatFrame(
                "pipecat.frames.frames.OutputAudioRawFrame",
                {
                    "id": 12,
                    "audio": {"__type__": "bytes", "__data__": "AAE="},
                    "sample_rate": 16000,
                    "metadata": {"$odd": [1, None, {"$bytes": "not a tag here"}]},
                },
            )
        elif f.name == "direction":
            values[f.name] = FrameDirection.UPSTREAM
        elif f.name == "workers":
            values[f.name] = [
                WorkerRegistryEntry("w1", parent="p", active=True, bridged=True, started_at=1.5),
                WorkerRegistryEntry("w2"),
            ]
        elif f.name == "started_at":
            values[f.name] = 1712345678.25
        elif "dict" in str(f.type):
            values[f.name] = {"k": [1, 2.5, "three", None, True], "nested": {"a": {}}}
        elif "list[str]" in str(f.type):
            values[f.name] = ["one", "two"]
        elif f.type in (int, "int"):
            values[f.name] = 7
        elif f.type in (float, "float"):
            values[f.name] = 0.5
        else:
            values[f.name] = f"{f.name}-value"
    return cls(**values)


def registry_with(*classes: type[BusMessage]) -> MessageRegistry:
    """A fresh registry with only ``classes``."""
    fresh = MessageRegistry()
    for cls in classes:
        fresh.register(cls)
    return fresh


def rejected(codec: WireCodec, data: bytes) -> MessageRejected:
    """Decode ``data``, which must be rejected; return the rejection."""
    with pytest.raises(MessageRejected) as caught:
        codec.decode(data)
    assert caught.value.reason in MessageRejected.REASONS
    return caught.value
