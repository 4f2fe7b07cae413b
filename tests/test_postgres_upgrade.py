"""Updating a schema of an older anybus in place: version 4 (and version 5, for what version 6
added: the notification names' secret), with its owner, its grants, its messages and its
consumers, to this version, the two ways the docs give (a DBA applying
``anybus postgres schema`` as the superuser, or a bus whose role may), with version 4's
``publish`` called before and after, as its buses still running would.

The starting point, ``data/schema_v4.sql``, is version 4's SQL exactly as that anybus printed
it (made for the schema ``v4schema``, the owner ``v4owner`` and the granted role ``v4user``,
renamed here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from anybus import BusDataMessage
from anybus._wire import WireCodec
from anybus.postgres import PostgresBus, schema_sql
from anybus.postgres._schema import SCHEMA_VERSION
from anybus.testing import RecordingSubscriber

from .postgres_roles import admin, admin_script, dropped_schema, dsn_as, new_role
from .postgres_support import SHARED_DSN, shared_postgres_dsn, unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 20
V4_SQL = (Path(__file__).parent / "data" / "schema_v4.sql").read_text()
V5_SQL = (Path(__file__).parent / "data" / "schema_v5.sql").read_text()
#: A bus of version 4 that goes on running while the schema is updated under it.
OLD_SENDER = "old-bus/0001"


@dataclass(frozen=True)
class Old:
    schema: str
    owner: str
    user: str  # granted the use of buses by version 4's SQL, never since
    channel: str

    def call(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """One statement as the granted role, with the schema's name for ``{s}``."""
        with psycopg.connect(dsn_as(self.user), autocommit=True) as conn:
            return conn.execute(query.format(s=self.schema), params).fetchall()

    def publish_as_v4(self, seq: int) -> tuple[BusDataMessage, int]:
        """Publish as a bus of version 4 does (the four-argument ``publish``): the message,
        and how many rows were stored."""
        message = BusDataMessage(source=f"old-{seq}")
        body = WireCodec().encode(message, sender=OLD_SENDER, seq=seq)
        rows = self.call(
            "SELECT {s}.publish(%s, %s, %s::bigint[], %s::bytea[])",
            [self.channel, OLD_SENDER, [seq], [body]],
        )
        return message, rows[0][0]

    def ids(self) -> list[tuple[int, str, int]]:
        """The stored rows of the channel: (id, sender, seq), in id order."""
        rows = admin(
            f"SELECT id, sender, seq FROM {self.schema}.messages WHERE channel = %s ORDER BY id",
            [self.channel],
        )
        return [(row[0], row[1], row[2]) for row in rows]


@pytest.fixture
def old() -> Iterator[Old]:
    """A version 4 schema owned by a role no bus logs in as, granted to another."""
    shared_postgres_dsn()  # skips (fails under CI) without a server
    with (
        new_role("anybus_v4owner", login=False) as owner,
        new_role("anybus_v4user") as user,
        dropped_schema() as schema,
    ):
        script = V4_SQL.replace("v4schema", schema).replace("v4owner", owner)
        admin_script(script.replace("v4user", user))
        assert admin(f"SELECT {schema}.schema_version()") == [(4,)]
        yield Old(schema, owner, user, unique_channel())


@pytest.mark.parametrize("how", ["printed SQL", "a bus that may"])
async def test_a_version_4_schema_is_updated_in_place_and_nothing_stored_is_lost(
    old: Old, how: str
) -> None:
    # Under version 4: a consumer that will resume, and two messages it has not read.
    position = old.call(
        "SELECT o_position FROM {s}.attach(%s, %s, %s, %s::interval)",
        [old.channel, "resumer", "resumer/old", "10 s"],
    )[0][0]
    old.call("SELECT {s}.ack(%s, %s, %s, %s, true)", [old.channel, "resumer", "resumer/old", 0])
    before = [old.publish_as_v4(seq) for seq in (1, 2)]
    assert [stored for _, stored in before] == [1, 1]

    if how == "printed SQL":  # a DBA: `anybus postgres schema | psql`, no --owner, no --grant
        admin_script(schema_sql(old.schema))
    else:  # the superuser's bus, which may update it, on a channel of its own
        async with PostgresBus(SHARED_DSN, channel=unique_channel(), schema=old.schema):
            pass
    assert admin(f"SELECT {old.schema}.schema_version()") == [(SCHEMA_VERSION,)]
    # Everything belongs to the owner still, what the update added included (the functions
    # run with their owner's rights, and call each other).
    owners = admin(
        "SELECT DISTINCT pg_get_userbyid(p.proowner)::text FROM pg_proc AS p "
        "WHERE p.pronamespace = %s::regnamespace "
        "UNION SELECT DISTINCT pg_get_userbyid(c.relowner)::text FROM pg_class AS c "
        "WHERE c.relnamespace = %s::regnamespace",
        [old.schema, old.schema],
    )
    assert owners == [(old.owner,)]
    # A version 4 bus still running: its publish still stores, once, after what is there.
    updated, stored = old.publish_as_v4(3)
    assert stored == 1
    assert old.publish_as_v4(3)[1] == 0  # a retried batch stores nothing twice

    # A bus of this version, as the role version 4 granted (the update granted it the new
    # functions too), resumes the old consumer and gets everything stored before.
    recorder = RecordingSubscriber("r")
    resumed = PostgresBus(
        dsn_as(old.user), channel=old.channel, name="resumer", schema=old.schema,
        create_schema=False,
    )  # fmt: skip
    await resumed.subscribe(recorder)
    async with resumed as bus:
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for_count(3)
        await bus.send(new := BusDataMessage(source="new"))  # the new publish (and local)
        after, stored = old.publish_as_v4(4)
        assert stored == 1
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for_count(5)
            await bus.wait_idle()
        statistics = bus.transport_statistics()
    expected = [m for m, _ in before] + [updated, new, after]
    assert [m.id for m in recorder.messages] == [m.id for m in expected]
    assert (statistics.gaps, statistics.missed, statistics.duplicates) == (0, 0, 0)
    # Ids went on after version 4's without a hole, whoever published.
    rows = old.ids()
    assert [row[0] for row in rows] == list(range(position + 1, position + 6))
    assert [(sender, seq) for _, sender, seq in rows if sender == OLD_SENDER] == [
        (OLD_SENDER, seq) for seq in (1, 2, 3, 4)
    ]
    # It stopped with everything acknowledged: the next run of the name gets nothing again.
    acknowledged = admin(
        f"SELECT position FROM {old.schema}.consumers WHERE channel = %s AND name = %s",
        [old.channel, "resumer"],
    )
    assert acknowledged == [(rows[-1][0],)]


