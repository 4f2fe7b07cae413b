"""How to reach a Redis server: :class:`RedisSettings`, parsed from a ``redis://`` URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .._checks import check_count, check_name, check_seconds

__all__ = ["RedisSettings"]


_CLUSTER_VALUES = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _cluster_of(query: str) -> bool:
    """The ``cluster`` parameter of a url's query (the only one a url may carry)."""
    parameters = parse_qs(query, keep_blank_values=True)
    unknown = sorted(name for name in parameters if name != "cluster")
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} in the url's query {query!r}: the only "
            f"parameter accepted is 'cluster' (pass other options to the bus or to "
            f"RedisSettings)"
        )
    values = parameters.get("cluster", ["false"])
    if len(values) > 1:
        raise ValueError(f"cluster is given {len(values)} times in the url, give it once")
    accepted = ", ".join(_CLUSTER_VALUES)
    try:
        return _CLUSTER_VALUES[values[0].lower()]
    except KeyError:
        raise ValueError(
            f"cluster in the url must be one of {accepted}, got {values[0]!r}"
        ) from None


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect, parsed from a ``redis://`` or ``rediss://`` URL.

    Build one with :meth:`from_url` (or directly) and pass it to a Redis bus instead of a URL
    to set the options a URL cannot carry.

    Attributes:
        host: the server's host name or address (a seed node for a cluster).
        port: the server's port.
        database: the database number (always 0 on a cluster).
        username: the user to authenticate as, or ``None`` for the default user.
        password: the password, or ``None`` to connect without authenticating (not shown in
            the repr).
        tls: whether to connect over TLS (``rediss://``).
        cluster: whether the server is a Redis (or Valkey) Cluster.
        request_timeout: seconds a request may take before glide gives up on it.
        reconnect_first_delay: seconds before the first reconnection attempt.
        reconnect_growth: the factor each further delay grows by.
        reconnect_steps: how many attempts grow the delay (later ones keep the last delay):
            the longest pause between two attempts is ``reconnect_first_delay *
            reconnect_growth ** reconnect_steps`` (0.4 s by default), so a client is back
            within that of the server's return, however long it was away.
        reconnect_jitter: the jitter applied to each delay, in percent.
        resubscribe_interval: how often glide re-checks its pub/sub subscriptions after a
            reconnect, in seconds.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    #: Whether the server is a Redis (or Valkey) Cluster: the address is one seed node, the
    #: client discovers the others and follows slot moves.
    cluster: bool = False
    #: Seconds a request may take before glide gives up on it (it may still have happened).
    request_timeout: float = 1.0
    #: Reconnection backoff: the first delay, its growth per attempt, how many attempts grow
    #: it, and the jitter (percent) applied to each delay. The delay stops growing at 0.4 s:
    #: an attempt costs a refused connection, and a longer pause would delay the return after
    #: a long outage (at 3.2 s, a 3 s outage took 2.5-3.8 s to recover from).
    reconnect_first_delay: float = 0.05
    reconnect_growth: int = 2
    reconnect_steps: int = 3
    reconnect_jitter: int = 20
    #: How often glide re-checks its pub/sub subscriptions after a reconnect, in seconds.
    resubscribe_interval: float = 0.25

    def __post_init__(self) -> None:
        """Refuse a value glide could not use, naming the field (rather than failing later,
        inside the client, as the bus starts)."""
        check_name("host", self.host)
        if not (isinstance(self.port, int) and not isinstance(self.port, bool)) or not (
            0 < self.port < 65536
        ):
            raise ValueError(f"port must be an integer from 1 to 65535, got {self.port!r}")
        check_count("database", self.database, 0)
        for option in ("username", "password"):
            value = getattr(self, option)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{option} must be a string or None, got {type(value).__name__}")
        for option in ("tls", "cluster"):
            if not isinstance(getattr(self, option), bool):
                raise ValueError(f"{option} must be True or False, got {getattr(self, option)!r}")
        for option in ("request_timeout", "reconnect_first_delay", "resubscribe_interval"):
            check_seconds(option, getattr(self, option), finite=True)
        check_count("reconnect_growth", self.reconnect_growth, 1)
        check_count("reconnect_steps", self.reconnect_steps, 0)
        check_count("reconnect_jitter", self.reconnect_jitter, 0)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSettings:
        """Parse ``redis://[user[:password]@]host[:port][/db][?cluster=true]`` (``rediss://``
        for TLS; with ``cluster=true``, host:port is a seed node of a cluster).

        Raises:
            ValueError: if the URL is not a redis URL, has a query parameter other than
                ``cluster`` (or a value of it other than true/false, yes/no, 1/0), or asks
                for a database on a cluster.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"url must start with redis:// or rediss://, got {url!r}")
        database = parts.path.lstrip("/")
        if database and not database.isdigit():
            raise ValueError(f"the database in the url must be a number, got {database!r}")
        cluster = _cluster_of(parts.query)
        if cluster and int(database or 0):
            raise ValueError(
                f"a cluster has only database 0, got {database!r}: remove /{database} from the url"
            )
        options.setdefault("cluster", cluster)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            database=int(database or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
            **options,
        )

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"
