"""One way to build a read model (every projection in projections/ is one of these).

A projection reads one topic with its own consumer group (`projector.<name>`) and applies each
batch in one PostgreSQL transaction that also stores, per partition, the next offset to apply
(`readmodel.positions`): the rows never run ahead of, or behind, the positions. On assignment the
consumer seeks to those stored positions; it also commits them to its group, so that Kafka's own
tools see how far behind the read model is. Besides the positions, the last version applied per
aggregate is kept (`readmodel.applied_versions`): an event relayed twice (same event, another
offset) is applied once. Messages that do not decode, or whose handling keeps failing, take the
platform's one bad-message path (services/platform/kafka.py: dead letter, exception, metric),
and the projection goes on with the next.

A rebuild (`shopify-prima replay`, the RebuildProjection command handled by the projector)
empties the tables and the positions under the projection's advisory lock; the next batch sees
positions it did not expect and the consumer seeks back to zero.

Each read model declares its states and exception kinds once (`ReadModel`); the ops API, the
metrics, the alert rules and the dashboard use that declaration (tests check the latter two).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
from aiokafka import TopicPartition

from contracts.topics import TopicSpec
from services.platform.kafka import Delivery, DependencyUnavailable, Reposition

log = logging.getLogger("shopify_prima.projections")


@dataclass(frozen=True)
class ReadModel:
    """What a read model's rows can say, declared once."""

    name: str
    states: tuple[str, ...] = ()  # the `state` column's values (gauge shopify_prima_read_model_rows)
    exception_kinds: tuple[str, ...] = ()  # open exceptions by kind (gauge shopify_prima_exceptions_open)


class ProjectionHalted(DependencyUnavailable):
    """The read model is ahead of its topic (the topic was recreated): nothing is applied until
    it is rebuilt."""


@dataclass
class _State:
    expected: dict[int, int] = field(default_factory=dict)  # partition -> next offset we believe stored
    halted: str | None = None
    rebuilt: bool = False  # a rebuild emptied the read model: the next batch is dropped, and the consumer seeks


