"""The SQL anybus keeps in Postgres, what it lets each role do, and the check a bus makes.

Plain Postgres 13 or newer, no extension. Everything lives in one schema (``anybus`` by
default; the text is in :mod:`anybus.postgres._schema_sql`). The tables:

* ``channels``: one row a channel, the last message id given out when housekeeping deleted
  every row that held one. Publishing takes the channel's lock (a transaction-level
  advisory lock, held to the commit) and continues after the newest row and that id, so
  ids are gapless and become visible in order; a reader that has seen id *n* knows that
  every id up to *n* is either visible to it or was deleted. The notification a publish
  sends carries the new messages when their bodies come to at most the ``p_carry`` bytes
  the bus asks for (:data:`CARRY_BYTES` with ``carry_messages=True``, the default, else 0:
  none), so that a reader can take them without reading the table; notifications are
  delivered in commit order, so in id order. They go out under a name of the channel's
  that no role can compute: a hash of the channel and the schema's secret, on which
  ``listen(channel)`` has the calling session listen (the name is in no statement's text).
* ``messages``: one row a message: channel, id, the publishing role, the sender, the
  sender's sequence number (unique per role and sender) and the encoded envelope. A sender
  numbers what it stores in increasing order and stores it in that order, so ``publish``
  stores only the numbers above the sender's highest stored one (one probe of the unique
  index): a retried publish stores nothing twice.
* ``consumers``: one row a bus instance name on a channel: the role that made it, the last
  id it acknowledged, a lease (the holder's token and when it runs out), so that one name has
  one running instance, and the role's housekeeping policy (``max_len``, ``retention``).
* ``housekeeping``: one row a channel, locked by the bus that housekeeps it.
* ``secret``: one row, a random secret made when the schema is created (version 6), from
  which each channel's notification name is hashed.

**Isolation.** Buses never touch the tables: they call the schema's functions, which run
with the rights of the schema's owner (``SECURITY DEFINER``, with ``search_path`` pinned to
``pg_catalog, pg_temp`` and every table named with its schema) and check what the calling
role may do. The calling role is the *login* role (``session_user``). A role granted the
functions (:func:`grant_sql`: usage of the schema and execute on its functions) can
publish and receive on a channel whose name it knows, and nothing else:

* it cannot read the tables (no privilege on them; applying the schema revokes whatever
  default privileges granted), so it cannot list channels, and no function returns a list;
* ``read``, ``ack`` and ``attach`` refuse a consumer name that another role made (SQLSTATE
  ``AB003``), so it can neither read, move nor take over another role's consumer; a new
  consumer starts after the newest message, so knowing a channel gives no history;
* its sequence numbers are its own: it cannot make another role's messages look like
  repeats;
* ``read`` reads only the channel of the consumer it checked; its limits are validated
  (``p_limit`` and ``p_max_bytes`` at least 1, at most :data:`MAX_READ_BATCH` messages a
  call, ``p_after`` and ``p_ack`` not negative; SQLSTATE ``22023`` otherwise), and an
  acknowledgement only ever moves the caller's own consumer forward.

**Housekeeping policy, decided here.** ``housekeep(channel, retention, max_len)`` takes the
policy from its caller, who may be hostile, so the caller's values apply to *its own role's
consumers* on the channel only: they are recorded on those rows, and housekeeping then
deletes what every consumer acknowledged or lies more than *that consumer's* ``max_len``
behind, and removes consumers not seen for *their own* ``retention``. No role can shorten
what another role's consumers keep; with a single role the result is the same as the
caller's policy applied to all. Values are validated (``retention`` positive, ``max_len`` at
least 1), not clamped. Housekeeping takes a row lock (``SKIP LOCKED``), not an advisory
lock, which any role of the database that knows the channel could hold. Publishing does take
an advisory lock (it writes nothing, where locking a row writes the row): holding it up is
no more than a role that knows the channel could do with a ``publish`` left open.

**What isolation does not cover.** Knowing a channel's name is the capability to use it: use
unguessable names for private channels. A role that knows a channel can fill it, stall its
publishing (a ``publish`` left open in a transaction, or the channel's advisory lock taken
by hand, holds the channel's lock), or keep its messages around (a consumer with a large
``max_len`` that never reads); storage quotas and monitoring are the DBA's. Postgres does
not check who may ``LISTEN`` or ``NOTIFY``, so the name a channel's notifications go out
under is a secret: a hash of the channel and the schema's secret, which only ``listen()``
uses, so that the name is in no statement's text (``pg_stat_activity`` shows statements to
the role's other sessions and to ``pg_read_all_stats``; an error's context neither). A
role learns it as the owner or a superuser, by listening (a granted role that knows the
channel, in whose session ``pg_listening_channels()`` shows it), or as a reader of
``pg_stat_statements`` where its ``track`` is ``all`` (before version 6 it was a hash of
the channel alone,
which any role of the database could compute, listen to and send look-alikes on). So a
granted role that knows a channel can, as well as read its
messages, send a notification that looks like a message carried for it. A reader takes a
carried message only as the next id it expects, decoded (and, with signing on, verified)
like a row, and new (not a repeat or a replay); so without signing, such a role can put a
message in place of another's (it can send any message as it is); with signing on it
cannot: the message is rejected, the row read from the table, and the notification counted
as rejected. Postgres
shows every role the catalogs (table names and sizes, the functions' text) and every
session's ``application_name`` (which holds the bus's consumer name, never the channel's);
statements' text and parameters are shown only to their own role and to
``pg_read_all_stats``. The schema's *owner* reads everything: apply the schema as, or for
(``owner=``), a role no bus logs in as, and start the buses with ``create_schema=False`` (a
bus that creates the schema owns it).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .._exceptions import TransportError
from ._keywords import KEYWORDS
from ._schema_sql import GRANT, SCHEMA

if TYPE_CHECKING:
    from ._client import PgConnection

__all__ = [
    "CARRY_BYTES",
    "FATAL_STATES",
    "LEASE_LOST",
    "MAX_READ_BATCH",
    "NAME_IN_USE",
    "NOT_OWNER",
    "OLDEST_USABLE_VERSION",
    "SCHEMA_VERSION",
    "check_role_name",
    "check_schema_name",
    "ensure_schema",
    "grant_sql",
    "schema_sql",
]

logger = logging.getLogger("anybus.postgres")

#: Bumped when the tables or the functions change; applying the schema updates an older one.
SCHEMA_VERSION = 7
#: The oldest version a bus runs on when its role may not update it (with a warning):
#: version 7 only made a lone message's ``publish`` cheaper.
OLDEST_USABLE_VERSION = 6

#: The most bytes of bodies a bus asks a publish to carry in its notification (a
#: notification's payload must stay under 8000 bytes, and bodies travel as hex).
CARRY_BYTES = 3_000
#: The longest text of bodies a notification carries, whatever the bus asks.
CARRY_TEXT = 7_900

#: The most messages one ``read`` call returns, whatever its ``p_limit``.
MAX_READ_BATCH = 10_000

#: SQLSTATE codes the functions raise (class ``AB``: anybus's own).
NAME_IN_USE = "AB001"
LEASE_LOST = "AB002"
NOT_OWNER = "AB003"
#: The states after which trying again cannot help: the bus stops with the error.
FATAL_STATES = frozenset({NAME_IN_USE, LEASE_LOST, NOT_OWNER})

#: The functions a bus calls (and a grant covers).
FUNCTIONS = ("ack", "attach", "housekeep", "listen", "publish", "read", "schema_version")

# At most 30 characters: a notification name "<schema>_<32 hex digits>" must fit
# in Postgres's 63-byte identifiers.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,29}")
_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_RESERVED_ROLES = frozenset({"public", "none", "current_user", "current_role", "session_user"})


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it can hold anybus's schema, else raise ValueError: a plain
    lower-case identifier of at most 30 characters, not a key word, not Postgres's own."""
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ValueError(
            f"schema must be a lower-case SQL identifier of at most 30 characters (letters, "
            f"digits and _, not starting with a digit), got {schema!r}"
        )
    if schema in KEYWORDS:
        raise ValueError(f"schema cannot be an SQL key word, got {schema!r}: choose another name")
    if schema in ("public", "information_schema") or schema.startswith("pg_"):
        raise ValueError(
            f"schema cannot be public, information_schema or start with pg_ (they are the "
            f"database's own), got {schema!r}: choose another name"
        )
    return schema


