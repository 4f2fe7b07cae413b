"""The privileges part of anybus's schema, as templates: what applying it revokes and grants
again on an update (the tables are the owner's alone), and the grant of one role.

:mod:`anybus.postgres._schema_sql` puts :data:`PRIVILEGES` at the end of its transaction;
the placeholders are its ``{s}``, and ``{role}`` in :data:`GRANT`.
"""

from __future__ import annotations

__all__ = ["GRANT", "PRIVILEGES"]

PRIVILEGES = """\
-- The tables are the owner's alone, held() is for read() and ack() only and notify_name()
-- for listen(), whatever default privileges (or version 1) granted on them; listen() is
-- granted again below, to the roles that may publish.
DO $revoke$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT 'TABLE ' || c.oid::regclass::text AS what, a.grantee
        FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
        WHERE c.relnamespace = '{s}'::regnamespace AND a.grantee <> c.relowner
        UNION
        SELECT DISTINCT 'FUNCTION ' || p.oid::regprocedure::text, a.grantee
        FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
        WHERE p.pronamespace = '{s}'::regnamespace
          AND p.proname IN ('held', 'notify_name', 'listen')
          AND a.grantee <> p.proowner
    LOOP
        -- CASCADE: with what the role granted on (WITH GRANT OPTION) to others.
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s CASCADE', g.what,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC'
            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END);
    END LOOP;
END
$revoke$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
-- The roles granted either publish keep publishing through version 5's (version 4 had the
-- first only), and may listen (version 6; revoked above from whoever else had it, say by
-- default privileges).
DO $publish$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc AS p,
            pg_catalog.aclexplode(p.proacl) AS a
        WHERE p.oid IN ('{s}.publish(text, text, bigint[], bytea[])'::regprocedure,
                        '{s}.publish(text, text, bigint[], bytea[], integer)'::regprocedure)
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION {s}.publish(text, text, bigint[], bytea[], integer), '
            '{s}.listen(text) TO %s',
            pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)));
    END LOOP;
END
$publish$;
"""

GRANT = """\
GRANT USAGE ON SCHEMA {s} TO {role};
GRANT EXECUTE ON FUNCTION {s}.schema_version(), {s}.publish(text, text, bigint[], bytea[]),
    {s}.publish(text, text, bigint[], bytea[], integer),
    {s}.attach(text, text, text, interval),
    {s}.read(text, text, text, bigint, bigint, integer, bigint),
    {s}.ack(text, text, text, bigint, boolean), {s}.housekeep(text, interval, bigint),
    {s}.listen(text)
    TO {role};
"""
