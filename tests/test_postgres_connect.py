"""Connecting to Postgres from the event loop (libpq's non-blocking connect): a cancel ends a
connect at once, whatever ``connect_timeout``, and the timeout itself holds to a fraction of
a second — against a server that accepts the TCP connection and never answers. Both
backends."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import pytest

from anybus import TransportError
from anybus.postgres import PostgresBus

pytestmark = pytest.mark.anyio


@pytest.fixture
def silent_server() -> Iterator[int]:
    """The port of a listener that takes connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def silent_bus(port: int, connect_timeout: float) -> PostgresBus:
    return PostgresBus(
        f"postgresql://postgres@127.0.0.1:{port}/test",
        channel="c",
        connect_timeout=connect_timeout,
    )


async def test_a_cancelled_connect_ends_at_once(silent_server: int) -> None:
    bus = silent_bus(silent_server, connect_timeout=20)
    with anyio.fail_after(5):  # it used to wait out the 20 s
        with anyio.move_on_after(0.3) as scope:
            async with bus:
                pytest.fail("a server that never answers cannot be connected to")
        ended = anyio.current_time()
    assert scope.cancelled_caught
    assert scope.deadline is not None
    assert ended - scope.deadline < 1.0
    assert not bus.running


async def test_the_connect_timeout_holds_below_a_second(silent_server: int) -> None:
    started = anyio.current_time()
    with anyio.fail_after(5), pytest.raises(TransportError, match=r"unreachable after 0\.3 s"):
        async with silent_bus(silent_server, connect_timeout=0.3):
            pass
    assert anyio.current_time() - started < 2.0  # libpq's own timeout counts whole seconds
