"""What the event-sourced applications share: loading a batch's aggregates at once, and a unit of
work that saves every aggregate a batch changed in one transaction (with the notification log,
the outbox), or none of them.

A decider hands a batch of facts to its application; the application loads the aggregates the
batch names in one query (a batch of 500 facts would otherwise be a thousand round trips),
applies the facts in order, and commits once. A redelivered batch changes nothing: each
aggregate ignores what it has already applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent


class BatchApplication(Application[UUID]):
    def load_many(self, aggregate_ids: list[UUID]) -> dict[UUID, Aggregate]:
        """Several aggregates at once: with PostgreSQL one query for all their events; any other
        store (the in-memory one of the unit tests) one by one."""
        recorder = self.recorder
        if not (hasattr(recorder, "datastore") and hasattr(recorder, "events_table_name")):
            found = {}
            for aggregate_id in aggregate_ids:
                try:
                    found[aggregate_id] = self.repository.get(aggregate_id)
                except AggregateNotFoundError:
                    pass
            return found
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [aggregate_ids])
            rows = cursor.fetchall()
        events: dict[UUID, list[Any]] = {}
        for row in rows:
            stored = StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                                 topic=row["topic"], state=bytes(row["state"]))
            events.setdefault(stored.originator_id, []).append(self.mapper.to_domain_event(stored))
        return {aggregate_id: project_aggregate(None, domain_events) for aggregate_id, domain_events in events.items()}

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)


class UnitOfWork:
    """Aggregates loaded for one batch: each loaded once, saved once, all in one transaction."""

    def __init__(self, app: BatchApplication) -> None:
        self.app = app
        self.loaded: dict[UUID, Aggregate | None] = {}

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in self.loaded:
            self.loaded[aggregate_id] = self.app.find(aggregate_id)
        return self.loaded[aggregate_id]

    def preload(self, aggregate_ids: Iterable[UUID]) -> None:
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self.loaded]
        if wanted:
            found = self.app.load_many(wanted)
            for aggregate_id in wanted:
                self.loaded[aggregate_id] = found.get(aggregate_id)

    def add(self, aggregate: Aggregate) -> Aggregate:
        self.loaded[aggregate.id] = aggregate
        return aggregate

    def commit(self) -> int:
        """Save every aggregate with new events (one transaction); how many were saved."""
        pending = [a for a in self.loaded.values() if a is not None and a.pending_events]
        if pending:
            self.app.save(*pending)
        return len(pending)
