"""Real Postgres servers for the tests: the shared one, and private ones a test may stop.

The shared server (``ANYBUS_POSTGRES_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``)
is never stopped by a test. Tests that stop or restart Postgres start their own: ``initdb`` in
a temporary directory and ``pg_ctl`` on a free port. Without a reachable server the Postgres
tests skip with the reason, except under CI (``CI`` set), where they fail instead.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .redis_support import free_port, require

logger = logging.getLogger("tests.postgres")

SHARED_DSN = os.environ.get("ANYBUS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def server_answers(dsn: str) -> bool:
    """Whether a Postgres server accepts a connection at ``dsn``."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def shared_postgres_dsn() -> str:
    require(server_answers(SHARED_DSN), f"no Postgres server answers at {SHARED_DSN}")
    drop_a_newer_default_schema(SHARED_DSN)
    return SHARED_DSN


@functools.cache  # once a run
def drop_a_newer_default_schema(dsn: str) -> None:
    """Drop the default ``anybus`` schema from the shared test database when a newer anybus
    left it there (a run of another branch's tests): every bus of this one would refuse it as
    "newer than this anybus knows", failing each Postgres test for a reason outside the test.
    The shared database is the suite's scratch space; an older or equal version is left alone
    (the buses update it in place, which is itself under test)."""
    import psycopg

    from anybus.postgres._schema import SCHEMA_VERSION

    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'anybus' AND p.proname = 'schema_version'"
        ).fetchone()
        if found is None:
            return
        row = conn.execute("SELECT anybus.schema_version()").fetchone()
        if row is not None and row[0] > SCHEMA_VERSION:
            logger.warning(
                "dropping the anybus schema (version %d, newer than this anybus's %d) from %s",
                row[0],
                SCHEMA_VERSION,
                dsn,
            )
            conn.execute("DROP SCHEMA anybus CASCADE")


def unique_channel() -> str:
    return f"test-{secrets.token_hex(6)}"


def notification_name(dsn: str, channel: str, schema: str = "anybus") -> str:
    """The name ``channel``'s buses notify on, as the schema's ``notify_name()`` gives it to
    its owner or a superuser (``dsn``'s role; blocking: call it in a thread from async
    code)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT {schema}.notify_name(%s)", [channel]).fetchone()
    assert row is not None
    name: str = row[0]
    return name


def unique_schema() -> str:
    return f"anybus_t{secrets.token_hex(4)}"


def pg_bin(tool: str) -> str:
    """The path of a Postgres server tool (``initdb``, ``pg_ctl``), on PATH or in Debian's
    ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    require(bool(candidates), f"{tool} is not installed (Postgres server tools)")
    return candidates[-1]


class PostgresServer:
    """A private Postgres server in a temporary directory, on a free port."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self.dsn = f"postgresql://anybus@127.0.0.1:{self.port}/postgres"
        user_args: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root: run the server as postgres
            shutil.chown(root, "postgres")
            user_args = ["runuser", "-u", "postgres", "--"]
        self._as = user_args
        subprocess.run(
            [*user_args, pg_bin("initdb"), "-D", str(self.data), "-U", "anybus", "-A", "trust"],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        subprocess.run(
            [
                *self._as,
                pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-o",
                f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [*self._as, pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            check=False,
            capture_output=True,
        )

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()


def private_server() -> Iterator[PostgresServer]:
    """A started private server, stopped and deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="anybus-pg-") as root:
        os.chmod(root, 0o755)
        server = PostgresServer(Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
