"""Parked commands, for both gateways (gateway.parked_commands): a command a gateway gave up on
after its retries is kept whole, with why and how often it was tried, so that it is never lost
and can be sent again (RetryParkedCommand) with its own idempotency key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel


class ParkedCommands:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def park(self, command: BaseModel, *, gateway: str, subject: str, reason: str, attempts: int) -> None:
        await self.park_many([(command, subject, reason, attempts)], gateway=gateway)

    async def park_many(self, parked: Sequence[tuple[Any, str, str, int]], *, gateway: str) -> None:
        """(command, subject, reason, attempts) each; a command parked again adds its attempts."""
        if not parked:
            return
        at = datetime.now(UTC)
        await self.pool.executemany(
            """INSERT INTO gateway.parked_commands
                   (command_id, gateway, subject, message_type, command, reason, attempts, parked_at)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
               ON CONFLICT (command_id) DO UPDATE SET reason = EXCLUDED.reason,
                   attempts = gateway.parked_commands.attempts + EXCLUDED.attempts, parked_at = EXCLUDED.parked_at,
                   retried_at = NULL""",
            [(c.command_id, gateway, subject, c.message_type, c.model_dump_json(), reason[:2000], attempts, at)
             for c, subject, reason, attempts in parked])

    async def load(self, command_id: UUID, models: dict[str, type[BaseModel]]) -> Any | None:
        row = await self.pool.fetchrow(
            "SELECT message_type, command::text AS command FROM gateway.parked_commands WHERE command_id = $1",
            command_id)
        if row is None or row["message_type"] not in models:
            return None
        return models[row["message_type"]].model_validate_json(row["command"])

    async def mark_retried(self, command_id: UUID) -> None:
        await self.pool.execute("UPDATE gateway.parked_commands SET retried_at = now() WHERE command_id = $1",
                                command_id)
