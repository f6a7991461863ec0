"""Parked commands, for both gateways (gateway.parked_commands): a command a gateway gave up on
after its retries is kept whole, with why and how often it was tried, so that it is never lost
and can be sent again (RetryParkedCommand) with its own idempotency key.

Parked is not the end: a parked command is re-driven by itself (`Redriver`, run by the gateway's
process). While a gateway's parked commands are due, a cheap call probes the target (a circuit
breaker: nothing is re-sent while the probe fails, so an outage costs no re-drive, and it is
logged once per outage); once the target answers, the due commands are sent again, oldest
first, each with its own idempotency key. One that still fails is due again after an exponential
backoff (`RedriveSchedule`: next_attempt_at, redrives), until the horizon after parked_at, when
it is given up (given_up_at) and stays a human exception. A command whose outcome came back
(created, or refused by the target) is resolved (resolved_at), whichever way it was sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from contracts.platform import RetryParkedCommand
from services.platform.metrics import COMMANDS_PARKED
from services.platform.runner import Outage, wait_or_stop
from services.platform.settings import Settings

log = logging.getLogger("shopify_prima.parking")


@dataclass(frozen=True)
class RedriveSchedule:
    """When a parked command is sent again: `initial_seconds` after it was parked, then after
    each re-drive that failed twice as long as the last wait, at most `max_seconds`; never once
    `horizon_seconds` have passed since it was parked."""

    initial_seconds: float = 5.0
    max_seconds: float = 300.0
    horizon_seconds: float = 86_400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RedriveSchedule:
        return cls(settings.parked_redrive_initial_seconds, settings.parked_redrive_max_seconds,
                   settings.parked_redrive_horizon_seconds)

    def wait(self, redrives: int) -> timedelta:
        """The wait before the next attempt, after `redrives` re-drives that failed."""
        return timedelta(seconds=min(self.max_seconds, self.initial_seconds * 2 ** max(0, redrives)))


@dataclass(frozen=True)
class DueCommand:
    """A parked command claimed for a re-drive."""

    command: Any
    subject: str
    redrives: int
    parked_at: datetime


class ParkedCommands:
    def __init__(self, pool: asyncpg.Pool, schedule: RedriveSchedule | None = None) -> None:
        self.pool = pool
        self.schedule = schedule or RedriveSchedule()

    async def park(self, command: BaseModel, *, gateway: str, subject: str, reason: str, attempts: int) -> None:
        await self.park_many([(command, subject, reason, attempts)], gateway=gateway)

    async def park_many(self, parked: Sequence[tuple[Any, str, str, int]], *, gateway: str) -> None:
        """(command, subject, reason, attempts) each; a command parked again adds its attempts
        and starts a new re-drive schedule."""
        if not parked:
            return
        for command, subject, reason, attempts in parked:
            COMMANDS_PARKED.labels(command=command.message_type).inc()
            log.warning("%s gateway parked %s %s (%s) after %d attempts: %s", gateway, command.message_type,
                        command.command_id, subject, attempts, reason)
        at = datetime.now(UTC)
        await self.pool.executemany(
            """INSERT INTO gateway.parked_commands
                   (command_id, gateway, subject, message_type, command, reason, attempts, parked_at, next_attempt_at)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)
               ON CONFLICT (command_id) DO UPDATE SET reason = EXCLUDED.reason,
                   attempts = gateway.parked_commands.attempts + EXCLUDED.attempts, parked_at = EXCLUDED.parked_at,
                   retried_at = NULL, next_attempt_at = EXCLUDED.next_attempt_at, redrives = 0,
                   given_up_at = NULL, resolved_at = NULL""",
            [(c.command_id, gateway, subject, c.message_type, c.model_dump_json(), reason[:2000], attempts, at,
              at + self.schedule.wait(0)) for c, subject, reason, attempts in parked])

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

    # -- re-drives ----------------------------------------------------------------------------

    async def resolve(self, command_ids: Iterable[UUID]) -> None:
        """These commands were answered (done, or refused): no longer parked, if they were.
        One statement for a batch; a command never parked changes nothing."""
        ids = list(command_ids)
        if ids:
            await self.pool.execute(
                "UPDATE gateway.parked_commands SET resolved_at = now(), next_attempt_at = NULL "
                "WHERE command_id = ANY($1::uuid[]) AND resolved_at IS NULL", ids)

    async def resolve_older_levels(self, levels: Sequence[tuple[str, str, datetime]], *, gateway: str) -> None:
        """Parked SetInventoryLevel commands of these (inventory item, location) pairs decided
        no later than the given instant: a push decided as late or later was answered, so they
        are nobody's work any more."""
        if levels:
            await self.pool.execute(
                """UPDATE gateway.parked_commands p SET resolved_at = now(), next_attempt_at = NULL
                   FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS l(item, location, issued_at)
                   WHERE p.gateway = $1 AND p.message_type = 'SetInventoryLevel' AND p.resolved_at IS NULL
                     AND p.command->>'inventory_item_id' = l.item AND p.command->>'location_id' = l.location
                     AND (p.command->>'issued_at')::timestamptz <= l.issued_at""",
                gateway, [item for item, _, _ in levels], [location for _, location, _ in levels],
                [at for _, _, at in levels])

    async def give_up_expired(self, gateway: str, now: datetime) -> list[asyncpg.Record]:
        """Stop re-driving this gateway's commands parked longer than the horizon ago."""
        return await self.pool.fetch(
            """UPDATE gateway.parked_commands SET given_up_at = $2, next_attempt_at = NULL
               WHERE gateway = $1 AND resolved_at IS NULL AND given_up_at IS NULL AND parked_at <= $3
               RETURNING command_id, message_type, subject, parked_at, redrives, reason""",
            gateway, now, now - timedelta(seconds=self.schedule.horizon_seconds))

    async def due(self, gateway: str, now: datetime) -> int:
        """How many of this gateway's parked commands are due for a re-drive."""
        return await self.pool.fetchval(
            """SELECT count(*) FROM gateway.parked_commands WHERE gateway = $1 AND resolved_at IS NULL
               AND given_up_at IS NULL AND coalesce(next_attempt_at, parked_at) <= $2""", gateway, now)

    async def claim_due(self, gateway: str, now: datetime, models: dict[str, type[BaseModel]], *,
                        limit: int, lease_seconds: float) -> list[DueCommand]:
        """Up to `limit` due commands, oldest parked first, each claimed for `lease_seconds`
        (its next_attempt_at moved on, so that another process re-driving the same gateway, or
        this one after a crash, takes it only once the lease has run out)."""
        rows = await self.pool.fetch(
            """UPDATE gateway.parked_commands p SET next_attempt_at = $4
               FROM (SELECT command_id FROM gateway.parked_commands
                     WHERE gateway = $1 AND resolved_at IS NULL AND given_up_at IS NULL
                       AND coalesce(next_attempt_at, parked_at) <= $2
                     ORDER BY parked_at, command_id LIMIT $3 FOR UPDATE SKIP LOCKED) due
               WHERE p.command_id = due.command_id
               RETURNING p.command_id, p.message_type, p.command::text AS command, p.subject, p.redrives,
                         p.parked_at""",
            gateway, now, limit, now + timedelta(seconds=lease_seconds))
        claimed = []
        for row in sorted(rows, key=lambda r: (r["parked_at"], r["command_id"])):
            model = models.get(row["message_type"])
            if model is None:
                log.warning("parked %s %s: the %s gateway does not know this command; left as it is",
                            row["message_type"], row["command_id"], gateway)
                continue
            claimed.append(DueCommand(model.model_validate_json(row["command"]), row["subject"], row["redrives"],
                                      row["parked_at"]))
        return claimed

    async def reschedule(self, due: DueCommand, reason: str, attempts: int, now: datetime) -> datetime:
        """A re-drive that failed: due again after the backoff (one more re-drive counted)."""
        next_at = now + self.schedule.wait(due.redrives + 1)
        await self.pool.execute(
            """UPDATE gateway.parked_commands SET redrives = redrives + 1, next_attempt_at = $2, reason = $3,
                   attempts = attempts + $4 WHERE command_id = $1 AND resolved_at IS NULL""",
            due.command.command_id, next_at, reason[:2000], attempts)
        return next_at


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


