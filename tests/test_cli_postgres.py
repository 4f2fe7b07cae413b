"""``anybus postgres schema``: the SQL it prints, applied with psql (or with ``--apply``), makes
a schema that granted roles use with ``create_schema=False``; bad names are refused, naming
the option; a failed ``--apply`` is one line and changes nothing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest

pytest.importorskip("click")
pytest.importorskip("psycopg")

from click.testing import CliRunner, Result

from anybus import BusDataMessage
from anybus._cli import cli
from anybus.postgres import PostgresBus
from anybus.postgres._client import describe
from anybus.postgres._schema import SCHEMA_VERSION
from anybus.testing import RecordingSubscriber

from .postgres_roles import admin, dropped_schema, dsn_as, new_role
from .postgres_support import SHARED_DSN, pg_bin, shared_postgres_dsn, unique_channel
from .redis_support import free_port

TIMEOUT = 20
WHERE = describe(SHARED_DSN)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="anybus")


def psql(script: str) -> subprocess.CompletedProcess[str]:
    """Apply ``script`` as a DBA would: psql as the superuser, stopping at the first error."""
    tool = shutil.which("psql") or pg_bin("psql")  # skips (fails under CI) without it
    return subprocess.run(
        [tool, "-X", "-q", "-v", "ON_ERROR_STOP=1", SHARED_DSN],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Applied:
    schema: str
    owner: str
    alice: str


@pytest.fixture
def printed() -> Iterator[Applied]:
    """A schema printed by the command with an owner and a grant, applied twice with psql."""
    shared_postgres_dsn()
    with (
        new_role("anybus_owner", login=False) as owner,
        new_role("anybus_alice") as alice,
        dropped_schema() as schema,
    ):
        result = invoke(
            "postgres", "schema", "--schema", schema, "--owner", owner, "--grant", alice
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"-- anybus schema {SCHEMA_VERSION} in {schema}:")
        for _ in range(2):  # applying it again changes nothing, and fails on nothing
            applied = psql(result.output)
            assert applied.returncode == 0, applied.stderr
        yield Applied(schema, owner, alice)


async def exchange(dsn: str, schema: str) -> None:
    """Two buses on ``dsn`` (which may not create the schema) hear each other."""
    channel, recorder = unique_channel(), RecordingSubscriber("r")

    def bus(name: str) -> PostgresBus:
        return PostgresBus(dsn, channel=channel, name=name, schema=schema, create_schema=False)

    async with bus("a") as a, bus("b") as b:
        await b.subscribe(recorder)
        await a.send(message := BusDataMessage(source="a"))
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for(lambda seen: message in seen)


@pytest.mark.anyio
async def test_the_printed_sql_applied_with_psql_makes_a_schema_a_granted_role_uses(
    printed: Applied,
) -> None:
    await exchange(dsn_as(printed.alice), printed.schema)
    s = printed.schema
    owners = admin(
        "SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s "
        "UNION SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
        "WHERE relnamespace = %s::regnamespace "
        "UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc "
        "WHERE pronamespace = %s::regnamespace",
        [s, s, s],
    )
    assert owners == [(printed.owner,)]  # everything is the owner's, and the functions
    definers = admin(
        "SELECT bool_and(prosecdef), "
        "bool_and(proconfig = ARRAY['search_path=pg_catalog, pg_temp']) FROM pg_proc "
        "WHERE pronamespace = %s::regnamespace AND proname <> 'schema_version'",
        [s],
    )
    assert definers == [(True, True)]  # ... run with its rights, on a pinned search_path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_apply_creates_the_schema_and_grants_in_one_go(backend: str) -> None:
    shared_postgres_dsn()
    with new_role("anybus_alice") as alice, dropped_schema() as schema:
        result = invoke(
            "--backend", backend, "postgres", "schema", "--schema", schema,
            "--grant", alice, "--apply", SHARED_DSN,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"applied the anybus schema {schema!r} (version {SCHEMA_VERSION}) at {WHERE}\n"
            f"granted the use of the anybus schema {schema!r} at {WHERE} to {alice}\n"
        )
        anyio.run(exchange, dsn_as(alice), schema, backend=backend)


def test_grants_only_lets_one_more_role_use_a_schema_that_exists(printed: Applied) -> None:
    with new_role("anybus_bob") as bob:
        shown = invoke(
            "postgres", "schema", "--schema", printed.schema, "--grant", bob, "--grants-only"
        )
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert (lines[0], lines[-1]) == ("BEGIN;", "COMMIT;")
        assert all(line.startswith(("GRANT", "    ")) for line in lines[1:-1])
        result = invoke(
            "postgres", "schema", "--schema", printed.schema, "--grant", bob,
            "--grants-only", "--apply", SHARED_DSN,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"granted the use of the anybus schema {printed.schema!r} at {WHERE} to {bob}\n"
        )
        anyio.run(exchange, dsn_as(bob), printed.schema)


@pytest.mark.parametrize(
    ("args", "option", "complaint"),
    [
        (["--schema", "Bad"], "--schema", "schema must be a lower-case SQL identifier"),
        (["--schema", "a;drop schema x"], "--schema", "got 'a;drop schema x'"),
        (["--schema", "s" * 31], "--schema", "at most 30 characters"),
        (["--schema", "public"], "--schema", "schema cannot be public"),
        (["--schema", "pg_catalog"], "--schema", "start with pg_"),
        (["--schema", "user"], "--schema", "schema cannot be an SQL key word, got 'user'"),
        (["--grant", "two words"], "--grant", "role must be a role name"),
        (["--grant", 'x"; drop role y; --'], "--grant", "role must be a role name"),
        (["--grant", "ok", "--grant", "public"], "--grant", "not public"),
        (["--grant", "PUBLIC"], "--grant", "got 'PUBLIC'"),
        (["--owner", "pg_read_all_data"], "--owner", "owner must name one role"),
        (["--owner", ""], "--owner", "owner must be a role name"),
    ],
)
def test_a_bad_name_is_refused_naming_the_option(
    args: list[str], option: str, complaint: str
) -> None:
    result = invoke("postgres", "schema", *args)
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert error.startswith(f"Error: Invalid value for '{option}': "), error
    assert complaint in error


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--grants-only"], "--grants-only needs at least one --grant ROLE"),
        (["--grants-only", "--grant", "a", "--owner", "b"], "--owner makes no sense with"),
        (["--connect-timeout", "0", "--apply", "x"], "--connect-timeout"),
    ],
)
def test_options_that_do_not_go_together_are_refused(args: list[str], complaint: str) -> None:
    result = invoke("postgres", "schema", *args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output


def test_apply_to_a_server_that_does_not_answer_is_one_line() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    result = invoke("postgres", "schema", "--apply", dsn, "--connect-timeout", "1")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: postgres at {describe(dsn)} is unreachable: ")
    assert len(result.output.splitlines()) == 1


def test_apply_as_a_role_that_may_not_says_who_may_and_changes_nothing() -> None:
    shared_postgres_dsn()
    with new_role("anybus_alice") as alice, dropped_schema() as schema:
        result = invoke("postgres", "schema", "--schema", schema, "--apply", dsn_as(alice))
        assert result.exit_code == 1
        assert result.output == (
            f"Error: postgres at {WHERE} refused a statement: permission denied for database "
            f"{WHERE.rpartition('/')[2]}: apply it as a role that may (a DBA), or print the SQL "
            f"without --apply for one\n"
        )
        assert admin("SELECT to_regnamespace(%s)", [schema]) == [(None,)]


def test_a_grant_that_fails_leaves_no_schema_behind() -> None:
    shared_postgres_dsn()
    with dropped_schema() as schema:
        missing = "anybus_nobody_0"
        result = invoke(
            "postgres", "schema", "--schema", schema, "--grant", missing, "--apply", SHARED_DSN
        )
        assert result.exit_code == 1
        assert result.output == (
            f'Error: postgres at {WHERE} refused a statement: role "{missing}" does not '
            f"exist: nothing was changed\n"
        )
        assert admin("SELECT to_regnamespace(%s)", [schema]) == [(None,)]


def test_apply_with_a_dsn_libpq_cannot_parse_is_a_usage_error() -> None:
    result = invoke("postgres", "schema", "--apply", "not a dsn")
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: Invalid value for --apply: dsn is not a libpq connection")
    assert "write it as 'postgresql://user@host:5432/dbname'" in error
