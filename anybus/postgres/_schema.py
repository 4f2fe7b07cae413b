"""The SQL anybus keeps in Postgres: tables, and the functions every bus calls.

Plain Postgres 13 or newer, no extension. Everything lives in one schema (``anybus`` by
default). Buses never touch the tables: they call the schema's functions, which run with the
rights of the schema's owner (``SECURITY DEFINER``) and check what the calling role may do.
So a role granted the functions (:func:`grant_sql`) can publish and receive on a channel whose
name it knows, and nothing else: it cannot read the tables, list the channels, or read, move
or take over another role's consumers. The owner may use the tables directly.

The tables:

* ``channels`` — one row a channel: the last message id given out. Publishing locks the row
  until commit, so ids are gapless and become visible in order; a reader that has seen id *n*
  knows that every id up to *n* is either visible to it or was deleted.
* ``messages`` — one row a message: channel, id, sender, the sender's sequence number (unique
  per sender, so that a retried publish stores nothing twice) and the encoded envelope.
* ``consumers`` — one row a bus instance name on a channel: the role that made it, the last id
  it acknowledged, and a lease (the holder's token and when it runs out), so that one name
  has one running instance.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from .._exceptions import TransportError

if TYPE_CHECKING:
    from ._client import PgConnection

__all__ = ["SCHEMA_VERSION", "check_schema_name", "ensure_schema", "grant_sql", "schema_sql"]

logger = logging.getLogger("anybus.postgres")

#: Bumped when the tables or the functions change incompatibly.
SCHEMA_VERSION = 1

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")

#: SQLSTATE codes the functions raise (class ``AB``: anybus's own).
NAME_IN_USE = "AB001"
LEASE_LOST = "AB002"
NOT_OWNER = "AB003"
#: The states after which trying again cannot help: the bus stops with the error.
FATAL_STATES = frozenset({NAME_IN_USE, LEASE_LOST, NOT_OWNER})


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case SQL identifier, else raise ValueError."""
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ValueError(
            f"schema must be a lower-case SQL identifier (letters, digits, _; at most 41 "
            f"characters), got {schema!r}"
        )
    return schema


