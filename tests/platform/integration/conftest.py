"""A scratch database with the integration's schema (migrations), and throwaway Kafka topics."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.platform import migrations


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
async def scratch_database(database_url):
    """A database of its own, migrated to head, dropped afterwards."""
    name = f"test_platform_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(database_url, name)
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def new_topics(kafka_bootstrap):
    """new_topics(n, partitions=3) -> names of fresh topics, deleted at the end of the test."""
    created: list[str] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    async def make(n: int = 1, partitions: int = 3) -> list[str]:
        names = [f"test.platform.{uuid.uuid4().hex[:12]}" for _ in range(n)]
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names])
        created.extend(names)
        return names

    try:
        yield make
    finally:
        if created:
            await admin.delete_topics(created)
        await admin.close()
