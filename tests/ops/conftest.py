"""The ops API on a scratch database (migrated to head) with real Kafka, publishing its operator
commands to a throwaway operations topic (tests/ops/support.py says why)."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient

from contracts.topics import OPERATIONS
from services.ops import api as ops_api
from services.platform.settings import Settings
from tests.ops.support import OperationsTap, seed
from tests.support import scratch_database, throwaway_topics


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    """A database of its own, its tables from the migrations, dropped afterwards."""
    async with scratch_database(database_url, "ops") as url:
        yield url


@pytest.fixture(scope="module")
async def operations_topic(kafka_bootstrap):
    """A throwaway topic shaped like shopify-prima.operations.v1, which the ops API publishes to
    for the module's tests (no consumer of the running stack reads it)."""
    async with throwaway_topics(kafka_bootstrap) as make:
        yield await make("ops.operations", partitions=OPERATIONS.partitions)


@pytest.fixture(scope="module")
def tap(kafka_bootstrap, operations_topic) -> OperationsTap:
    return OperationsTap(kafka_bootstrap, operations_topic)


@pytest.fixture(scope="module")
def ops_settings(scratch_url, kafka_bootstrap, settings) -> Settings:
    return settings.model_copy(update={"database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap})


@pytest.fixture
async def seeded(scratch_url):
    await seed(scratch_url)
    return scratch_url


@pytest.fixture(scope="module")
def api(ops_settings, operations_topic, ops_headers):
    """The ops API in-process (its lifespan starts the broker), sending the stack's token."""
    app = ops_api.create_app(ops_settings, operations_topic=operations_topic)
    with TestClient(app, headers=ops_headers) as client:
        yield client