def test_a_role_that_is_not_the_owner_cannot_update_it_and_changes_nothing(old: Old) -> None:
    # Even one that may create schemas: the update would run as the owner, which it may not
    # become. It is refused before it changes anything.
    database = admin("SELECT current_database()::text")[0][0]
    grant = sql.SQL("GRANT CREATE ON DATABASE {} TO {}")
    admin(grant.format(sql.Identifier(database), sql.Identifier(old.user)))
    with (
        psycopg.connect(dsn_as(old.user), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to set role"),
    ):
        conn.execute(schema_sql(old.schema).encode())
    assert admin(f"SELECT {old.schema}.schema_version()") == [(4,)]
    assert old.publish_as_v4(1)[1] == 1


async def test_a_version_5_schema_gets_its_secret_and_its_granted_roles_the_names() -> None:
    shared_postgres_dsn()  # skips (fails under CI) without a server
    channel = unique_channel()
    with (
        new_role("anybus_v5owner", login=False) as owner,
        new_role("anybus_v5user") as user,
        new_role("anybus_defaulted") as defaulted,
        dropped_schema() as schema,
    ):
        script = V5_SQL.replace("v5schema", schema).replace("v5owner", owner)
        admin_script(script.replace("v5user", user))
        assert admin(f"SELECT {schema}.schema_version()") == [(5,)]
        # A role the owner's default privileges give what version 6 adds, and nothing else.
        ident = sql.Identifier(defaulted)
        admin(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident))
        default = (
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT EXECUTE ON FUNCTIONS TO {}"
        )
        admin(sql.SQL(default).format(sql.Identifier(owner), sql.Identifier(schema), ident))
        admin_script(schema_sql(schema))  # a DBA: no --owner, no --grant
        may = "SELECT has_function_privilege(%s, %s, 'EXECUTE')"
        for function in ("listen(text)", "notify_name(text)"):
            # Not given by default privileges: only to the roles that may publish.
            assert admin(may, [defaulted, f"{schema}.{function}"]) == [(False,)]
            assert admin(may, [user, f"{schema}.{function}"]) == [(function == "listen(text)",)]
        assert admin(f"SELECT {schema}.schema_version()") == [(SCHEMA_VERSION,)]
        secret = admin(f"SELECT value FROM {schema}.secret")
        admin_script(schema_sql(schema))  # applied again, it keeps its secret
        assert admin(f"SELECT value FROM {schema}.secret") == secret
        owners = admin(
            "SELECT pg_get_userbyid(c.relowner)::text FROM pg_class AS c "
            "WHERE c.oid = %s::regclass",
            [f"{schema}.secret"],
        )
        assert owners == [(owner,)]
        with psycopg.connect(dsn_as(user), autocommit=True) as conn:
            # The role version 5 granted may listen, and learns neither the secret nor a
            # name but by listening.
            conn.execute(f"SELECT {schema}.listen(%s)", [channel])
            [(name,)] = conn.execute("SELECT pg_listening_channels()").fetchall()
            assert name.startswith(f"{schema}_")
            assert name == admin(f"SELECT {schema}.notify_name(%s)", [channel])[0][0]
            for query in (
                f"SELECT value FROM {schema}.secret",
                f"SELECT {schema}.notify_name('c')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(query)
        # Buses of this version, as that role, carry messages to each other.
        recorder = RecordingSubscriber("r")
        options: dict[str, Any] = {"channel": channel, "schema": schema, "create_schema": False}
        async with (
            PostgresBus(dsn_as(user), name="receiver", **options) as receiver,
            PostgresBus(dsn_as(user), name="sender", **options) as sender,
        ):
            await receiver.subscribe(recorder)
            await sender.send(message := BusDataMessage(source="sender"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for(lambda messages: message in messages)
