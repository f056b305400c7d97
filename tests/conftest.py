"""Session-wide fixtures: the settings of the test run and the servers they point at.

`endpoints` starts the embedded Tansu, Redis and Postgres once per session under a temporary
CRYPTIQ_HOME and stops them at the end, whether the tests pass or fail. Set
CRYPTIQ_KAFKA_BOOTSTRAP, CRYPTIQ_REDIS_URL or CRYPTIQ_POSTGRES_URL to run against servers of
your own instead (those are only checked, never started or stopped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import infra
from config import Settings, load_settings


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The settings of this test session: environment and config file as usual, home in a temp dir."""
    home = tmp_path_factory.mktemp("cryptiq-home")
    return load_settings().model_copy(update={"home": home})


@pytest.fixture(scope="session")
def endpoints(settings: Settings) -> Iterator[infra.Endpoints]:
    """Kafka, Redis and Postgres answering for the whole session (started once, stopped at the end).

    Synchronous on purpose: `infra.up` runs its readiness checks on a private loop, so this
    fixture works next to pytest-asyncio's session loop.
    """
    try:
        yield infra.up(settings)
    finally:
        infra.down(settings)


@pytest.fixture(scope="session")
async def kafka(settings: Settings, endpoints: infra.Endpoints) -> dict[str, Any]:
    """aiokafka client arguments for the session's broker, on which every registry topic exists."""
    from topics.admin import ensure_topics

    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    await ensure_topics(
        kwargs, default_partitions=settings.kafka.default_partitions,
        replication_factor=settings.kafka.replication_factor,
    )
    return kwargs


@pytest.fixture(scope="module")
async def fresh_db(endpoints: infra.Endpoints) -> AsyncIterator[str]:
    """A new database for this test module (migrations not run), dropped after it."""
    from pgtools import fresh_database

    async with fresh_database(endpoints.postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
async def engine(fresh_db: str) -> AsyncIterator[Any]:
    """An async SQLAlchemy engine on this module's migrated database."""
    from memory.database import create_engine
    from memory.migrations import upgrade

    await upgrade(fresh_db)
    engine = create_engine(fresh_db)
    try:
        yield engine
    finally:
        await engine.dispose()
