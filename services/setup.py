"""Make what the services need before they start: the Kafka topics (contracts/topics.py), the
database schema (migrations, services/platform/migrations) and the event store's tables (owned
by the eventsourcing library). Safe to run any number of times, and at the same time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import ALL_TOPICS, TopicSpec
from domain.fulfilment.application import FulfilmentApplication
from domain.inventory.application import InventoryApplication
from domain.orders.application import OrderApplication
from domain.payouts.application import PayoutApplication
from services.platform import migrations
from services.platform.settings import Settings, get_settings

log = logging.getLogger("shopify_prima.setup")


async def create_topics(settings: Settings, topics: Sequence[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Topic creation is administration, not producing or consuming: aiokafka's admin client.
    Replication factor and min.insync.replicas come from settings (1 and 1 for one local broker;
    3 and 2 for a three-broker cluster)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(t.name, num_partitions=t.partitions, replication_factor=settings.kafka_replication_factor,
                             topic_configs={**t.config,
                                            "min.insync.replicas": str(settings.kafka_min_insync_replicas)})
                    for t in missing])
            except TopicAlreadyExistsError:
                pass  # created meanwhile by another setup run
        return [t.name for t in missing]
    finally:
        await admin.close()


def create_schemas(settings: Settings) -> str | None:
    import psycopg
    from psycopg import sql

    migrations.upgrade(settings.database_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.event_store_schema)))
    # The event store's tables, created once here rather than raced by the services at start-up.
    OrderApplication(env=settings.eventsourcing_env(create_tables=True)).close()
    InventoryApplication(env=settings.eventsourcing_env(create_tables=True)).close()
    PayoutApplication(env=settings.eventsourcing_env(create_tables=True)).close()
    FulfilmentApplication(env=settings.eventsourcing_env(create_tables=True)).close()
    return migrations.current(settings.database_url)


async def main() -> None:
    settings = get_settings()
    created = await create_topics(settings)
    revision = await asyncio.to_thread(create_schemas, settings)
    print(f"topics created: {', '.join(created) or 'none (all present)'}; database schema at revision {revision}")


if __name__ == "__main__":
    asyncio.run(main())
