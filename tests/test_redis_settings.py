"""Redis URLs and where they lead: the query parameters accepted, a database that does not
exist, a key of another type."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

pytest.importorskip("glide")

from anybus import BusDataMessage, TransportError
from anybus.redis import RedisBus, RedisSettings, RedisStreamBus
from anybus.redis._client import NoDatabaseError, RedisClient
from anybus.redis._monitor import UnreachableError

from .redis_support import free_port, unique_name


def with_database(url: str, database: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# --- the url's query -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cluster"),
    [
        ("", False),
        ("?cluster=true", True),
        ("?cluster=YES", True),
        ("?cluster=1", True),
        ("?cluster=false", False),
        ("?cluster=no", False),
        ("?cluster=0", False),
    ],
)
def test_the_cluster_parameter_takes_true_or_false(query: str, cluster: bool) -> None:
    assert RedisSettings.from_url(f"redis://h:7000{query}").cluster is cluster


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (
            "redis://h?cluster=maybe",
            "cluster in the url must be one of true, yes, 1, false, no, 0, got 'maybe'",
        ),
        ("redis://h?cluster=", "got ''"),
        ("redis://h?cluster=true&cluster=false", "cluster is given 2 times in the url"),
        (
            "redis://h?clutser=true",
            "unknown parameter 'clutser' in the url's query 'clutser=true': the only "
            "parameter accepted is 'cluster'",
        ),
        ("redis://h/0?cluster=true&timeout=3", "unknown parameter 'timeout'"),
    ],
)
def test_a_bad_query_is_refused_naming_the_parameter(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        RedisSettings.from_url(url)


def test_a_bus_refuses_a_bad_query_at_once() -> None:
    with pytest.raises(ValueError, match="got 'maybe'"):
        RedisBus("redis://127.0.0.1?cluster=maybe", channel="c")


# --- a database the server does not have ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["pubsub", "stream"])
async def test_a_missing_database_is_named_at_once(redis_url: str, kind: str) -> None:
    url = with_database(redis_url, 99)  # a default server has 16
    bus = (
        RedisStreamBus(url, stream=unique_name())
        if kind == "stream"
        else RedisBus(url, channel=unique_name())
    )
    started = time.monotonic()
    with anyio.fail_after(4), pytest.raises(NoDatabaseError) as info:  # connect_timeout: 5
        async with bus:
            pass
    assert isinstance(info.value, TransportError)
    assert str(info.value).startswith("database 99 does not exist on redis at ")
    assert "(it has 16: 0 to 15)" in str(info.value)
    assert time.monotonic() - started < 2


async def _command(url: str, *args: str) -> object:
    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-db")
    try:
        return await client.command(*args)
    finally:
        await client.close()


@pytest.mark.anyio
async def test_a_database_the_server_has_is_used(redis_url: str) -> None:
    stream, url = unique_name(), with_database(redis_url, 3)
    try:
        async with RedisStreamBus(url, stream=stream) as bus:
            await bus.send(BusDataMessage(source="test"))
        assert await _command(url, "XLEN", stream) == 1
        assert await _command(with_database(redis_url, 0), "EXISTS", stream) == 0
    finally:
        await _command(url, "DEL", stream)


@pytest.mark.anyio
async def test_an_unreachable_server_says_how_to_wait_for_it() -> None:
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/2", channel="c", connect_timeout=0.3)
    with anyio.fail_after(5), pytest.raises(UnreachableError) as info:
        async with bus:
            pass
    assert info.value.within == 0.3
    assert "is unreachable after 0.3 s" in str(info.value)
    assert "connect_timeout=None" in str(info.value)


# --- a key of another type -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_key_of_another_type_is_named_so(redis_url: str) -> None:
    key = unique_name()
    client = await RedisClient.create(RedisSettings.from_url(redis_url), name="anybus-test")
    try:
        await client.command("SET", key, "a string")
        with pytest.raises(TransportError) as info:
            await client.command("XINFO", "STREAM", key)
        assert "refused XINFO: the key holds another type of value than XINFO works on" in (
            str(info.value)
        )
    finally:
        await client.command("DEL", key)
        await client.close()