@dataclass(frozen=True)
class Redriven:
    """What one re-drive came to: `settled` when the target answered for good (done or
    refused; the gateway published the outcome), else why it still failed."""

    settled: bool
    reason: str = ""
    attempts: int = 1


class Redriver:
    """The circuit breaker of one gateway: re-drives its due parked commands once the target
    answers a probe. The gateway gives `probe` (raises while the target is unavailable) and
    `redrive` (sends one command, publishes its outcome if there is one)."""

    def __init__(self, parked: ParkedCommands, *, gateway: str, models: dict[str, type[BaseModel]],
                 probe: Callable[[], Awaitable[None]], redrive: Callable[[Any], Awaitable[Redriven]],
                 probe_interval_seconds: float, batch_size: int = 100, lease_seconds: float = 120.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.parked = parked
        self.gateway = gateway
        self.models = models
        self.probe = probe
        self.redrive = redrive
        self.probe_interval_seconds = probe_interval_seconds
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.target = Outage(f"{gateway} (probed: parked commands are due)", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a pass every probe interval (at once again while a pass was full)."""
        trouble = Outage(f"re-drives of the {self.gateway} gateway (PostgreSQL or Kafka)", log)
        while not stop.is_set():
            try:
                full = await self.once()
            except Exception as exc:  # noqa: BLE001 - a claimed command is due again once its lease ran out
                trouble.failed(exc)
                full = False
            else:
                trouble.recovered()
            if not full and await wait_or_stop(stop, self.probe_interval_seconds):
                return

    async def once(self) -> bool:
        """One pass: give up what passed the horizon; if commands are due, probe, and once the
        target answers re-drive them (one subject's in order, different subjects concurrently).
        True when the pass took a full batch (more may be due)."""
        now = self.clock()
        for row in await self.parked.give_up_expired(self.gateway, now):
            log.error("%s gateway: parked %s %s (%s) given up after %d re-drives since %s (%s): it needs a person",
                      self.gateway, row["message_type"], row["command_id"], row["subject"], row["redrives"],
                      row["parked_at"].isoformat(), row["reason"])
        if not await self.parked.due(self.gateway, now):
            return False
        try:
            await self.probe()
        except Exception as exc:  # noqa: BLE001 - the target is down: probe again later, log once
            self.target.failed(exc)
            return False
        self.target.recovered()
        due = await self.parked.claim_due(self.gateway, now, self.models, limit=self.batch_size,
                                          lease_seconds=self.lease_seconds)
        by_subject: dict[str, list[DueCommand]] = {}
        for command in due:
            by_subject.setdefault(command.subject, []).append(command)
        await asyncio.gather(*(self._in_order(commands) for commands in by_subject.values()))
        return len(due) >= self.batch_size

    async def _in_order(self, commands: list[DueCommand]) -> None:
        for due in commands:
            result = await self.redrive(due.command)
            if result.settled:
                await self.parked.resolve([due.command.command_id])
                log.info("%s gateway: parked %s %s (%s) re-driven after %d earlier re-drives", self.gateway,
                         due.command.message_type, due.command.command_id, due.subject, due.redrives)
            else:
                next_at = await self.parked.reschedule(due, result.reason, result.attempts, self.clock())
                log.info("%s gateway: re-drive of %s %s failed (%s); next at %s", self.gateway,
                         due.command.message_type, due.command.command_id, result.reason, next_at.isoformat())