def check_role_name(role: str, parameter: str = "role") -> str:
    """Return ``role`` if it names a role plainly (it is used quoted, exactly as spelled),
    else raise ValueError naming ``parameter``."""
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise ValueError(
            f"{parameter} must be a role name of at most 63 characters (letters, digits, _ "
            f"and $, not starting with a digit or $), got {role!r}"
        )
    if role.lower() in _RESERVED_ROLES or role.lower().startswith("pg_"):
        raise ValueError(
            f"{parameter} must name one role, not public, none, current_user or a pg_ "
            f"role, got {role!r}"
        )
    return role


def schema_sql(
    schema: str = "anybus", *, owner: str | None = None, grant: Iterable[str] = ()
) -> str:
    """The SQL that creates the schema, or updates it in place, as one transaction a DBA can
    apply by hand (``anybus postgres schema | psql ...``). Applying it twice changes nothing.

    With ``owner``, the schema and everything in it belong to that role (the functions run
    with its rights), and the role applying it must be a member of ``owner``. Without it, a
    new schema belongs to the role applying it, and an existing one is updated as its
    owner (``SET LOCAL ROLE``), so that what an update adds belongs to the owner too: the
    login role applying it must be the owner, a member of it, or a superuser (and, in
    every case, may create schemas in the database). Each role in ``grant`` is
    granted the use of buses in it (:func:`grant_sql`), in the same transaction.

    Raises:
        ValueError: ``schema``, ``owner`` or a role is not a name anybus accepts (the
            message says why).
    """
    s = check_schema_name(schema)
    owner_clause = ""
    # Without an owner, it runs as the schema's owner if the schema exists (a superuser or a
    # member of the owner updating it): what it adds belongs with what is there, and the
    # functions, which run with their owner's rights, may call each other.
    set_role = _AS_OWNER.format(s=s)
    if owner is not None:
        quoted = f'"{check_role_name(owner, "owner")}"'
        owner_clause, set_role = f" AUTHORIZATION {quoted}", f"SET LOCAL ROLE {quoted};\n"
    roles = [grant] if isinstance(grant, str) else list(grant)
    grants = "".join(grant_sql(role, s) for role in roles)
    return SCHEMA.format(
        s=s,
        version=SCHEMA_VERSION,
        owner_clause=owner_clause,
        set_role=set_role,
        grants=grants,
        in_use=NAME_IN_USE,
        lease_lost=LEASE_LOST,
        not_owner=NOT_OWNER,
        max_batch=MAX_READ_BATCH,
        carry_text=CARRY_TEXT,
    )


