"""What the inventory integration tests share: a throwaway database with the integration's tables
(made by the migrations, as `services.setup` makes them), and Kafka topics of their own. Nothing
here reads or writes the running stack's tables or topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.topics import TopicSpec
from tests.support import scratch_database


@pytest.fixture(scope="session")
async def scratch_url(database_url) -> AsyncIterator[str]:
    """A migrated throwaway database for the inventory integration tests, dropped at the end."""
    async with scratch_database(database_url, "inventory") as url:
        yield url


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
