"""Roles and schemas of their own for the isolation and CLI tests, on the shared server.

Made as the server's superuser (the shared dsn's user), each with a unique name, and
dropped again afterwards (``DROP OWNED`` first, so that no grant keeps a role alive).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from .postgres_support import SHARED_DSN, unique_schema


def dsn_as(role: str) -> str:
    """The shared server's dsn, logging in as ``role`` (trust authentication)."""
    return psycopg.conninfo.make_conninfo(SHARED_DSN, user=role)


def admin(query: str | sql.Composed, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement as the superuser; return its rows."""
    with psycopg.connect(SHARED_DSN, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def admin_script(script: str) -> None:
    """Run a script of several statements as the superuser."""
    with psycopg.connect(SHARED_DSN, autocommit=True) as conn:
        conn.execute(script.encode())


@contextmanager
def new_role(prefix: str, *, login: bool = True) -> Iterator[str]:
    """A role ``<prefix>_<hex>`` (LOGIN unless not ``login``), dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    ident = sql.Identifier(name)
    admin(sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(ident))
    try:
        yield name
    finally:
        # Its sessions end first: none may go on as a role that is gone.
        admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        admin(sql.SQL("DROP OWNED BY {}").format(ident))
        admin(sql.SQL("DROP ROLE {}").format(ident))


@contextmanager
def dropped_schema(schema: str | None = None) -> Iterator[str]:
    """A unique schema name (``schema`` if given), dropped with all it holds afterwards."""
    name = schema or unique_schema()
    try:
        yield name
    finally:
        admin(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