_AS_OWNER = """\
DO $owner$ DECLARE v_owner name; BEGIN
    SELECT pg_catalog.pg_get_userbyid(n.nspowner) INTO v_owner
    FROM pg_catalog.pg_namespace AS n WHERE n.oid = '{s}'::regnamespace;
    IF v_owner <> current_user THEN
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', v_owner);
    END IF;
END $owner$;
"""


def grant_sql(role: str, schema: str = "anybus") -> str:
    """The SQL that lets ``role`` (exactly as spelled: it is quoted) use buses in ``schema``,
    and nothing more (see the module docs); applied by the schema's owner or a superuser.

    Raises:
        ValueError: ``role`` or ``schema`` is not a name anybus accepts.
    """
    return GRANT.format(s=check_schema_name(schema), role=f'"{check_role_name(role)}"')


def _run_on_older(s: str, where: str, version: int, why: str) -> None:
    logger.warning(
        "the anybus schema %r at %s is version %d and %s: buses run on it, but version %d "
        "stores a lone message with less work; have its owner apply %s (it updates the "
        "schema in place)",
        s,
        where,
        version,
        why,
        SCHEMA_VERSION,
        _command(s),
    )


def _command(schema: str, *options: str) -> str:
    parts = ["anybus", "postgres", "schema", "--schema", schema, *options]
    return f"`{shlex.join(parts)} | psql ...`"


_PROBE = """\
SELECT n.oid IS NOT NULL, session_user::text,
       coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
       ARRAY(SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = n.oid AND p.proname = ANY(%s::text[])),
       ARRAY(SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = n.oid AND p.proname = ANY(%s::text[])
               AND NOT has_function_privilege(p.oid, 'EXECUTE') ORDER BY 1)
FROM (SELECT to_regnamespace(%s::text) AS oid) AS n"""


async def _probe(conn: PgConnection, schema: str) -> tuple[Any, ...]:
    """(schema exists, the login role, it has usage, anybus's functions present, those it
    may not execute), read from the catalogs, which every role may read."""
    rows = await conn.fetch(_PROBE, [list(FUNCTIONS), list(FUNCTIONS), schema])
    return rows[0]


