"""The ingest's raw payload store (ingest.raw_webhooks): every validly signed delivery, byte for
byte, for reprocessing.

A row's life:
- stored (published_at NULL, quarantined_at NULL): its fact is not on Kafka yet; the request that
  stored it publishes it, else the sweeper does once it is older than ingest_sweep_after_seconds;
- published (published_at set): its ShopifyOrderReceived is on Kafka;
- quarantined (quarantined_at and quarantine_reason set): the body does not normalise (or its fact
  cannot be a Kafka message); published_at then says when its exception record (the DeadLetter of
  group shopify-ingest) went to Kafka, and while it is NULL the sweeper publishes that dead letter;
- re-driven: a re-drive normalised it after all; quarantined_at is cleared (quarantine_reason
  stays, as history) and published_at is when its fact went to Kafka.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

COLUMNS = ("id, webhook_id, topic, shop_domain, event_id, headers, body, received_at, published_at, quarantined_at, "
           "quarantine_reason")


@dataclass(frozen=True)
class StoredWebhook:
    id: UUID
    webhook_id: str
    topic: str
    shop_domain: str
    event_id: str | None
    headers: dict[str, str]
    body: bytes
    received_at: datetime
    published_at: datetime | None
    quarantined_at: datetime | None
    quarantine_reason: str | None

    @property
    def published(self) -> bool:
        return self.published_at is not None

    @property
    def quarantined(self) -> bool:
        return self.quarantined_at is not None


def _stored(row: asyncpg.Record) -> StoredWebhook:
    headers = row["headers"]
    return StoredWebhook(
        id=row["id"], webhook_id=row["webhook_id"], topic=row["topic"], shop_domain=row["shop_domain"],
        event_id=row["event_id"], headers=json.loads(headers) if isinstance(headers, str) else dict(headers),
        body=bytes(row["body"]), received_at=row["received_at"], published_at=row["published_at"],
        quarantined_at=row["quarantined_at"], quarantine_reason=row["quarantine_reason"],
    )


class Claim:
    """Rows the sweeper holds (FOR UPDATE SKIP LOCKED, so two ingests never take the same row)
    until its transaction ends."""

    def __init__(self, conn: asyncpg.Connection, rows: Sequence[StoredWebhook]) -> None:
        self.conn = conn
        self.rows = list(rows)

    async def quarantine(self, raw_id: UUID, reason: str) -> None:
        await self.conn.execute(
            "UPDATE ingest.raw_webhooks SET quarantined_at = now(), quarantine_reason = $2 WHERE id = $1",
            raw_id, reason)

    async def published(self, raw_ids: Sequence[UUID]) -> None:
        if raw_ids:
            await self.conn.execute("UPDATE ingest.raw_webhooks SET published_at = now() WHERE id = ANY($1::uuid[])",
                                    list(raw_ids))


class RawWebhookStore:
    """`timeout`: seconds a statement may take. asyncpg enforces it itself (it cancels the query
    on the server), which keeps the connection usable; a cancellation from outside may not."""

    def __init__(self, pool: asyncpg.Pool, timeout: float | None = None) -> None:
        self.pool = pool
        self.timeout = timeout

    async def record(
        self, webhook_id: str, topic: str, shop_domain: str, event_id: str | None,
        headers: dict[str, str], body: bytes, received_at: datetime, quarantine_reason: str | None = None,
    ) -> StoredWebhook:
        """Keep the delivery (quarantined with `quarantine_reason` when given); a repeat of a
        webhook id only counts the delivery. Returns the row as stored (the first delivery's)."""
        row = await self.pool.fetchrow(
            f"""
            INSERT INTO ingest.raw_webhooks (id, webhook_id, topic, shop_domain, event_id, headers, body, received_at,
                                             quarantined_at, quarantine_reason)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, CASE WHEN $9::text IS NULL THEN NULL ELSE now() END, $9)
            ON CONFLICT (webhook_id) DO UPDATE SET deliveries = ingest.raw_webhooks.deliveries + 1
            RETURNING {COLUMNS}
            """,
            uuid4(), webhook_id, topic, shop_domain, event_id, json.dumps(headers), body, received_at,
            quarantine_reason, timeout=self.timeout,
        )
        return _stored(row)

    async def get(self, raw_id: UUID) -> StoredWebhook | None:
        row = await self.pool.fetchrow(f"SELECT {COLUMNS} FROM ingest.raw_webhooks WHERE id = $1", raw_id,
                                       timeout=self.timeout)
        return _stored(row) if row is not None else None

    async def mark_published(self, raw_id: UUID) -> None:
        await self.pool.execute("UPDATE ingest.raw_webhooks SET published_at = now() WHERE id = $1", raw_id,
                                timeout=self.timeout)

    async def quarantine(self, raw_id: UUID, reason: str) -> None:
        await self.pool.execute(
            "UPDATE ingest.raw_webhooks SET quarantined_at = now(), quarantine_reason = $2 "
            "WHERE id = $1 AND quarantined_at IS NULL", raw_id, reason, timeout=self.timeout)

    async def mark_redriven(self, raw_id: UUID) -> None:
        """A quarantined body normalised after all and its fact is on Kafka."""
        await self.pool.execute(
            "UPDATE ingest.raw_webhooks SET quarantined_at = NULL, published_at = now() WHERE id = $1", raw_id,
            timeout=self.timeout)

    @asynccontextmanager
    async def claim_unpublished(self, older_than_seconds: float, limit: int) -> AsyncIterator[Claim]:
        """The oldest rows whose fact (or, quarantined, whose dead letter) is not on Kafka and
        that were received more than `older_than_seconds` ago, locked for this transaction."""
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                SELECT {COLUMNS} FROM ingest.raw_webhooks
                WHERE published_at IS NULL AND received_at < now() - make_interval(secs => $1)
                ORDER BY received_at LIMIT $2
                FOR UPDATE SKIP LOCKED
                """,
                float(older_than_seconds), limit,
            )
            yield Claim(conn, [_stored(r) for r in rows])
