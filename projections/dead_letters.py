"""The dead-letters read model: every message a consumer group gave up on, as an exception record
with its error and the action that re-drives it (services/platform/kafka.py). A successful
re-drive (DeadLetterRedriven) resolves it; a re-drive that fails again keeps it open with the
new error. Built from shopify-prima.dead-letters.v1; rebuildable from offset zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from contracts.platform import DeadLetter, DeadLetterRedriven
from contracts.topics import DEAD_LETTERS
from projections.base import Projection, ReadModel

DEAD_LETTER_READ_MODEL = ReadModel(
    name="dead_letters",
    states=("open", "resolved"),
    exception_kinds=("undecodable", "handler_failed"),
)


def redrive_action(dead_letter_id: UUID | str) -> str:
    return f"fix the cause, then: shopify-prima dead-letters redrive {dead_letter_id}"


class DeadLettersProjection(Projection):
    read_model = DEAD_LETTER_READ_MODEL
    topic = DEAD_LETTERS
    accepts = (DeadLetter, DeadLetterRedriven)
    tables = ("readmodel.dead_letters",)

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        for m in messages:
            if isinstance(m, DeadLetter):
                await conn.execute(
                    """INSERT INTO readmodel.dead_letters (dead_letter_id, consumer_group, topic, kafka_partition,
                           kafka_offset, key_base64, value_base64, headers, original_message_type, reason, error,
                           attempts, status, dead_lettered_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, 'open', $13)
                       ON CONFLICT (dead_letter_id) DO UPDATE SET error = EXCLUDED.error,
                           attempts = readmodel.dead_letters.attempts + EXCLUDED.attempts, status = 'open',
                           resolved_at = NULL, dead_lettered_at = EXCLUDED.dead_lettered_at""",
                    m.dead_letter_id, m.group, m.topic, m.partition, m.offset, m.key_base64, m.value_base64,
                    json.dumps(m.headers), m.original_message_type, m.reason, m.error, m.attempts, m.dead_lettered_at)
            else:
                await conn.execute(
                    "UPDATE readmodel.dead_letters SET status = 'resolved', resolved_at = $2 "
                    "WHERE dead_letter_id = $1 AND dead_lettered_at <= $2", m.dead_letter_id, m.redriven_at)

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        states, kinds = await super().counts(db)
        states.update({r["status"]: r["n"] for r in await db.fetch(
            "SELECT status, count(*) AS n FROM readmodel.dead_letters GROUP BY status")})
        kinds.update({r["reason"]: r["n"] for r in await db.fetch(
            "SELECT reason, count(*) AS n FROM readmodel.dead_letters WHERE status = 'open' GROUP BY reason")})
        return states, kinds
