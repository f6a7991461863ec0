"""What the order flow's integration tests share: a throwaway database with the integration's
tables (made by the migrations, as `services.setup` makes them), so that no test reads or
writes the running stack's parked commands or read models (the stack's Prima gateway re-drives
every parked command it finds, and its decider sweeps the open exceptions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.orders.integration.test_ingest_support import IngestEnv, ingest_environment
from tests.support import scratch_database


@pytest.fixture(scope="module")
async def scratch_url(database_url) -> AsyncIterator[str]:
    """A migrated database of this module's own, dropped at the end."""
    async with scratch_database(database_url, "orders") as url:
        yield url


@pytest.fixture(scope="module")
async def scratch_pool(scratch_url) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def ingest_env(database_url, kafka_bootstrap, settings) -> AsyncIterator[IngestEnv]:
    """The webhook ingest tests' environment: a scratch database and throwaway topics of the
    module's own (test_ingest_support.ingest_environment)."""
    async with ingest_environment(database_url, kafka_bootstrap, settings) as env:
        yield env