class Projection:
    """Subclasses set `read_model`, `topic`, `accepts`, `tables` and implement `apply`."""

    read_model: ClassVar[ReadModel]
    topic: ClassVar[TopicSpec]
    accepts: ClassVar[tuple[Any, ...]]
    tables: ClassVar[tuple[str, ...]]  # emptied by a rebuild

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.state = _State()

    @property
    def name(self) -> str:
        return self.read_model.name

    @property
    def group(self) -> str:
        return f"projector.{self.name}"

    @property
    def lock(self) -> str:
        return f"projection:{self.name}"

    # -- what a subclass provides -------------------------------------------------------------

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        """Apply messages in order, inside the caller's transaction."""
        raise NotImplementedError

    def version_of(self, message: Any) -> tuple[UUID, int] | None:
        """(aggregate id, version) of an aggregate's event, for the dedupe; None for facts."""
        aggregate_id = getattr(message, "aggregate_id", None)
        version = getattr(message, "aggregate_version", None)
        return (aggregate_id, version) if aggregate_id is not None and version is not None else None

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        """(rows by state, open exceptions by kind), every declared value named (zero included)."""
        return dict.fromkeys(self.read_model.states, 0), dict.fromkeys(self.read_model.exception_kinds, 0)

    # -- positions ------------------------------------------------------------------------------

    async def positions(self, db: asyncpg.Pool | asyncpg.Connection) -> dict[int, int]:
        rows = await db.fetch(
            "SELECT kafka_partition, next_offset FROM readmodel.positions WHERE projection = $1 AND topic = $2",
            self.name, self.topic.name)
        return {r["kafka_partition"]: r["next_offset"] for r in rows}

    async def on_assign(self, assigned: set[TopicPartition], end_offsets: dict[TopicPartition, int]
                        ) -> dict[TopicPartition, int]:
        """Where the consumer starts: the stored positions. A stored position past the topic's
        end means the topic was recreated under the read model: halt until rebuilt."""
        stored = await self.positions(self.pool)
        ahead = {tp.partition: (stored.get(tp.partition, 0), end) for tp, end in end_offsets.items()
                 if stored.get(tp.partition, 0) > end}
        if ahead:
            self.state.halted = (
                f"{self.name} is ahead of {self.topic.name} (partition: (stored, end) {ahead}): the topic was "
                f"recreated; rebuild it with `shopify-prima replay --projection {self.name}`")
            log.critical(self.state.halted)
        else:
            self.state.halted = None
        self.state.expected.update({tp.partition: stored.get(tp.partition, 0) for tp in assigned})
        return {tp: stored.get(tp.partition, 0) for tp in assigned}

    # -- the handler ------------------------------------------------------------------------------

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        """Apply a batch: one transaction, under the projection's lock, with its positions."""
        if self.state.halted:
            raise ProjectionHalted(self.state.halted)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.lock)
            stored = await self.positions(conn)
            partitions = {d.partition for d in deliveries if d.partition >= 0}
            if self.state.rebuilt or any(stored.get(p, 0) != self.state.expected.get(p, stored.get(p, 0))
                                         for p in partitions):
                self.state.rebuilt = False
                log.info("%s: stored positions moved (a rebuild ran): seeking to them", self.name)
                self.state.expected = {p: stored.get(p, 0) for p in self.state.expected}
                raise Reposition({TopicPartition(self.topic.name, p): off for p, off in self.state.expected.items()})
            fresh = [d for d in deliveries if d.partition < 0 or d.offset >= stored.get(d.partition, 0)]
            messages = await self._not_applied(conn, [d.message for d in fresh])
            if messages:
                await self.apply(conn, messages)
            advanced: dict[int, int] = {}
            for d in fresh:
                if d.partition >= 0:
                    advanced[d.partition] = max(advanced.get(d.partition, 0), d.offset + 1)
            if advanced:
                await conn.executemany(
                    """INSERT INTO readmodel.positions (projection, topic, kafka_partition, next_offset)
                       VALUES ($1, $2, $3, $4) ON CONFLICT (projection, topic, kafka_partition)
                       DO UPDATE SET next_offset = EXCLUDED.next_offset""",
                    [(self.name, self.topic.name, p, off) for p, off in advanced.items()])
            await self._rebuild_progress(conn, {**stored, **advanced})
        self.state.expected.update(advanced)

    async def _not_applied(self, conn: asyncpg.Connection, messages: list[Any]) -> list[Any]:
        """Drop aggregate events already applied (by aggregate id and version); record the rest."""
        versions: dict[UUID, int] = {}
        for message in messages:
            found = self.version_of(message)
            if found is not None:
                versions.setdefault(found[0], 0)
        if not versions:
            return messages
        rows = await conn.fetch(
            "SELECT aggregate_id, version FROM readmodel.applied_versions WHERE projection = $1 "
            "AND aggregate_id = ANY($2::uuid[])", self.name, list(versions))
        versions.update({r["aggregate_id"]: r["version"] for r in rows})
        fresh, newest = [], dict(versions)
        for message in messages:
            found = self.version_of(message)
            if found is None:
                fresh.append(message)
            elif found[1] > newest[found[0]]:
                newest[found[0]] = found[1]
                fresh.append(message)
        changed = [(self.name, aggregate_id, v) for aggregate_id, v in newest.items() if v != versions[aggregate_id]]
        if changed:
            await conn.executemany(
                """INSERT INTO readmodel.applied_versions (projection, aggregate_id, version) VALUES ($1, $2, $3)
                   ON CONFLICT (projection, aggregate_id) DO UPDATE SET version = EXCLUDED.version""", changed)
        return fresh

    # -- rebuild ----------------------------------------------------------------------------------

    async def reset(self, conn: asyncpg.Connection, target: dict[int, int], command_id: UUID) -> None:
        """Empty the read model, its positions and versions (inside the caller's transaction,
        which holds the projection's lock), and record the rebuild with the offsets it must reach."""
        await conn.execute(f"TRUNCATE {', '.join(self.tables)}")
        await conn.execute("DELETE FROM readmodel.positions WHERE projection = $1", self.name)
        await conn.execute("DELETE FROM readmodel.applied_versions WHERE projection = $1", self.name)
        self.state.rebuilt = True
        finished = all(offset == 0 for offset in target.values())
        await conn.execute(
            """INSERT INTO readmodel.rebuilds (projection, command_id, target, requested_at, finished_at)
               VALUES ($1, $2, $3::jsonb, now(), CASE WHEN $4 THEN now() END)
               ON CONFLICT (projection) DO UPDATE SET command_id = EXCLUDED.command_id, target = EXCLUDED.target,
               requested_at = EXCLUDED.requested_at, finished_at = EXCLUDED.finished_at""",
            self.name, command_id, json.dumps({str(p): o for p, o in target.items()}), finished)
        self.state.halted = None

    async def _rebuild_progress(self, conn: asyncpg.Connection, positions: dict[int, int]) -> None:
        row = await conn.fetchrow(
            "SELECT target FROM readmodel.rebuilds WHERE projection = $1 AND finished_at IS NULL", self.name)
        if row is None:
            return
        target = {int(p): o for p, o in json.loads(row["target"]).items()}
        if all(positions.get(p, 0) >= o for p, o in target.items()):
            await conn.execute("UPDATE readmodel.rebuilds SET finished_at = now() WHERE projection = $1", self.name)
