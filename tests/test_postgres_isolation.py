"""Isolation with two real roles: alice and bob share a channel through PostgresBus, and
neither can read the tables, list channels, or touch the other's consumers; hostile
arguments to the functions reach nothing more; a role not granted, or that may not create
the schema, is told what to run.

Every role and schema is made for this module (unique names) and dropped afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from anybus import BusDataMessage, TransportError
from anybus.postgres import PostgresBus, grant_sql, schema_sql
from anybus.postgres._client import describe
from anybus.postgres._schema import (
    FUNCTIONS,
    MAX_READ_BATCH,
    NOT_OWNER,
    OLDEST_USABLE_VERSION,
    SCHEMA_VERSION,
)
from anybus.testing import RecordingSubscriber

from .postgres_roles import admin, admin_script, dropped_schema, dsn_as, new_role
from .postgres_support import SHARED_DSN, shared_postgres_dsn, unique_channel, unique_schema

TIMEOUT = 20
WHERE = describe(SHARED_DSN)  # as the messages name the server
INVALID = "22023"  # invalid_parameter_value
DENIED = "42501"  # insufficient_privilege


@dataclass(frozen=True)
class World:
    schema: str
    owner: str  # owns the schema; no bus logs in as it
    alice: str
    bob: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    shared_postgres_dsn()  # skips (fails under CI) without a server
    with (
        new_role("anybus_owner", login=False) as owner,
        new_role("anybus_alice") as alice,
        new_role("anybus_bob") as bob,
        dropped_schema() as schema,
    ):
        admin_script(schema_sql(schema, owner=owner, grant=[alice, bob]))
        yield World(schema, owner, alice, bob)


def bus(world: World, role: str, channel: str, name: str, **options: Any) -> PostgresBus:
    return PostgresBus(dsn_as(role), channel=channel, name=name, schema=world.schema, **options)


def connect(role: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(dsn_as(role), autocommit=True)


def call(role: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement as ``role``; its rows."""
    with connect(role) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def sqlstate(role: str, query: str, params: Sequence[Any] = ()) -> str | None:
    """The SQLSTATE one statement as ``role`` fails with (None: it did not fail)."""
    try:
        call(role, query, params)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def publish(world: World, role: str, channel: str, sender: str, seqs: Sequence[int]) -> int:
    rows = call(
        role,
        f"SELECT {world.schema}.publish(%s, %s, %s::bigint[], %s::bytea[])",
        [channel, sender, list(seqs), [f"body {seq}".encode() for seq in seqs]],
    )
    stored: int = rows[0][0]
    return stored


def attach(world: World, role: str, channel: str, name: str, holder: str) -> tuple[Any, ...]:
    query = f"SELECT * FROM {world.schema}.attach(%s, %s, %s, %s::interval)"
    return call(role, query, [channel, name, holder, "10 s"])[0]


def read_query(world: World) -> str:
    s = world.schema
    return f"SELECT id, body FROM {s}.read(%s, %s, %s, %s, %s, %s::integer, %s)"


# --- what a granted role may do ------------------------------------------------------------


@pytest.mark.anyio
async def test_two_roles_exchange_messages_on_a_channel_they_both_know(world: World) -> None:
    channel = unique_channel()
    at_alice, at_bob = RecordingSubscriber("a"), RecordingSubscriber("b")
    async with (
        bus(world, world.alice, channel, "alice") as alice,
        bus(world, world.bob, channel, "bob", create_schema=False) as bob,
    ):
        await alice.subscribe(at_alice)
        await bob.subscribe(at_bob)
        await alice.send(from_alice := BusDataMessage(source="alice"))
        await bob.send(from_bob := BusDataMessage(source="bob"))
        with anyio.fail_after(TIMEOUT):
            await at_bob.wait_for(lambda seen: from_alice in seen)
            await at_alice.wait_for(lambda seen: from_bob in seen)
    assert {m.id for m in at_alice.messages} == {m.id for m in at_bob.messages}
    stored = admin(f"SELECT publisher FROM {world.schema}.messages WHERE channel = %s", [channel])
    assert sorted(row[0] for row in stored) == sorted([world.alice, world.bob])


# --- what it may not -----------------------------------------------------------------------


