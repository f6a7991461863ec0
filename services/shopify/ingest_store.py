"""The ingest's raw payload store (ingest.raw_webhooks): every accepted delivery, byte for byte,
for reprocessing."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg


class RawWebhookStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self, webhook_id: str, topic: str, shop_domain: str, event_id: str | None,
        headers: dict[str, str], body: bytes, received_at: datetime,
    ) -> tuple[UUID, datetime, bool]:
        """Keep the delivery; returns (raw id, first received_at, already published)."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO ingest.raw_webhooks (id, webhook_id, topic, shop_domain, event_id, headers, body, received_at)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
            ON CONFLICT (webhook_id) DO UPDATE SET deliveries = ingest.raw_webhooks.deliveries + 1
            RETURNING id, received_at, published_at IS NOT NULL AS published
            """,
            uuid4(), webhook_id, topic, shop_domain, event_id, json.dumps(headers), body, received_at,
        )
        return row["id"], row["received_at"], row["published"]

    async def mark_published(self, raw_id: UUID) -> None:
        await self.pool.execute("UPDATE ingest.raw_webhooks SET published_at = now() WHERE id = $1", raw_id)
