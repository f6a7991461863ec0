"""Create what the services need before they start: Kafka topics (from contracts/topics.py)
and the database schemas. Safe to run any number of times."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import ALL_TOPICS
from domain.inventory.application import InventoryApplication
from domain.orders.application import OrderApplication
from projections.store import create_read_model_schema
from services import catalog_reader, outbox_relay, prima_gateway, shopify_gateway
from services.config import Settings, get_settings
from services import prima_ingest
from services.ingest_store import create_ingest_schema

log = logging.getLogger("shopify_prima.setup")


async def create_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in ALL_TOPICS if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, topic_configs=t.config) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # created meanwhile by another setup run
        return [t.name for t in missing]
    finally:
        await admin.close()


async def create_schemas(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.event_store_schema}"')
        await create_ingest_schema(conn)
        await prima_ingest.create_tables(conn)
        await create_read_model_schema(conn)
        await catalog_reader.create_tables(conn)
        await shopify_gateway.create_tables(conn)
        await conn.execute(prima_gateway.SCHEMA_SQL)
        await conn.execute(outbox_relay.SCHEMA_SQL)
    finally:
        await conn.close()
    # The event store's tables, created once here rather than raced by the services at start-up.
    OrderApplication(env=settings.eventsourcing_env(create_tables=True)).close()
    InventoryApplication(env=settings.eventsourcing_env(create_tables=True)).close()


async def main() -> None:
    settings = get_settings()
    created = await create_topics(settings)
    await create_schemas(settings)
    print(f"topics created: {', '.join(created) or 'none (all present)'}; database schemas ready")


if __name__ == "__main__":
    asyncio.run(main())
