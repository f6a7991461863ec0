"""The ops API on a scratch database (migrated to head) with real Kafka, publishing its operator
commands to a throwaway operations topic (tests/ops/support.py says why)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse, urlunparse
from uuid import uuid4

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi.testclient import TestClient

from contracts.topics import OPERATIONS
from services.ops import api as ops_api
from services.platform import migrations
from services.platform.settings import Settings
from tests.ops.support import OperationsTap, seed


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    """A database of its own, its tables from the migrations, dropped afterwards."""
    name = f"test_ops_{uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        pytest.fail("the test user may not CREATE DATABASE; these tests need a throwaway database")
    url = urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
async def operations_topic(kafka_bootstrap):
    """A throwaway topic shaped like shopify-prima.operations.v1, which the ops API publishes to
    for the module's tests (no consumer of the running stack reads it)."""
    name = f"test.ops.operations.{uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, num_partitions=OPERATIONS.partitions, replication_factor=1)])
    try:
        yield name
    finally:
        await admin.delete_topics([name])
        await admin.close()


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
