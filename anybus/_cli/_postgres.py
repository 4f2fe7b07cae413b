"""``anybus postgres schema``: the SQL of the schema the Postgres buses use, printed for a DBA
to apply (``... | psql``), or applied to a database with ``--apply DSN``."""

from __future__ import annotations

from typing import Any

import click

from .._exceptions import TransportError
from ._common import Failure, Seconds, run

__all__ = ["postgres"]


def _schema_module() -> Any:
    """``anybus.postgres._schema``, or a failure naming the extra to install."""
    try:
        from ..postgres import _schema
    except ModuleNotFoundError:
        raise Failure(
            "this command needs postgres support: pip install 'anybus[postgres,cli]'"
        ) from None
    return _schema


def _checked(check: Any, value: str, option: str, *args: str) -> str:
    try:
        checked: str = check(value, *args)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return checked


@click.group()
def postgres() -> None:
    """The Postgres buses' schema (needs anybus[postgres])."""


@postgres.command()
@click.option(
    "--schema",
    "schema_name",
    metavar="NAME",
    default="anybus",
    show_default=True,
    help="the schema to create or update (the buses' schema=)",
)
@click.option(
    "--grant",
    "roles",
    metavar="ROLE",
    multiple=True,
    help="let ROLE use buses in the schema, and nothing more (repeatable)",
)
@click.option(
    "--owner",
    metavar="ROLE",
    default=None,
    help="the role that owns the schema and whose rights its functions run with (default: "
    "the role applying it); pick one no bus logs in as",
)
@click.option(
    "--grants-only",
    is_flag=True,
    help="only the --grant statements, for a schema that exists",
)
@click.option(
    "--apply",
    "dsn",
    metavar="DSN",
    default=None,
    help="apply the SQL to this database (a libpq dsn or URL) instead of printing it",
)
@click.option(
    "--connect-timeout",
    type=Seconds(positive=True),
    metavar="SECONDS",
    default=5.0,
    show_default=True,
    help="with --apply: seconds to wait for postgres to answer",
)
@click.pass_context
def schema(
    ctx: click.Context,
    schema_name: str,
    roles: tuple[str, ...],
    owner: str | None,
    grants_only: bool,
    dsn: str | None,
    connect_timeout: float,
) -> None:
    """Print the SQL that creates (or updates in place) the schema PostgresBus keeps its
    messages in, and grants each --grant ROLE its use: pipe it into psql as a role that may
    create schemas. Applying it twice changes nothing."""
    module = _schema_module()
    s = _checked(module.check_schema_name, schema_name, "--schema")
    grants = [_checked(module.check_role_name, role, "--grant") for role in roles]
    if owner is not None:
        owner = _checked(module.check_role_name, owner, "--owner", "owner")
    if grants_only and not grants:
        raise click.UsageError("--grants-only needs at least one --grant ROLE")
    if grants_only and owner is not None:
        raise click.UsageError("--owner makes no sense with --grants-only: give one of them")
    if grants_only:  # one transaction, as the schema's script is
        script = "BEGIN;\n" + "".join(module.grant_sql(role, s) for role in grants) + "COMMIT;\n"
    else:
        script = module.schema_sql(s, owner=owner, grant=grants)
    if dsn is None:
        click.echo(script, nl=False)
        return
    from ..postgres._client import PgConnection, check_dsn

    try:
        check_dsn(dsn)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--apply") from None

    async def apply() -> str:
        conn = await PgConnection.open(
            dsn,
            application_name="anybus-cli-schema",
            connect_timeout=connect_timeout,
            statement_timeout=60.0,
        )
        try:
            await conn.execute_script(script)
        except TransportError as exc:
            hint = (
                "apply it as a role that may (a DBA), or print the SQL without --apply for one"
                if getattr(exc, "sqlstate", None) == "42501"
                else "nothing was changed"
            )
            raise Failure(f"{' '.join(str(exc).split())}: {hint}") from None
        finally:
            await conn.close()
        return conn.where

    where = run(ctx, apply)
    granted = f"granted the use of the anybus schema {s!r} at {where} to {', '.join(grants)}"
    if grants_only:
        click.echo(granted)
    else:
        version = module.SCHEMA_VERSION
        click.echo(f"applied the anybus schema {s!r} (version {version}) at {where}")
        if grants:
            click.echo(granted)