_SCHEMA = """\
-- anybus schema {version}: apply as a role that may create a schema in this database.
-- Buses call the functions below; the tables are the schema owner's alone.
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('anybus schema {s}', 0));

CREATE SCHEMA IF NOT EXISTS {s};
REVOKE ALL ON SCHEMA {s} FROM PUBLIC;

CREATE TABLE IF NOT EXISTS {s}.channels (
    channel text PRIMARY KEY,
    last_id bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS {s}.messages (
    channel text NOT NULL,
    id bigint NOT NULL,
    sender text NOT NULL,
    seq bigint NOT NULL,
    body bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_seq ON {s}.messages (channel, sender, seq);

CREATE TABLE IF NOT EXISTS {s}.consumers (
    channel text NOT NULL,
    name text NOT NULL,
    owner name NOT NULL,
    position bigint NOT NULL,
    holder text NOT NULL,
    lease interval NOT NULL,
    lease_until timestamptz NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, name)
);
REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;

CREATE OR REPLACE FUNCTION {s}.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT {version}';

-- Store a batch of one sender's messages, in order; returns how many were new. A batch
-- retried after a lost answer stores nothing twice (sender and sequence number are unique).
CREATE OR REPLACE FUNCTION {s}.publish(
    p_channel text, p_sender text, p_seqs bigint[], p_bodies bytea[]
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last bigint;
    v_count integer;
BEGIN
    INSERT INTO {s}.channels AS c (channel) VALUES (p_channel) ON CONFLICT DO NOTHING;
    SELECT c.last_id INTO v_last FROM {s}.channels AS c WHERE c.channel = p_channel FOR UPDATE;
    -- Ids continue after any row written into the table by other means.
    v_last := greatest(v_last, coalesce(
        (SELECT max(m.id) FROM {s}.messages AS m WHERE m.channel = p_channel), 0));
    INSERT INTO {s}.messages (channel, id, sender, seq, body)
    SELECT p_channel, v_last + row_number() OVER (ORDER BY t.ord), p_sender, t.seq, t.body
    FROM unnest(p_seqs, p_bodies) WITH ORDINALITY AS t(seq, body, ord)
    WHERE NOT EXISTS (
        SELECT 1 FROM {s}.messages AS m
        WHERE m.channel = p_channel AND m.sender = p_sender AND m.seq = t.seq
    )
    ORDER BY t.ord;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        UPDATE {s}.channels AS c SET last_id = v_last + v_count WHERE c.channel = p_channel;
        PERFORM pg_notify('{s}_' || md5(p_channel), '');
    END IF;
    RETURN v_count;
END
$$;

-- Take (or resume) the consumer p_name on p_channel for the holder p_holder. A new name
-- starts after the last message; a known one where it last acknowledged. Refused while
-- another holder's lease runs, and when the name belongs to another role.
CREATE OR REPLACE FUNCTION {s}.attach(
    p_channel text, p_name text, p_holder text, p_lease interval,
    OUT o_position bigint, OUT o_first bigint, OUT o_last bigint, OUT o_created boolean
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r {s}.consumers%ROWTYPE;
BEGIN
    INSERT INTO {s}.channels AS c (channel) VALUES (p_channel) ON CONFLICT DO NOTHING;
    SELECT c.last_id INTO o_last FROM {s}.channels AS c WHERE c.channel = p_channel;
    INSERT INTO {s}.consumers AS k
        (channel, name, owner, position, holder, lease, lease_until)
    VALUES (p_channel, p_name, session_user, o_last, p_holder, p_lease, now() + p_lease)
    ON CONFLICT DO NOTHING;
    o_created := FOUND;
    SELECT * INTO r FROM {s}.consumers AS k
    WHERE k.channel = p_channel AND k.name = p_name FOR UPDATE;
    IF r.owner <> session_user THEN
        RAISE EXCEPTION 'the name % on this channel belongs to another role', p_name
            USING ERRCODE = '{not_owner}';
    END IF;
    IF r.holder <> p_holder AND r.lease_until > now() THEN
        RAISE EXCEPTION 'the name % is in use by another running instance', p_name
            USING ERRCODE = '{in_use}',
                  DETAIL = 'its lease runs out in '
                      || ceil(extract(epoch FROM r.lease_until - now()))::text || ' s';
    END IF;
    UPDATE {s}.consumers AS k
    SET holder = p_holder, lease = p_lease, lease_until = now() + p_lease, seen_at = now()
    WHERE k.channel = p_channel AND k.name = p_name;
    o_position := r.position;
    SELECT coalesce(min(m.id), o_last + 1) INTO o_first
    FROM {s}.messages AS m WHERE m.channel = p_channel;
END
$$;

-- The consumer's row, checked: it exists, belongs to the calling role, and p_holder holds it.
CREATE OR REPLACE FUNCTION {s}.held(p_channel text, p_name text, p_holder text)
RETURNS {s}.consumers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r {s}.consumers%ROWTYPE;
BEGIN
    SELECT * INTO r FROM {s}.consumers AS k WHERE k.channel = p_channel AND k.name = p_name;
    IF NOT FOUND OR r.owner <> session_user THEN
        RAISE EXCEPTION 'no consumer % of this role on this channel', p_name
            USING ERRCODE = '{not_owner}';
    END IF;
    IF r.holder <> p_holder THEN
        RAISE EXCEPTION 'the lease on % was taken over by another instance', p_name
            USING ERRCODE = '{lease_lost}';
    END IF;
    RETURN r;
END
$$;

-- Acknowledge up to p_ack (if not null), renew the lease, and return up to p_limit messages
-- after p_after (and after what was acknowledged), stopping before p_max_bytes of bodies
-- (always at least one).
CREATE OR REPLACE FUNCTION {s}.read(
    p_channel text, p_name text, p_holder text, p_ack bigint, p_after bigint,
    p_limit integer, p_max_bytes bigint
) RETURNS TABLE (id bigint, sender text, body bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r {s}.consumers%ROWTYPE;
    v_after bigint;
BEGIN
    r := {s}.held(p_channel, p_name, p_holder);
    -- Written only when there is something to acknowledge or half the lease has run out.
    IF (p_ack IS NOT NULL AND p_ack > r.position) OR r.lease_until < now() + r.lease / 2 THEN
        r.position := greatest(r.position, coalesce(p_ack, r.position));
        UPDATE {s}.consumers AS k
        SET position = r.position, lease_until = now() + r.lease, seen_at = now()
        WHERE k.channel = p_channel AND k.name = p_name;
    END IF;
    v_after := greatest(p_after, r.position);
    RETURN QUERY
    SELECT q.id, q.sender, q.body FROM (
        SELECT m.id, m.sender, m.body,
               sum(octet_length(m.body)) OVER (ORDER BY m.id) - octet_length(m.body) AS before
        FROM {s}.messages AS m
        WHERE m.channel = p_channel AND m.id > v_after
        ORDER BY m.id
        LIMIT p_limit
    ) AS q
    WHERE q.before < p_max_bytes
    ORDER BY q.id;
END
$$;

-- Acknowledge up to p_ack and renew the lease; with p_release, give the lease up.
CREATE OR REPLACE FUNCTION {s}.ack(
    p_channel text, p_name text, p_holder text, p_ack bigint, p_release boolean
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r {s}.consumers%ROWTYPE;
BEGIN
    r := {s}.held(p_channel, p_name, p_holder);
    UPDATE {s}.consumers AS k
    SET position = greatest(r.position, coalesce(p_ack, r.position)),
        lease_until = CASE WHEN p_release THEN now() ELSE now() + r.lease END,
        seen_at = now()
    WHERE k.channel = p_channel AND k.name = p_name;
END
$$;

-- Delete what every consumer acknowledged, and what lies more than p_max_len behind the
-- newest message (a slow reader's loss, which it reports as missed); remove consumers not
-- seen for p_retention. One bus at a time per channel does it; returns what it removed.
CREATE OR REPLACE FUNCTION {s}.housekeep(
    p_channel text, p_retention interval, p_max_len bigint,
    OUT o_deleted bigint, OUT o_expired bigint
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last bigint;
    v_upto bigint;
BEGIN
    o_deleted := 0;
    o_expired := 0;
    IF NOT pg_try_advisory_xact_lock(hashtextextended('anybus housekeep {s} ' || p_channel, 0))
    THEN
        RETURN;
    END IF;
    DELETE FROM {s}.consumers AS k
    WHERE k.channel = p_channel AND k.seen_at < now() - p_retention AND k.lease_until < now();
    GET DIAGNOSTICS o_expired = ROW_COUNT;
    SELECT c.last_id INTO v_last FROM {s}.channels AS c WHERE c.channel = p_channel;
    IF v_last IS NULL THEN
        RETURN;
    END IF;
    SELECT coalesce(min(k.position), v_last) INTO v_upto
    FROM {s}.consumers AS k WHERE k.channel = p_channel;
    v_upto := greatest(v_upto, v_last - p_max_len);
    DELETE FROM {s}.messages AS m WHERE m.channel = p_channel AND m.id <= v_upto;
    GET DIAGNOSTICS o_deleted = ROW_COUNT;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
COMMIT;
"""

