"""A scratch database with the integration's schema (migrations), and throwaway Kafka topics."""

from __future__ import annotations

import pytest

from tests.support import scratch_database as _scratch_database
from tests.support import throwaway_topics


@pytest.fixture(scope="module")
async def scratch_database(database_url):
    """A database of its own, migrated to head, dropped afterwards."""
    async with _scratch_database(database_url, "platform") as url:
        yield url


@pytest.fixture
async def new_topics(kafka_bootstrap):
    """new_topics(n, partitions=3) -> names of fresh topics, deleted at the end of the test."""
    async with throwaway_topics(kafka_bootstrap) as make:
        async def many(n: int = 1, partitions: int = 3) -> list[str]:
            return [await make("platform", partitions) for _ in range(n)]
        yield many