async def _apply(conn: PgConnection, script: str) -> None:
    try:
        await conn.execute_script(script)
    except TransportError:
        with suppress(TransportError):  # leave no failed transaction on the connection
            await conn.execute_script("ROLLBACK")
        raise


async def ensure_schema(conn: PgConnection, schema: str, *, create: bool) -> None:
    """Make sure ``schema`` holds this anybus's schema and the connection's role may use it;
    with ``create``, create it if it is missing, or update it if it is older.

    Cancelling it waits for the statement under way to end; the schema is then created (or
    updated) entirely or not at all: it is applied as one transaction.

    Raises:
        TransportError: it is missing or older and may not (or cannot) be created or
            updated, the role was not granted it, or it is newer than this anybus; the
            message says what to run.
    """
    s, where = schema, conn.where
    exists, role, usage, present, denied = await _probe(conn, s)
    with_grant = _command(s, "--grant", role)
    if "schema_version" not in present:
        what = (
            f"the schema {s!r} at {where} holds no anybus schema"
            if exists
            else f"the anybus schema {s!r} is missing from {where}"
        )
        if not create:
            raise TransportError(
                f"{what}: have a DBA apply it with {with_grant} (or let a role that may "
                f"create it start a bus with create_schema=True)"
            )
        try:
            await _apply(conn, schema_sql(s))
        except TransportError as exc:
            may_not = getattr(exc, "sqlstate", None) == "42501"
            raise TransportError(
                f"{what}, and role {role!r} {'may not' if may_not else 'could not'} create "
                f"it ({exc}): have a DBA apply it with {with_grant}"
            ) from exc
        logger.info("created the anybus schema %r in %s", s, where)
        exists, role, usage, present, denied = await _probe(conn, s)
    if not usage or denied:
        why = (
            "no usage of the schema"
            if not usage
            else ("no execute on " + ", ".join(f"{name}()" for name in denied))
        )
        raise TransportError(
            f"role {role!r} may not use the anybus schema {s!r} at {where} ({why}): have "
            f"its owner or a DBA grant it with {_command(s, '--grant', role, '--grants-only')}"
        )
    version = (await conn.fetch(f"SELECT {s}.schema_version()", []))[0][0]
    # Older, or this version with a function missing (applied in part, or dropped): apply.
    lacking = ", ".join(sorted(set(FUNCTIONS) - set(present)))
    incomplete = version == SCHEMA_VERSION and bool(lacking)
    usable = OLDEST_USABLE_VERSION <= version < SCHEMA_VERSION and not lacking
    if (version < SCHEMA_VERSION or incomplete) and create:
        try:
            await _apply(conn, schema_sql(s))
        except TransportError as exc:
            if usable:
                _run_on_older(s, where, version, f"role {role!r} could not update it ({exc})")
                return
            what = (
                f"lacks {lacking} and role {role!r} could not apply it again"
                if incomplete
                else f"is version {version} and role {role!r} could not update it to "
                f"version {SCHEMA_VERSION}"
            )
            raise TransportError(
                f"the anybus schema {s!r} at {where} {what} ({exc}): have its owner apply "
                f"{_command(s)} (it updates the schema in place)"
            ) from exc
        if incomplete:
            logger.warning(
                "completed the anybus schema %r in %s: it lacked %s (dropped by hand?)",
                s,
                where,
                lacking,
            )
        else:
            logger.info("updated the anybus schema %r in %s from version %d", s, where, version)
        version = (await conn.fetch(f"SELECT {s}.schema_version()", []))[0][0]
        present = (await _probe(conn, s))[3]
    if usable and version < SCHEMA_VERSION:
        _run_on_older(s, where, version, "the bus was told not to update it (create_schema=False)")
        return
    if version < SCHEMA_VERSION:
        raise TransportError(
            f"the anybus schema {s!r} at {where} is version {version}; this anybus needs "
            f"version {SCHEMA_VERSION}: have its owner apply {_command(s)} (it updates the "
            f"schema in place)"
        )
    if version > SCHEMA_VERSION:
        raise TransportError(
            f"the anybus schema {s!r} at {where} is version {version}, newer than this "
            f"anybus knows (version {SCHEMA_VERSION}): upgrade anybus"
        )
    missing = sorted(set(FUNCTIONS) - set(present))
    if missing:
        raise TransportError(
            f"the anybus schema {s!r} at {where} lacks {', '.join(missing)}: have its owner "
            f"apply {_command(s)} again"
        )
