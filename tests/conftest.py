from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis server's URL; skips (fails under CI) when none answers."""
    from .redis_support import shared_redis_url

    url: str = shared_redis_url()
    return url


@pytest.fixture
def postgres_dsn() -> str:
    """The shared Postgres server's dsn; skips (fails under CI) when none answers."""
    from .postgres_support import shared_postgres_dsn

    dsn: str = shared_postgres_dsn()
    return dsn
