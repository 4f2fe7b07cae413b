from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import os
import typing

import pytest

import anybus
from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusWorkerLocalErrorMessage,
    JobStatus,
)

SYSTEM = {
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusWorkerErrorMessage",
    "BusWorkerLocalErrorMessage",
    "BusJobResponseUrgentMessage",
    "BusJobUpdateUrgentMessage",
    "BusJobCancelMessage",
}
DATA = {
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusActivateWorkerMessage",
    "BusDeactivateWorkerMessage",
    "BusWorkerReadyMessage",
    "BusJobRequestMessage",
    "BusJobResponseMessage",
    "BusJobUpdateMessage",
    "BusJobUpdateRequestMessage",
    "BusJobStreamStartMessage",
    "BusJobStreamDataMessage",
    "BusJobStreamEndMessage",
}
LOCAL = {"BusWorkerLocalErrorMessage"}


@pytest.mark.parametrize("name", sorted(SYSTEM | DATA))
def test_priority_class_matches_pipecat(name: str) -> None:
    cls = getattr(anybus, name)
    assert issubclass(cls, BusSystemMessage) == (name in SYSTEM)
    assert issubclass(cls, BusDataMessage) == (name in DATA)
    assert issubclass(cls, BusLocalMessage) == (name in LOCAL)
    assert dataclasses.is_dataclass(cls)


def test_messages_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        BusDataMessage("runner")  # type: ignore[call-arg]
    message = BusJobRequestMessage(source="runner", target="worker", job_id="j1", payload={"a": 1})
    assert (message.source, message.target, message.job_id, message.job_name) == (
        "runner",
        "worker",
        "j1",
        None,
    )


def test_ids_are_unique_and_names_count_per_class() -> None:
    first = BusCancelMessage(source="a")
    second = BusCancelMessage(source="a")
    other = BusDataMessage(source="a")
    assert len({first.id, second.id, other.id}) == 3
    cls_name, _, count = first.name.partition("#")
    assert cls_name == "BusCancelMessage"
    assert second.name == f"BusCancelMessage#{int(count) + 1}"
    assert other.name.startswith("BusDataMessage#")
    assert str(first) == f"{first.name} (source=a, target=None)"


def _child_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(BusDataMessage(source="child").id)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_ids_stay_unique_in_a_forked_child() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    process = context.Process(target=_child_id, args=(queue,))
    process.start()
    child_id = queue.get(timeout=30)
    process.join(timeout=30)
    parent_id = BusDataMessage(source="parent").id
    assert child_id.split("-")[0] != parent_id.split("-")[0]


def test_equality_includes_the_id() -> None:
    message = BusDataMessage(source="a")
    assert message != BusDataMessage(source="a")  # same content, another message
    assert message == copy.copy(message)


def test_job_status_is_a_str_enum() -> None:
    assert [status.value for status in JobStatus] == ["completed", "cancelled", "failed", "error"]
    assert str(JobStatus.COMPLETED) == "completed"
    assert JobStatus("failed") is JobStatus.FAILED
    response = BusJobResponseMessage(source="w", job_id="j", status=JobStatus.FAILED)
    assert response.status is JobStatus.FAILED


def test_local_error_message_is_local_and_system() -> None:
    message = BusWorkerLocalErrorMessage(source="child", error="boom")
    assert isinstance(message, BusLocalMessage)
    assert isinstance(message, BusSystemMessage)
    assert isinstance(message, BusMessage)


@pytest.mark.parametrize("name", sorted(SYSTEM | DATA))
def test_type_hints_resolve_from_the_public_module(name: str) -> None:
    # The classes show as anybus.X; their annotations must still resolve (tools and the
    # serializer read them).
    hints = typing.get_type_hints(getattr(anybus, name))
    assert hints["source"] is str
