"""What integration tests of every flow share: a throwaway database with the integration's tables
(made by the migrations, as `services.setup` makes them) and throwaway Kafka topics, so that no
test reads or writes the running stack's tables or topics."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.platform import migrations


@asynccontextmanager
async def scratch_database(server_url: str, label: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new database on the test server (migrated to head unless `migrate` is False), dropped after."""
    name = f"test_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        await admin.close()
        pytest.fail(f"the test user may not CREATE DATABASE on {urlparse(server_url).netloc}; these tests need a "
                    "throwaway database so as not to touch the running stack's tables")
    url = urlunparse(urlparse(server_url)._replace(path=f"/{name}"))
    try:
        if migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def throwaway_topics(bootstrap: str) -> AsyncIterator:
    """`make(label, partitions=3) -> name`: new topics, deleted when the block ends."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    made: list[str] = []

    async def make(label: str, partitions: int = 3) -> str:
        name = f"test.{label}.{uuid.uuid4().hex[:12]}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        made.append(name)
        return name

    try:
        yield make
    finally:
        if made:
            await admin.delete_topics(made)
        await admin.close()
