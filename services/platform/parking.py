"""Parked commands, for both gateways (gateway.parked_commands): a command a gateway gave up on
after its retries is kept whole, with why and how often it was tried, so that it is never lost
and can be sent again (RetryParkedCommand) with its own idempotency key."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from contracts.platform import RetryParkedCommand
from services.platform.metrics import COMMANDS_PARKED

log = logging.getLogger("shopify_prima.parking")


class ParkedCommands:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def park(self, command: BaseModel, *, gateway: str, subject: str, reason: str, attempts: int) -> None:
        await self.park_many([(command, subject, reason, attempts)], gateway=gateway)

    async def park_many(self, parked: Sequence[tuple[Any, str, str, int]], *, gateway: str) -> None:
        """(command, subject, reason, attempts) each; a command parked again adds its attempts."""
        if not parked:
            return
        for command, subject, reason, attempts in parked:
            COMMANDS_PARKED.labels(command=command.message_type).inc()
            log.warning("%s gateway parked %s %s (%s) after %d attempts: %s", gateway, command.message_type,
                        command.command_id, subject, attempts, reason)
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


class Parking(Protocol):
    async def load(self, command_id: UUID, models: dict[str, type[BaseModel]]) -> Any | None: ...

    async def mark_retried(self, command_id: UUID) -> None: ...


async def with_retries(parked: Parking, messages: Iterable[Any], *, gateway: str,
                       models: dict[str, type[BaseModel]]) -> list[Any]:
    """The commands to send: each message as it is, but a RetryParkedCommand for this gateway
    replaced by the parked command it names (marked as retried); one for another gateway, or for
    a command not parked here, left out."""
    commands = []
    for message in messages:
        if isinstance(message, RetryParkedCommand):
            if message.gateway != gateway:
                continue
            found = await parked.load(message.parked_command_id, models)
            if found is None:
                log.warning("retry of parked command %s: not parked by the %s gateway", message.parked_command_id,
                            gateway)
                continue
            await parked.mark_retried(found.command_id)
            log.info("retrying parked %s %s (asked by %s)", found.message_type, found.command_id, message.requested_by)
            message = found
        commands.append(message)
    return commands
