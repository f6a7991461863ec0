"""What the inventory integration tests share: a throwaway database with the integration's tables
(made by the migrations, as `services.setup` makes them), and Kafka topics of their own. Nothing
here reads or writes the running stack's tables or topics."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.topics import TopicSpec
from services.platform import migrations


async def create_scratch_database(server_url: str, label: str) -> str:
    """A new database with every table of the integration, on the test server (no new process)."""
    name = f"shopify_prima_test_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        pytest.fail(f"the test user may not CREATE DATABASE on {urlparse(server_url).netloc}; these tests need a "
                    "throwaway database so as not to touch the running stack's tables")
    finally:
        await admin.close()
    url = urlunparse(urlparse(server_url)._replace(path=f"/{name}"))
    await asyncio.to_thread(migrations.upgrade, url)
    return url


async def drop_scratch_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlparse(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def scratch_url(database_url) -> AsyncIterator[str]:
    """A migrated throwaway database for the inventory integration tests, dropped at the end."""
    url = await create_scratch_database(database_url, "inventory")
    yield url
    await drop_scratch_database(database_url, url)


@pytest.fixture(scope="session")
async def own_topic(kafka_bootstrap) -> AsyncIterator[Callable[..., Awaitable[TopicSpec]]]:
    """`await own_topic("label", like=SPEC)`: a new topic carrying what SPEC's carries, deleted at
    the end of the session."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    made: list[str] = []

    async def make(label: str, like: TopicSpec | None = None, partitions: int = 3) -> TopicSpec:
        name = f"test.inventory.{label}.{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        made.append(name)
        return TopicSpec(name=name, key=like.key if like else "SKU", description=f"test topic ({label})",
                         messages=like.messages if like else (), partitions=partitions)

    try:
        yield make
        if made:
            await admin.delete_topics(made)
    finally:
        await admin.close()
