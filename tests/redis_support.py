"""Real Redis servers for the tests: the shared one, and private ones a test may kill.

The shared server (``ANYBUS_REDIS_URL``, default ``redis://127.0.0.1:6379``) is never stopped
by a test. Tests that kill or restart Redis start their own ``redis-server`` on a free port.
Without a reachable server the Redis tests skip with the reason, except under CI (``CI`` set),
where a skipped Redis test would hide a broken set-up, so they fail instead.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import pytest

if TYPE_CHECKING:
    from anybus.redis._base import RedisBusBase

SHARED_URL = os.environ.get("ANYBUS_REDIS_URL", "redis://127.0.0.1:6379")
READY_LINE = "Ready to accept connections"


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` if not ``condition``; under CI, fail instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs every server test: a skip would hide a broken set-up)")
    pytest.skip(reason)


def shared_redis_url() -> str:
    parts = urlsplit(SHARED_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    require(ping(host, port), f"no Redis server answers at {host}:{port}")
    return SHARED_URL


def _drain(stream: IO[str]) -> None:
    with stream:
        for _ in stream:
            pass


def free_port(*, cluster: bool = False) -> int:
    """A port nothing listens on; for a cluster node, port + 10000 (its bus) is free too."""
    if not cluster:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(100):
        port = random.randrange(20000, 30000)
        if all(_bindable(candidate) for candidate in (port, port + 10000)):
            return port
    raise RuntimeError("found no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """A private ``redis-server`` on a free port, which a test may kill and restart.

    With ``persistent=True`` it writes an append-only file synced on every write, so a
    restart keeps what was acknowledged.
    """

    def __init__(self, *, persistent: bool = False, cluster: bool = False) -> None:
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed")
        assert binary is not None
        self.binary = binary
        self.port = free_port(cluster=cluster)
        self.persistent = persistent
        self.cluster = cluster
        self.directory = Path(tempfile.mkdtemp(prefix="anybus-redis-"))
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        assert self.process is None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--logfile",
                "",
                *persistence,
                *(
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                    if self.cluster
                    else []
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        # Synchronise on the server's own word rather than polling or sleeping.
        for line in stdout:
            if READY_LINE in line:
                # Keep reading its output so that the pipe never fills up and blocks it.
                self._reader = threading.Thread(target=_drain, args=(stdout,), daemon=True)
                self._reader.start()
                return
        raise RuntimeError(f"redis-server on port {self.port} exited before it was ready")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): nothing is flushed that was not already."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            if self._reader is not None:
                self._reader.join(timeout=30)
                self._reader = None
            elif self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def private_server(persistent: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.close()


async def wait_until(predicate: Callable[[], bool], *, interval: float = 0.01) -> None:
    """Wait until ``predicate()`` holds, checking every ``interval`` seconds.

    Only for state that nothing signals: what a Redis server or another process does is seen
    through counters alone. Bound it with ``anyio.fail_after``.
    """
    while not predicate():  # noqa: ASYNC110 - nothing signals it: polling is the only way
        await anyio.sleep(interval)


class RedisCluster:
    """Three private ``redis-server`` nodes joined into a Redis Cluster (no replicas)."""

    def __init__(self, nodes: int = 3) -> None:
        cli = shutil.which("redis-cli")
        require(cli is not None, "redis-cli is not installed (needed to form a cluster)")
        assert cli is not None
        self.cli = cli
        self.servers = [RedisServer(cluster=True) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return f"{self.servers[0].url}?cluster=true"

    def start(self) -> None:
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # The nodes agree on the slots a moment after the command returns: wait for it,
        # polling the cluster's own state (bounded; nothing signals it).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [self.cli, "-p", str(server.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for server in self.servers
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.05)
        raise RuntimeError("the test cluster did not reach cluster_state:ok in 30 s")

    def close(self) -> None:
        for server in self.servers:
            server.close()


def unique_name() -> str:
    """A channel or stream name no other test uses."""
    return f"anybus-test-{secrets.token_hex(6)}"


def network_bus(kind: str, url: str, channel: str, name: str | None = None) -> RedisBusBase[Any]:
    """A ``RedisBus`` (``kind`` "pubsub") or ``RedisStreamBus`` ("stream") on ``channel``."""
    from anybus.redis import RedisBus, RedisStreamBus

    if kind == "stream":
        return RedisStreamBus(url, stream=channel, name=name)
    return RedisBus(url, channel=channel, name=name)


async def kill_clients(url: str, instance: str) -> int:
    """CLIENT KILL every connection of the bus ``instance``; return how many were killed."""
    from anybus.redis._base import client_name
    from anybus.redis._client import RedisClient, RedisSettings

    suffix = client_name("", instance).removeprefix("anybus--")
    admin = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-admin")
    try:
        listing = await admin.command("CLIENT", "LIST")
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        killed = 0
        for line in text.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if fields.get("name", "").endswith(suffix):
                killed += int(await admin.command("CLIENT", "KILL", "ID", fields["id"]))
        return killed
    finally:
        await admin.close()
