"""Both Redis buses on a Redis Cluster (three private nodes): the network conformance suite."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from anybus import BusDataMessage
from anybus.redis import RedisBus, RedisSettings, RedisStreamBus
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusFactory, NetworkBusConformance

from .redis_support import RedisCluster

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.close()


class TestRedisBusOnCluster(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, cluster_url: str) -> BusFactory:
        channel = f"anybus-test-{secrets.token_hex(6)}"
        return lambda: RedisBus(cluster_url, channel=channel)


class TestRedisStreamBusOnCluster(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, cluster_url: str) -> BusFactory:
        stream = f"anybus-test-{secrets.token_hex(6)}"
        names = iter(range(1000))
        return lambda: RedisStreamBus(cluster_url, stream=stream, name=f"bus-{next(names)}")


def test_the_url_selects_cluster_mode() -> None:
    assert RedisSettings.from_url("redis://127.0.0.1:7000?cluster=true").cluster
    assert not RedisSettings.from_url("redis://127.0.0.1:7000").cluster
    with pytest.raises(ValueError, match="a cluster has only database 0"):
        RedisSettings.from_url("redis://127.0.0.1:7000/3?cluster=true")


async def test_streams_on_different_nodes_work(cluster_url: str) -> None:
    # Stream keys hash to different slots, so these live on different nodes.
    for stream in ("alpha", "beta", "gamma"):
        recorder = RecordingSubscriber("r")
        key = f"anybus-test-{stream}-{secrets.token_hex(4)}"
        async with (
            RedisStreamBus(cluster_url, stream=key, name="a") as sender,
            RedisStreamBus(cluster_url, stream=key, name="b") as receiver,
        ):
            await receiver.subscribe(recorder)
            await sender.send(message := BusDataMessage(source="t"))
            await recorder.wait_for(lambda seen: message in seen)
