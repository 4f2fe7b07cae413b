"""The Postgres transport for anybus (the ``postgres`` extra: ``pip install 'anybus[postgres]'``).

:class:`PostgresBus` carries messages over tables in plain Postgres 13 or newer (durable,
at-least-once, woken by ``LISTEN/NOTIFY``). The client is psycopg 3, behind a thin adapter
that drives it the same way on asyncio and trio. :func:`schema_sql` and :func:`grant_sql`
give the SQL a DBA applies by hand (also printed by ``anybus postgres schema``).
"""

from importlib.util import find_spec as _find_spec

# Only the adapter (``_client.py``) imports psycopg; without it, say which extra to install.
if _find_spec("psycopg") is None:  # pragma: no cover - exercised without the extra
    raise ModuleNotFoundError(
        "anybus.postgres needs psycopg 3: pip install 'anybus[postgres]'", name="psycopg"
    )

from ._bus import PostgresBus as PostgresBus
from ._bus import PostgresStatistics as PostgresStatistics
from ._schema import grant_sql as grant_sql
from ._schema import schema_sql as schema_sql
from ._transport import PostgresTransport as PostgresTransport

__all__ = ["PostgresBus", "PostgresStatistics", "PostgresTransport", "grant_sql", "schema_sql"]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("anybus.postgres._"):
        _obj.__module__ = __name__
del _name, _obj
