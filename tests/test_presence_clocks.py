"""Presence across hosts whose clocks disagree: an announcement's ``sent_at`` is the sender's
clock, so only one far older than its liveness bound is taken for a replay."""

from __future__ import annotations

import time

import pytest

from anybus import (
    BusWorkerPresenceMessage,
    MemoryBus,
    WorkerUnavailable,
    request,
    worker_directory,
)
from anybus._presence import CLOCK_SKEW, PRESENCE_NAME

pytestmark = pytest.mark.anyio


def announcement(worker: str, *, behind: float) -> BusWorkerPresenceMessage:
    """A heartbeat every 0.2 s (a 0.6 s liveness bound) from a host ``behind`` s slow."""
    return BusWorkerPresenceMessage(
        source=worker,
        target=PRESENCE_NAME,
        worker=worker,
        incarnation="one",
        heartbeat=0.2,
        sent_at=time.time() - behind,
    )


async def test_a_worker_whose_clock_is_seconds_behind_is_seen() -> None:
    # Dropped as "stale" before: the worker was never seen, and every request to it
    # waited out its timeout.
    async with MemoryBus() as bus:
        directory = await worker_directory(bus)
        await bus.send(announcement("slow-clock", behind=5.0))
        await bus.wait_idle()
        seen = directory.get("slow-clock")
        assert seen is not None
        assert seen.seen_at == pytest.approx(time.time(), abs=5.0)  # this host's clock


async def test_an_announcement_older_than_any_clock_skew_is_a_replay_and_ignored() -> None:
    async with MemoryBus() as bus:
        directory = await worker_directory(bus)
        await bus.send(announcement("long-gone", behind=CLOCK_SKEW + 60))
        await bus.wait_idle()
        assert directory.get("long-gone") is None
        with pytest.raises(WorkerUnavailable, match="no worker or pool named 'long-gone'"):
            await request(bus, "long-gone", presence="require")
