"""The text of anybus's schema: the tables and the functions, as templates.

:mod:`anybus.postgres._schema` fills them in (and says what they guarantee). Placeholders:
``{s}`` the schema, ``{version}``, ``{owner_clause}`` (the named owner's, or empty),
``{set_role}`` (the switch to the named owner, or the existing schema's), the SQLSTATEs,
``{max_batch}``, ``{carry_text}``, ``{grants}`` (or nothing). What it revokes and grants
is :mod:`anybus.postgres._schema_grants`'s.
"""

from __future__ import annotations

from ._schema_grants import GRANT, PRIVILEGES

__all__ = ["GRANT", "SCHEMA"]


SCHEMA = (
    """\
-- anybus schema {version} in {s}: apply as a role that may create a schema in this database,
-- and not as a role that buses log in as (the owner can read every channel). Applying it
-- again, or over an older version, updates it in place. Buses call the functions below;
-- the tables are the owner's alone.
BEGIN;
DO $lock$ BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('anybus schema {s}', 0));
END $lock$;

CREATE SCHEMA IF NOT EXISTS {s}{owner_clause};
{set_role}REVOKE ALL ON SCHEMA {s} FROM PUBLIC;

-- One row a channel: the last message id housekeeping saw when it deleted rows (publishing
-- continues after both the newest row and this, so no id is given out twice).
CREATE TABLE IF NOT EXISTS {s}.channels (
    channel text PRIMARY KEY,
    last_id bigint NOT NULL DEFAULT 0
);

-- One row a message. Sequence numbers are unique per publishing role and sender, so that a
-- retried batch stores nothing twice, and no role can take another role's numbers.
CREATE TABLE IF NOT EXISTS {s}.messages (
    channel text NOT NULL,
    id bigint NOT NULL,
    sender text NOT NULL,
    seq bigint NOT NULL,
    body bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    publisher name NOT NULL DEFAULT session_user,
    PRIMARY KEY (channel, id)
);

-- One row a consumer (a bus instance's name on a channel): the role that made it, the last
-- id it acknowledged, its lease, and its role's housekeeping policy on the channel.
CREATE TABLE IF NOT EXISTS {s}.consumers (
    channel text NOT NULL,
    name text NOT NULL,
    owner name NOT NULL,
    position bigint NOT NULL,
    holder text NOT NULL,
    lease interval NOT NULL,
    lease_until timestamptz NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    max_len bigint NOT NULL DEFAULT 100000,
    retention interval NOT NULL DEFAULT '1 day',
    PRIMARY KEY (channel, name)
);

-- One row a channel housekept: its row lock lets one bus at a time do it.
CREATE TABLE IF NOT EXISTS {s}.housekeeping (
    channel text PRIMARY KEY,
    done_at timestamptz
);

-- One row: the schema's secret, which names each channel's notifications (from version 6),
-- so that only a role granted the functions can listen to a channel's, or send one like them.
CREATE TABLE IF NOT EXISTS {s}.secret (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    value text NOT NULL
);
INSERT INTO {s}.secret (value)
VALUES (pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text)
ON CONFLICT DO NOTHING;

-- From version 1 (each a no-op on a new schema).
ALTER TABLE {s}.messages ADD COLUMN IF NOT EXISTS publisher name NOT NULL DEFAULT session_user;
ALTER TABLE {s}.consumers ADD COLUMN IF NOT EXISTS max_len bigint NOT NULL DEFAULT 100000;
ALTER TABLE {s}.consumers ADD COLUMN IF NOT EXISTS retention interval NOT NULL DEFAULT '1 day';
DROP INDEX IF EXISTS {s}.messages_sender_seq;
CREATE UNIQUE INDEX IF NOT EXISTS messages_publisher_sender_seq
    ON {s}.messages (channel, publisher, sender, seq);

CREATE OR REPLACE FUNCTION {s}.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT {version}';

-- The name of p_channel's notifications: the schema's name and a hash of its secret and the
-- channel (version 5's hashed the channel alone). For listen() (granted to nobody).
CREATE OR REPLACE FUNCTION {s}.notify_name(p_channel text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT '{s}_' || left(encode(sha256(convert_to(k.value || ' ' || p_channel, 'UTF8')),
        'hex'), 32)
    FROM {s}.secret AS k
$$;

-- LISTEN to p_channel's notifications on this session (from the end of the calling
-- transaction: at once in autocommit). The name is in no statement's text, which
-- pg_stat_activity would show to the role's other sessions and to pg_read_all_stats, nor
-- in an error's context (a LISTEN refused: on a standby, say), which the log would keep.
CREATE OR REPLACE FUNCTION {s}.listen(p_channel text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('LISTEN %I', {s}.notify_name(p_channel));
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM;
END
$$;

-- Store a batch of one sender's messages, in order: o_stored of them were new, with the ids
-- o_last - o_stored + 1 to o_last. A sender numbers its messages in increasing order and
-- stores them in that order, so the new ones are those numbered above its highest stored
-- number: a retried batch stores nothing twice. That is one probe of the unique index,
-- however many rows the table keeps. Ids are given out under the channel's publishing lock
-- (a transaction-level advisory lock, held to the commit), so they have no holes and become
-- visible in order. The notification names the sender (hashed: a name may be long), whose
-- reader need not wake for its own rows; when the new bodies come to at most p_carry bytes
-- it carries them too, as "<sender hash> <first id> <body in hex> <body in hex> ...", so
-- that a reader may take them without reading the table.
CREATE OR REPLACE FUNCTION {s}.publish(
    p_channel text, p_sender text, p_seqs bigint[], p_bodies bytea[], p_carry integer,
    OUT o_stored integer, OUT o_last bigint
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last bigint;
    v_high bigint;
    v_size bigint;
    v_text text;
    v_secret text;
BEGIN
    IF cardinality(p_seqs) IS DISTINCT FROM cardinality(p_bodies) THEN
        RAISE EXCEPTION 'publish: p_seqs and p_bodies must be arrays of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_carry IS NULL OR p_carry < 0 THEN
        RAISE EXCEPTION 'publish: p_carry cannot be negative, got %', p_carry
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'publish: needs read committed (each statement sees what committed '
            'before it), got %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('anybus publish {s} ' || p_channel, 0));
    -- Ids continue after the newest row (however it was written) and after the last id
    -- housekeeping deleted: one snapshot, which housekeeping's deletion and its record of
    -- the last id reach together.
    SELECT greatest(
        (SELECT max(m.id) FROM {s}.messages AS m WHERE m.channel = p_channel),
        (SELECT c.last_id FROM {s}.channels AS c WHERE c.channel = p_channel), 0), k.value
    INTO v_last, v_secret FROM {s}.secret AS k;
    -- Under the channel's lock: no other batch of this sender is being stored meanwhile.
    SELECT m.seq INTO v_high FROM {s}.messages AS m
    WHERE m.channel = p_channel AND m.publisher = session_user AND m.sender = p_sender
    ORDER BY m.seq DESC LIMIT 1;
    IF cardinality(p_seqs) = 1 THEN
        -- One message (a send to an idle bus: the latency-bound case): what the statements
        -- below do for a batch, as one INSERT and plain expressions (from version 7; a
        -- fifth less time on the server, and 3-4% off a W8-latency round trip).
        o_stored := 0;
        IF v_high IS NULL OR p_seqs[1] > v_high THEN
            INSERT INTO {s}.messages (channel, id, publisher, sender, seq, body)
            VALUES (p_channel, v_last + 1, session_user, p_sender, p_seqs[1], p_bodies[1]);
            o_stored := 1;
            IF p_carry > 0 THEN
                v_size := octet_length(p_bodies[1]);
                IF v_size <= p_carry THEN
                    v_text := encode(p_bodies[1], 'hex');
                END IF;
            END IF;
        END IF;
    ELSE
        INSERT INTO {s}.messages (channel, id, publisher, sender, seq, body)
        SELECT p_channel, v_last + row_number() OVER (ORDER BY t.ord), session_user,
               p_sender, t.seq, t.body
        FROM unnest(p_seqs, p_bodies) WITH ORDINALITY AS t(seq, body, ord)
        WHERE v_high IS NULL OR t.seq > v_high
        ORDER BY t.ord;
        GET DIAGNOSTICS o_stored = ROW_COUNT;
        IF o_stored > 0 AND p_carry > 0 THEN
            SELECT sum(octet_length(t.body)) INTO v_size
            FROM unnest(p_seqs, p_bodies) AS t(seq, body)
            WHERE v_high IS NULL OR t.seq > v_high;
            IF v_size <= p_carry THEN
                SELECT string_agg(encode(t.body, 'hex'), ' ' ORDER BY t.ord) INTO v_text
                FROM unnest(p_seqs, p_bodies) WITH ORDINALITY AS t(seq, body, ord)
                WHERE v_high IS NULL OR t.seq > v_high;
            END IF;
        END IF;
    END IF;
    o_last := v_last + o_stored;
    IF o_stored > 0 THEN
        -- On the channel's secret name, as notify_name() gives it (written out here, with
        -- the secret read above: a call per publish would cost a statement); a payload
        -- must stay under 8000 bytes.
        PERFORM pg_notify('{s}_' || left(encode(sha256(convert_to(
            v_secret || ' ' || p_channel, 'UTF8')), 'hex'), 32), md5(p_sender) || CASE
            WHEN v_size <= p_carry AND octet_length(v_text) <= {carry_text}
            THEN ' ' || (v_last + 1)::text || ' ' || v_text ELSE '' END);
    END IF;
END
$$;

-- Version 4's publish, for its buses still running while the schema is updated.
CREATE OR REPLACE FUNCTION {s}.publish(
    p_channel text, p_sender text, p_seqs bigint[], p_bodies bytea[]
) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.o_stored FROM {s}.publish(p_channel, p_sender, p_seqs, p_bodies, 0) AS p
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
    IF p_lease IS NULL OR p_lease <= interval '0' THEN
        RAISE EXCEPTION 'attach: p_lease must be positive, got %', p_lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    o_last := greatest(
        (SELECT max(m.id) FROM {s}.messages AS m WHERE m.channel = p_channel),
        (SELECT c.last_id FROM {s}.channels AS c WHERE c.channel = p_channel), 0);
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

-- The consumer's row, checked: it exists, belongs to the calling role, and p_holder holds
-- it. Called by read() and ack() only (granted to nobody).
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

-- Acknowledge up to p_ack (if not null), renew the lease, and return up to p_limit (at most
-- {max_batch}) messages after p_after and after what was acknowledged, stopping before
-- p_max_bytes of bodies (always at least one).
CREATE OR REPLACE FUNCTION {s}.read(
    p_channel text, p_name text, p_holder text, p_ack bigint, p_after bigint,
    p_limit integer, p_max_bytes bigint
) RETURNS TABLE (id bigint, sender text, body bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r {s}.consumers%ROWTYPE;
    v_after bigint;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_max_bytes IS NULL OR p_max_bytes < 1
            OR p_after < 0 OR p_ack < 0 THEN
        RAISE EXCEPTION 'read: p_limit and p_max_bytes must be at least 1, p_after and p_ack '
            'not negative; got %, %, %, %', p_limit, p_max_bytes, p_after, p_ack
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
        LIMIT least(p_limit, {max_batch})
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
    IF p_ack < 0 THEN
        RAISE EXCEPTION 'ack: p_ack cannot be negative, got %', p_ack
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := {s}.held(p_channel, p_name, p_holder);
    UPDATE {s}.consumers AS k
    SET position = greatest(r.position, coalesce(p_ack, r.position)),
        lease_until = CASE WHEN p_release THEN now() ELSE now() + r.lease END,
        seen_at = now()
    WHERE k.channel = p_channel AND k.name = p_name;
END
$$;

-- Record p_retention and p_max_len (if not null) as the calling role's policy for its own
-- consumers on p_channel; then, unless another bus is at it, remove the consumers not seen
-- for their retention, and the messages every consumer acknowledged or lies more than its
-- max_len behind (a slow reader's loss, which it reports as missed). Waits for no lock;
-- returns what it removed.
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
    IF p_retention <= interval '0' OR p_max_len < 1 THEN
        RAISE EXCEPTION 'housekeep: p_retention must be positive and p_max_len at least 1; '
            'got %, %', p_retention, p_max_len USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE {s}.consumers AS k
    SET retention = coalesce(p_retention, k.retention), max_len = coalesce(p_max_len, k.max_len)
    WHERE (k.channel, k.name) IN (
        SELECT j.channel, j.name FROM {s}.consumers AS j
        WHERE j.channel = p_channel AND j.owner = session_user
          AND (j.retention, j.max_len) IS DISTINCT FROM
              (coalesce(p_retention, j.retention), coalesce(p_max_len, j.max_len))
        FOR UPDATE SKIP LOCKED
    );
    INSERT INTO {s}.housekeeping AS h (channel) VALUES (p_channel) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.housekeeping AS h WHERE h.channel = p_channel FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;  -- another bus is at it
    END IF;
    UPDATE {s}.housekeeping AS h SET done_at = now() WHERE h.channel = p_channel;
    DELETE FROM {s}.consumers AS k
    WHERE (k.channel, k.name) IN (
        SELECT j.channel, j.name FROM {s}.consumers AS j
        WHERE j.channel = p_channel AND j.seen_at < now() - j.retention
          AND j.lease_until < now()
        FOR UPDATE SKIP LOCKED
    );
    GET DIAGNOSTICS o_expired = ROW_COUNT;
    v_last := greatest(
        (SELECT max(m.id) FROM {s}.messages AS m WHERE m.channel = p_channel),
        (SELECT c.last_id FROM {s}.channels AS c WHERE c.channel = p_channel));
    IF v_last IS NULL THEN
        RETURN;
    END IF;
    SELECT coalesce(min(greatest(k.position, v_last - k.max_len)), v_last) INTO v_upto
    FROM {s}.consumers AS k WHERE k.channel = p_channel;
    -- Not beyond v_last: what was stored since is not in the last id recorded below.
    DELETE FROM {s}.messages AS m WHERE m.channel = p_channel AND m.id <= least(v_upto, v_last);
    GET DIAGNOSTICS o_deleted = ROW_COUNT;
    IF o_deleted > 0 THEN  -- publishing continues after the ids deleted
        INSERT INTO {s}.channels AS c (channel, last_id) VALUES (p_channel, v_last)
        ON CONFLICT (channel) DO UPDATE SET last_id = greatest(c.last_id, excluded.last_id);
    END IF;
END
$$;

"""
    + PRIVILEGES
    + """{grants}COMMIT;
"""
)