_GRANT = """\
GRANT USAGE ON SCHEMA {s} TO {role};
GRANT EXECUTE ON FUNCTION {s}.schema_version(), {s}.publish(text, text, bigint[], bytea[]),
    {s}.attach(text, text, text, interval), {s}.held(text, text, text),
    {s}.read(text, text, text, bigint, bigint, integer, bigint),
    {s}.ack(text, text, text, bigint, boolean), {s}.housekeep(text, interval, bigint)
    TO {role};
"""

_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def schema_sql(schema: str = "anybus") -> str:
    """The SQL that creates (or updates) the schema, as one transaction a DBA can apply by
    hand (``anybus postgres schema | psql ...``). Applying it twice changes nothing."""
    return _SCHEMA.format(
        s=check_schema_name(schema),
        version=SCHEMA_VERSION,
        in_use=NAME_IN_USE,
        lease_lost=LEASE_LOST,
        not_owner=NOT_OWNER,
    )


def grant_sql(role: str, schema: str = "anybus") -> str:
    """The SQL that lets ``role`` use buses in ``schema`` (and nothing more: see the module
    docs)."""
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise ValueError(
            f"role must be a plain SQL role name (letters, digits, _ or $), got {role!r}"
        )
    return _GRANT.format(s=check_schema_name(schema), role=f'"{role}"')


async def ensure_schema(conn: PgConnection, schema: str, *, create: bool) -> None:
    """Make sure ``schema`` holds this anybus's schema; create it if missing and ``create``.

    Raises:
        TransportError: it is missing and may not (or cannot) be created, or it is of
            another version; the message says what to apply.
    """
    s = schema
    where = conn.where
    apply = f"`anybus postgres schema --schema {s} | psql ...`"
    rows = await conn.fetch("SELECT to_regprocedure(%s) IS NOT NULL", [f"{s}.schema_version()"])
    if not rows[0][0]:
        if not create:
            raise TransportError(
                f"the anybus schema {s!r} is missing from {where}: apply it with {apply} (or "
                f"pass create_schema=True)"
            )
        try:
            await conn.execute_script(schema_sql(s))
        except TransportError as exc:
            raise TransportError(
                f"the anybus schema {s!r} is missing from {where} and could not be created "
                f"({exc}): have a role that may create it apply {apply}"
            ) from exc
        logger.info("created the anybus schema %r in %s", s, where)
    version = (await conn.fetch(f"SELECT {s}.schema_version()", []))[0][0]
    if version != SCHEMA_VERSION:
        raise TransportError(
            f"the anybus schema {s!r} on {where} is version {version}; this anybus needs "
            f"version {SCHEMA_VERSION}: apply {apply}"
        )