@pytest.mark.parametrize("table", ["channels", "messages", "consumers", "housekeeping"])
def test_a_granted_role_can_neither_read_nor_write_the_tables(world: World, table: str) -> None:
    t = f"{world.schema}.{table}"
    for statement in (
        f"SELECT * FROM {t}",
        f"SELECT count(*) FROM {t}",
        f"INSERT INTO {t} DEFAULT VALUES",
        f"UPDATE {t} SET channel = channel",
        f"DELETE FROM {t}",
        f"TRUNCATE {t}",
        f"COPY {t} TO STDOUT",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            call(world.bob, statement)


def test_a_granted_role_may_execute_the_bus_functions_and_no_other(world: World) -> None:
    rows = call(
        world.bob,
        "SELECT p.proname, has_function_privilege(p.oid, 'EXECUTE'), "
        "pg_get_function_result(p.oid) FROM pg_proc AS p WHERE p.pronamespace = %s::regnamespace",
        [world.schema],
    )
    assert {name for name, may, _ in rows if may} == set(FUNCTIONS)
    assert {name for name, may, _ in rows if not may} == {"held", "notify_name"}
    # No function returns channels: read() returns a consumer's messages, attach() numbers.
    assert not [result for _, _, result in rows if "channel" in result]
    assert sqlstate(world.bob, f"SELECT * FROM {world.schema}.held('c', 'n', 'h')") == DENIED
    assert sqlstate(world.bob, f"SELECT {world.schema}.notify_name('c')") == DENIED


def _what_bob_sees(world: World) -> str:
    """Every catalog view, statistic and session-local listing bob may read, as text."""
    queries = [
        "SELECT * FROM pg_stat_activity",
        "SELECT * FROM pg_locks",
        "SELECT * FROM pg_stats",
        "SELECT * FROM pg_stat_user_tables",
        "SELECT * FROM pg_statio_user_tables",
        "SELECT * FROM pg_stat_user_functions",
        "SELECT * FROM pg_class",
        "SELECT * FROM pg_proc",
        "SELECT * FROM pg_listening_channels()",
        "SELECT * FROM pg_prepared_statements",
        "SELECT * FROM pg_prepared_xacts",
        "SELECT pg_notification_queue_usage()",
    ]
    seen: list[str] = []
    with connect(world.bob) as conn:
        for query in queries:
            seen.extend(repr(row) for row in conn.execute(query).fetchall())
        stats = conn.execute(
            "SELECT * FROM pg_stats WHERE schemaname = %s", [world.schema]
        ).fetchall()
        assert stats == []  # pg_stats shows only the tables the role may read
    return "\n".join(seen)


@pytest.mark.anyio
async def test_a_granted_role_cannot_list_channels(world: World) -> None:
    channel = f"secret-{secrets.token_hex(8)}"
    async with bus(world, world.alice, channel, "alice-lister") as alice:
        await alice.send(BusDataMessage(source="alice"))
        admin(f"ANALYZE {world.schema}.messages")
        admin(f"ANALYZE {world.schema}.channels")
        # The statistics of the tables exist (they would show values): bob sees none of them.
        assert admin("SELECT count(*) FROM pg_stats WHERE schemaname = %s", [world.schema])[0][0]
        seen = await anyio.to_thread.run_sync(_what_bob_sees, world)
    assert "anybus-read-alice-lister" in seen  # the catalogs do show alice's sessions ...
    assert channel not in seen  # ... but neither the channel's name
    assert hashlib.md5(channel.encode()).hexdigest() not in seen  # nor its notifications'
    name = admin(f"SELECT {world.schema}.notify_name(%s)", [channel])[0][0]
    assert name.rpartition("_")[2] not in seen  # (by either name)
    assert "<insufficient privilege>" in seen  # (alice's statements are hidden from bob)


@pytest.mark.anyio
async def test_another_roles_consumer_cannot_be_read_acknowledged_or_taken(
    world: World,
) -> None:
    channel = unique_channel()
    s = world.schema
    async with bus(world, world.alice, channel, "alice-main") as alice:
        await alice.send(BusDataMessage(source="alice"))
        holder = alice.instance  # her lease's token: the catalogs show it (application_name)

        def attempts() -> list[str | None]:
            return (
                [
                    sqlstate(
                        world.bob, read_query(world), [channel, "alice-main", h, None, 0, 10, 99]
                    )
                    for h in (holder, "bob")
                ]
                + [
                    sqlstate(world.bob, f"SELECT {s}.ack(%s, %s, %s, %s, %s)", [*key, 10**9, flag])
                    for key in ((channel, "alice-main", holder), (channel, "alice-main", "bob"))
                    for flag in (False, True)
                ]
                + [
                    sqlstate(
                        world.bob, f"SELECT * FROM {s}.attach(%s, %s, %s, %s::interval)", args
                    )
                    for args in (
                        [channel, "alice-main", "bob", "1 s"],
                        [channel, "alice-main", holder, "1 s"],
                    )
                ]
            )

        states = await anyio.to_thread.run_sync(attempts)
        assert states == [NOT_OWNER] * len(states)
        with pytest.raises(TransportError, match="belongs to another role"):
            async with bus(world, world.bob, channel, "alice-main"):
                pass  # pragma: no cover
        row = admin(
            f"SELECT owner, holder, position < 10 FROM {s}.consumers "
            f"WHERE channel = %s AND name = %s",
            [channel, "alice-main"],
        )
        assert row == [(world.alice, holder, True)]
        assert alice.running


def test_read_and_ack_arguments_reach_no_further_than_the_callers_consumer(
    world: World,
) -> None:
    channel, other = unique_channel(), unique_channel()
    s = world.schema
    publish(world, world.alice, channel, "alice", [1, 2, 3])  # before bob's consumer: history
    publish(world, world.alice, other, "alice", [1, 2, 3])
    position, _, last, created = attach(world, world.bob, channel, "bob-reader", "bh")
    assert (position, last, created) == (3, 3, True)  # a new consumer starts after the last
    publish(world, world.alice, channel, "alice", [4, 5, 6])
    read = read_query(world)
    key = [channel, "bob-reader", "bh"]
    for ack, after, limit, max_bytes in [
        (None, -1, 10, 99),
        (None, 0, 0, 99),
        (None, 0, -5, 99),
        (None, 0, None, 99),
        (None, 0, 10, 0),
        (None, 0, 10, None),
        (-1, 0, 10, 99),
    ]:
        assert sqlstate(world.bob, read, [*key, ack, after, limit, max_bytes]) == INVALID
    assert sqlstate(world.bob, f"SELECT {s}.ack(%s, %s, %s, -1, false)", key) == INVALID
    for lease in ("0 s", "-1 s", None):
        query = f"SELECT * FROM {s}.attach(%s, %s, %s, %s::interval)"
        assert sqlstate(world.bob, query, [channel, "bob-2", "bh", lease]) == INVALID
    # Another channel, through bob's own consumer name and token: refused.
    assert sqlstate(world.bob, read, [other, "bob-reader", "bh", None, 0, 10, 99]) == NOT_OWNER
    # p_after before the consumer's position reads nothing older; far ahead, nothing at all.
    rows = call(world.bob, read, [*key, None, 0, 2**31 - 1, 2**62])
    assert [(i, bytes(body)) for i, body in rows] == [(i, f"body {i}".encode()) for i in (4, 5, 6)]
    assert call(world.bob, read, [*key, None, 2**62, 10, 99]) == []
    # However large p_limit, one call returns at most MAX_READ_BATCH messages.
    publish(world, world.alice, channel, "alice", range(7, MAX_READ_BATCH + 10))
    rows = call(world.bob, read, [*key, None, 6, 2**31 - 1, 2**62])
    assert len(rows) == MAX_READ_BATCH


def test_another_role_cannot_shorten_what_your_consumers_keep(world: World) -> None:
    channel = unique_channel()
    s = world.schema
    housekeep = f"SELECT * FROM {s}.housekeep(%s, %s::interval, %s)"
    attach(world, world.alice, channel, "alice-slow", "ah")
    call(world.alice, housekeep, [channel, "1 day", 1000])  # her policy: lose nothing < 1000
    call(world.alice, f"SELECT {s}.ack(%s, 'alice-slow', 'ah', NULL, true)", [channel])  # away
    publish(world, world.alice, channel, "alice", range(1, 51))
    attach(world, world.bob, channel, "bob-keeper", "bh")
    # Holding the key the schema used to take (any role of the database may) blocks nothing.
    key = f"anybus housekeep {s} {channel}"
    with connect(world.bob) as locker:
        locker.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
        # bob's most hostile policy applies to bob's consumer only.
        assert call(world.bob, housekeep, [channel, "1 microsecond", 1]) == [(0, 0)]
        for retention, max_len in [("0 s", 10), ("-1 s", 10), ("1 day", 0), ("1 day", -1)]:
            assert sqlstate(world.bob, housekeep, [channel, retention, max_len]) == INVALID
        rows = admin(
            f"SELECT name, max_len, retention > '1 hour' FROM {s}.consumers "
            f"WHERE channel = %s ORDER BY name",
            [channel],
        )
        assert rows == [("alice-slow", 1000, True), ("bob-keeper", 1, False)]
        # alice's own policy is hers to tighten: all but her last 10 go.
        assert call(world.alice, housekeep, [channel, "1 day", 10]) == [(40, 0)]
    position, first, last, created = attach(world, world.alice, channel, "alice-slow", "ah")
    assert (position, first, last, created) == (0, 41, 50, False)


def test_another_role_cannot_take_your_sequence_numbers(world: World) -> None:
    channel = unique_channel()
    # bob stores messages under alice's sender id, with the numbers she will use next ...
    assert publish(world, world.bob, channel, "alice-sender", [1, 2, 3]) == 3
    # ... and hers are stored all the same; only her own retry is a repeat.
    assert publish(world, world.alice, channel, "alice-sender", [1, 2, 3]) == 3
    assert publish(world, world.alice, channel, "alice-sender", [1, 2, 3]) == 0
    # A sender stores its numbers in increasing order: only those above its highest are new.
    assert publish(world, world.bob, channel, "alice-sender", [2, 3, 4]) == 1
    rows = admin(
        f"SELECT id, publisher FROM {world.schema}.messages WHERE channel = %s ORDER BY id",
        [channel],
    )
    assert rows == [(1, world.bob), (2, world.bob), (3, world.bob)] + [
        (i, world.alice) for i in (4, 5, 6)
    ] + [(7, world.bob)]


def _heard_before(conn: psycopg.Connection[Any], marker: str) -> list[str]:
    """The notifications ``conn`` receives before one on ``marker``."""
    heard: list[str] = []
    for notification in conn.notifies(timeout=TIMEOUT):
        if notification.channel == marker:
            return heard
        heard.append(f"{notification.channel}: {notification.payload}")
    raise AssertionError(f"no notification on {marker!r} within {TIMEOUT} s")


@pytest.mark.anyio
async def test_a_role_not_granted_can_neither_learn_nor_hear_a_channels_notifications(
    world: World,
) -> None:
    s, channel, marker = world.schema, unique_channel(), f"marker_{secrets.token_hex(4)}"
    seen = RecordingSubscriber("seen")
    with new_role("anybus_dave") as dave, connect(dave) as dave_listens:
        for function in ("notify_name", "listen"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                call(dave, f"SELECT {s}.{function}(%s)", [channel])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            call(dave, f"SELECT value FROM {s}.secret")
        # dave listens where version 5's buses notified (any role could compute the name).
        for name in (f"{s}_{hashlib.md5(channel.encode()).hexdigest()}", marker):
            dave_listens.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        async with (
            bus(world, world.alice, channel, "alice-carrying") as alice,
            bus(world, world.bob, channel, "bob-hearing") as bob,
        ):
            await bob.subscribe(seen)
            await alice.send(message := BusDataMessage(source="alice"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(lambda messages: message in messages)
        # Sent after alice's publish committed: a session gets notifications in commit order.
        admin("SELECT pg_notify(%s, 'end')", [marker])
        heard = await anyio.to_thread.run_sync(_heard_before, dave_listens, marker)
    assert heard == []  # alice's carried message reached bob, and nothing reached dave


@pytest.mark.anyio
async def test_no_statement_shows_a_channels_notification_name(world: World) -> None:
    # Who may see the text of a bus's statements: its role's other sessions (which need not
    # know the channel), and a monitoring role (pg_read_all_stats, not granted the bus).
    channel = unique_channel()
    name = admin(f"SELECT {world.schema}.notify_name(%s)", [channel])[0][0]
    statements = "SELECT coalesce(query, '') FROM pg_stat_activity WHERE usename = %s"
    with new_role("anybus_monitor") as monitor:
        admin(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(monitor)))
        async with bus(world, world.alice, channel, "alice-watched"):
            seen = {role: call(role, statements, [world.alice]) for role in (world.alice, monitor)}
    for role, rows in seen.items():
        queries = "\n".join(row[0] for row in rows)
        assert f"{world.schema}.listen(" in queries, (role, queries)  # the statements show ...
        assert name.rpartition("_")[2] not in queries, (role, queries)  # ... but not the name


def test_an_error_of_the_listen_inside_listen_does_not_show_the_name(world: World) -> None:
    # A LISTEN refused (here in a security-restricted operation: an index build) raises
    # from listen() without the statement in its context, which the log would keep too.
    channel = unique_channel()
    name = admin(f"SELECT {world.schema}.notify_name(%s)", [channel])[0][0]
    with connect(world.bob) as conn:
        conn.execute(
            "CREATE FUNCTION pg_temp.w(t text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
            f"$$ BEGIN PERFORM {world.schema}.listen(t); RETURN 1; END $$"
        )
        conn.execute("CREATE TEMP TABLE t (c text)")
        conn.execute("INSERT INTO t VALUES (%s)", [channel])
        with pytest.raises(psycopg.Error, match="cannot execute LISTEN") as caught:
            conn.execute("CREATE INDEX ON t (pg_temp.w(c))")
    said = f"{caught.value} {caught.value.diag.context}"
    assert name.rpartition("_")[2] not in said, said


def test_a_grant_passed_on_does_not_stop_the_schema_being_applied_again(world: World) -> None:
    with dropped_schema() as s, new_role("anybus_x") as x, new_role("anybus_y") as y:
        admin_script(schema_sql(s, owner=world.owner, grant=[world.bob]))
        grant = (
            "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT EXECUTE ON FUNCTION {s}.listen(text) TO {r}"
        )
        admin_script(f"SET ROLE {world.owner}; " + grant.format(s=s, r=x) + " WITH GRANT OPTION")
        call(x, grant.format(s=s, r=y))  # x passes it on
        admin_script(schema_sql(s))  # applied again: listen is taken from x, and from y
        may = "SELECT has_function_privilege(%s, %s, 'EXECUTE')"
        for role, expected in ((x, False), (y, False), (world.bob, True)):
            assert admin(may, [role, f"{s}.listen(text)"]) == [(expected,)], role


@pytest.mark.anyio
async def test_a_function_missing_from_this_version_is_put_back_by_a_bus_that_may(
    world: World,
) -> None:
    with dropped_schema() as s:
        admin_script(schema_sql(s, owner=world.owner, grant=[world.bob]))
        admin(f"DROP FUNCTION {s}.listen(text)")
        lacks = f"the anybus schema {s!r} at .* lacks listen and role .* could not apply it again"
        with pytest.raises(TransportError, match=lacks):
            async with PostgresBus(dsn_as(world.bob), channel=unique_channel(), schema=s):
                pass  # pragma: no cover (bob may not apply it)
        async with PostgresBus(SHARED_DSN, channel=unique_channel(), schema=s):
            pass  # the superuser's bus applies it again ...
        async with PostgresBus(dsn_as(world.bob), channel=unique_channel(), schema=s):
            pass  # ... with the grants of those granted publish


# --- roles that may not, told what to do ---------------------------------------------------


@pytest.mark.anyio
async def test_a_role_not_granted_cannot_call_the_functions_and_is_told_what_to_run(
    world: World,
) -> None:
    s = world.schema
    with new_role("anybus_carol") as carol:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            call(carol, f"SELECT {s}.publish('c', 'x', '{{1}}', '{{x}}')")
        for create in (True, False):
            with pytest.raises(TransportError) as caught:
                async with bus(world, carol, unique_channel(), "carol", create_schema=create):
                    pass  # pragma: no cover
            message = str(caught.value)
            assert message == (
                f"role {carol!r} may not use the anybus schema {s!r} at {WHERE} "
                f"(no usage of the schema): have its owner or a DBA grant it with `anybus "
                f"postgres schema --schema {s} --grant {carol} --grants-only | psql ...`"
            )
        # Doing what it says is enough.
        admin_script("BEGIN;\n" + grant_sql(carol, s) + "COMMIT;\n")
        async with bus(world, carol, unique_channel(), "carol") as granted:
            assert granted.running


@pytest.mark.anyio
async def test_a_role_that_may_not_create_the_schema_is_told_to_run_the_command(
    world: World,
) -> None:
    missing = unique_schema()
    command = f"`anybus postgres schema --schema {missing} --grant {world.bob} | psql ...`"
    with pytest.raises(TransportError) as caught:
        async with PostgresBus(dsn_as(world.bob), channel=unique_channel(), schema=missing):
            pass  # pragma: no cover
    message = str(caught.value)
    assert message.startswith(
        f"the anybus schema {missing!r} is missing from {WHERE}, and role "
        f"{world.bob!r} may not create it (postgres at {WHERE} refused a "
        f"statement: permission denied for database {WHERE.rpartition('/')[2]}): have a DBA "
        f"apply it with {command}"
    ), message
    with pytest.raises(TransportError) as caught:
        async with PostgresBus(
            dsn_as(world.bob), channel=unique_channel(), schema=missing, create_schema=False
        ):
            pass  # pragma: no cover
    assert str(caught.value) == (
        f"the anybus schema {missing!r} is missing from {WHERE}: have a DBA apply "
        f"it with {command} (or let a role that may create it start a bus with "
        f"create_schema=True)"
    )
    assert admin("SELECT to_regnamespace(%s)", [missing]) == [(None,)]


def _set_version(schema: str, version: int) -> None:
    admin(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}.schema_version() RETURNS integer "
            "LANGUAGE sql IMMUTABLE AS {}"
        ).format(sql.Identifier(schema), sql.Literal(f"SELECT {version}"))
    )


@pytest.mark.anyio
async def test_a_usable_older_version_its_role_may_not_update_is_run_on_with_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 6 differs from this one only in how ``publish`` stores a lone message: a bus
    whose role may not update it (or is told not to) runs on it, and says what to apply."""
    assert OLDEST_USABLE_VERSION < SCHEMA_VERSION
    with dropped_schema() as s:
        admin_script(schema_sql(s, owner=world.owner, grant=[world.bob]))
        _set_version(s, OLDEST_USABLE_VERSION)
        for create, why in [(True, "could not update it"), (False, "told not to update it")]:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="anybus.postgres"):
                async with PostgresBus(
                    dsn_as(world.bob), channel=unique_channel(), schema=s, create_schema=create
                ) as bus:
                    await bus.send(BusDataMessage(source="bob"))  # stored: it returned
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(
                f"is version {OLDEST_USABLE_VERSION} and" in text
                and why in text
                and "buses run on it" in text
                and f"apply `anybus postgres schema --schema {s} | psql ...`" in text
                for text in warnings
            ), warnings
        assert admin(f"SELECT {s}.schema_version()") == [(OLDEST_USABLE_VERSION,)]


@pytest.mark.anyio
async def test_another_version_is_refused_with_what_to_do_and_its_owner_updates_it(
    world: World,
) -> None:
    with dropped_schema() as s:
        admin_script(schema_sql(s, owner=world.owner, grant=[world.bob]))
        _set_version(s, 1)
        where = WHERE
        for create, expected in [
            (True, f"is version 1 and role {world.bob!r} could not update it to version"),
            (False, f"is version 1; this anybus needs version {SCHEMA_VERSION}: have its owner"),
        ]:
            with pytest.raises(TransportError) as caught:
                async with PostgresBus(
                    dsn_as(world.bob), channel=unique_channel(), schema=s, create_schema=create
                ):
                    pass  # pragma: no cover
            message = str(caught.value)
            assert message.startswith(f"the anybus schema {s!r} at {where} {expected}"), message
            assert message.endswith(
                f"apply `anybus postgres schema --schema {s} | psql ...` (it updates the "
                f"schema in place)"
            )
        # A role that may (here the superuser) updates it in place as its bus starts.
        async with PostgresBus(SHARED_DSN, channel=unique_channel(), schema=s) as updater:
            assert updater.running
        assert admin(f"SELECT {s}.schema_version()") == [(SCHEMA_VERSION,)]
        async with PostgresBus(dsn_as(world.bob), channel=unique_channel(), schema=s) as bob:
            assert bob.running  # the owner and the grants are as they were
        _set_version(s, SCHEMA_VERSION + 1)
        with pytest.raises(TransportError, match="newer than this anybus knows") as caught:
            async with PostgresBus(SHARED_DSN, channel=unique_channel(), schema=s):
                pass  # pragma: no cover
        assert str(caught.value).endswith(": upgrade anybus")
