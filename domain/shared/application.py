"""What the event-sourced applications share: loading a batch's aggregates at once (from their
latest snapshots), and a unit of work that saves every aggregate a batch changed in one
transaction (with the notification log, the outbox), or none of them.

A decider hands a batch of facts to its application; the application loads the aggregates the
batch names at once (a batch of 500 facts would otherwise be a thousand round trips), applies
the facts in order, and commits once. A redelivered batch changes nothing: each aggregate
ignores what it has already applied.

Snapshots (the eventsourcing library's mechanism: `snapshotting_intervals` on the application
class, a second table `<name>_snapshots` that `services.setup` creates): when a save records an
aggregate's version that is a multiple of its interval, the aggregate at that version is
snapshotted (the interval is a setting: `<NAME>_SNAPSHOT_INTERVAL` in the application's env,
which Settings.eventsourcing_env fills in; the class's value when it is absent), so a load reads the latest snapshot and only the events after it. With PostgreSQL
a batch takes two queries whatever its size (the latest snapshot of each aggregate; the events
after each one). A snapshot is a cache, never the truth:
- it is stored only once it has come back from the transcoder exactly as it was taken
  (domain/shared/snapshots.py); one that cannot be encoded is logged and skipped, and never
  fails the batch whose save it follows (the events are already committed);
- one taken by another version of the aggregate's class, or that cannot be decoded, is passed
  over and the aggregate is replayed from its first event;
- without the snapshot table (services started before `services.setup` created it) loads read
  every event and saves take no snapshot, as before; said once in the log, and the table is
  looked for again a minute later (no failing query per batch).
The library's `repository` is left without the snapshot store: it replays every event, which is
what the tests compare the snapshot path against.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from time import monotonic
from typing import Any
from uuid import UUID

from eventsourcing.application import (
    Application,
    ProcessingEvent,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.shared.snapshots import (
    AggregateSnapshot,
    NotSnapshottable,
    fingerprint,
    same_state,
    state_of,
)

log = logging.getLogger("shopify_prima.snapshots")
MISSING_TABLE_RECHECK_SECONDS = 60.0  # without the snapshot table: how long before looking again
SNAPSHOT_INTERVAL = "SNAPSHOT_INTERVAL"  # env: events between snapshots, as <NAME>_SNAPSHOT_INTERVAL


@dataclass
class LoadStats:
    """What loads read since the application started (the benchmark and the tests read them)."""

    aggregates: int = 0  # found
    from_snapshot: int = 0  # of which started from a snapshot
    events: int = 0  # events read (after the snapshots)
    queries: int = 0  # PostgreSQL queries
    refused: int = 0  # snapshots passed over (another version of the class, undecodable)


@dataclass
class SnapshotStats:
    taken: int = 0
    failed: int = 0  # could not be taken or stored: logged, the aggregates replay further


def _postgres(recorder: object) -> bool:
    return hasattr(recorder, "datastore") and hasattr(recorder, "events_table_name")


def _missing_table(error: BaseException) -> bool:
    """PostgreSQL's undefined_table (the library wraps psycopg's errors in its own)."""
    cause = error.__cause__ or error
    return getattr(cause, "sqlstate", None) == "42P01" or "does not exist" in str(error)


class BatchApplication(Application[UUID]):
    snapshot_class = AggregateSnapshot

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.snapshot_intervals = self._configured_intervals()
        self.load_stats = LoadStats()
        self.snapshot_stats = SnapshotStats()
        self._said: set[str] = set()  # problems already logged at WARNING (then only counted)
        self._no_snapshot_table_until = 0.0  # monotonic time before which the missing table is not asked for
        for cls in self.snapshotting_intervals:
            fingerprint(cls)  # now, from the source this process imported (not a file edited since)

    def _configured_intervals(self) -> dict[type, int]:
        """Events between snapshots per aggregate class: the setting, for every class the
        application snapshots, else the class's own intervals. A bad value stops the start."""
        configured = self.env.get(SNAPSHOT_INTERVAL)
        if not configured:
            return dict(self.snapshotting_intervals)
        try:
            interval = int(configured)
        except ValueError:
            interval = 0
        if interval < 1:
            raise ValueError(f"{self.name.upper()}_{SNAPSHOT_INTERVAL} must be a whole number of events, "
                             f"at least 1: {configured!r}")
        return dict.fromkeys(self.snapshotting_intervals, interval)

    def construct_repository(self) -> Repository[UUID]:
        repository = super().construct_repository()
        repository.snapshot_store = None  # snapshots are read by load_many, which checks them
        return repository

    # -- loading ------------------------------------------------------------------------------

    def load_many(self, aggregate_ids: list[UUID]) -> dict[UUID, Aggregate]:
        """Several aggregates at once, each from its latest snapshot and the events after it:
        with PostgreSQL two queries for the whole batch; any other store (the in-memory one of
        the unit tests) one by one. An unknown id is absent from the answer."""
        return self._load(dict.fromkeys(aggregate_ids))

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        return self.load_many([aggregate_id]).get(aggregate_id)

    def _load(self, wanted: dict[UUID, int | None]) -> dict[UUID, Aggregate]:
        """The aggregates at the version given for each (None: the latest)."""
        if not wanted:
            return {}
        starts: dict[UUID, Aggregate] = {}
        for aggregate_id, stored in self._latest_snapshots(wanted).items():
            try:
                starts[aggregate_id] = self.mapper.to_domain_event(stored).mutate(None)
            except Exception as error:  # noqa: BLE001  # outdated or undecodable: replay from the first event
                self.load_stats.refused += 1
                self._say(f"refused {stored.topic} {type(error).__name__}", logging.INFO,
                          "snapshot of %s v%s passed over, replaying its events: %s", aggregate_id,
                          stored.originator_version, error)
        after = {i: starts[i].version if i in starts else 0 for i in wanted}
        events = self._events_after(after, wanted)
        found: dict[UUID, Aggregate] = {}
        for aggregate_id in wanted:
            stored_events = events.get(aggregate_id, [])
            aggregate = project_aggregate(starts.get(aggregate_id),
                                          [self.mapper.to_domain_event(s) for s in stored_events])
            self.load_stats.events += len(stored_events)
            if aggregate is not None:
                found[aggregate_id] = aggregate
                self.load_stats.aggregates += 1
                self.load_stats.from_snapshot += aggregate_id in starts
        return found

    def _latest_snapshots(self, wanted: dict[UUID, int | None]) -> dict[UUID, StoredEvent]:
        if self.snapshots is None or monotonic() < self._no_snapshot_table_until:
            return {}
        recorder = self.snapshots.recorder
        if not _postgres(recorder):
            found = {}
            for aggregate_id, upto in wanted.items():
                latest = recorder.select_events(aggregate_id, desc=True, limit=1, lte=upto)
                if latest:
                    found[aggregate_id] = latest[0]
            return found
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT s.originator_id, s.originator_version, s.topic, s.state "
            "FROM unnest(%s::uuid[], %s::bigint[]) AS w(originator_id, upto) CROSS JOIN LATERAL ("
            "  SELECT originator_id, originator_version, topic, state FROM {schema}.{table} s "
            "  WHERE s.originator_id = w.originator_id AND (w.upto IS NULL OR s.originator_version <= w.upto) "
            "  ORDER BY s.originator_version DESC LIMIT 1) s"
        ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
        try:
            rows = self._query(recorder, statement, [list(wanted), list(wanted.values())])
        except Exception as error:
            if not _missing_table(error):
                raise
            self._no_snapshot_table_until = monotonic() + MISSING_TABLE_RECHECK_SECONDS
            self._say("no snapshot table", logging.WARNING,
                      "no snapshot table %s.%s (run `python -m services.setup`): loading every event, "
                      "taking no snapshots", recorder.datastore.schema, recorder.events_table_name)
            return {}
        return {row.originator_id: row for row in rows}

    def _events_after(self, after: dict[UUID, int], upto: dict[UUID, int | None]) -> dict[UUID, list[StoredEvent]]:
        recorder = self.recorder
        if not _postgres(recorder):
            return {aggregate_id: recorder.select_events(aggregate_id, gt=version or None, lte=upto[aggregate_id])
                    for aggregate_id, version in after.items()}
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[]) AS w(originator_id, after, upto) "
            "JOIN {schema}.{table} e ON e.originator_id = w.originator_id AND e.originator_version > w.after "
            "  AND (w.upto IS NULL OR e.originator_version <= w.upto) "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
        events: dict[UUID, list[StoredEvent]] = {}
        for stored in self._query(recorder, statement, [list(after), list(after.values()),
                                                        [upto[i] for i in after]]):
            events.setdefault(stored.originator_id, []).append(stored)
        return events

    def _query(self, recorder: Any, statement: Any, params: list[Any]) -> list[StoredEvent]:
        self.load_stats.queries += 1
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        return [StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                            topic=row["topic"], state=bytes(row["state"])) for row in rows]

    # -- snapshots ----------------------------------------------------------------------------

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """After a save (eventsourcing 9.5 calls this from `save`, once the events are
        committed): snapshot each aggregate whose saved versions reached a multiple of its
        class's interval, at the highest such version. Never raises."""
        if self.snapshots is None or not self.snapshot_intervals:
            return
        due: dict[UUID, int] = {}
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshot_intervals.get(type(aggregate))
            if interval and event.originator_version % interval == 0:
                due[event.originator_id] = max(due.get(event.originator_id, 0), event.originator_version)
        if due:
            self.take_snapshots(due)

    def take_snapshot(self, aggregate_id: UUID, version: int | None = None, projector_func: Any = None) -> None:
        """The library's entry point, on this application's snapshots (never raises)."""
        if version is None:
            found = self.find(aggregate_id)
            if found is None:
                return
            version = found.version
        self.take_snapshots({aggregate_id: version})

    def take_snapshots(self, versions: dict[UUID, int]) -> int:
        """Snapshot these aggregates at these versions, as replayed from the store (so a load
        from the snapshot equals a replay), storing only the snapshots that come back from the
        transcoder exactly. How many were stored; a failure is logged and counted, never raised."""
        if self.snapshots is None:
            return 0
        if monotonic() < self._no_snapshot_table_until:
            self.snapshot_stats.failed += len(versions)  # no table to store them in (said once)
            return 0
        try:
            loaded = self._load(dict(versions))
        except Exception as error:  # noqa: BLE001
            self._snapshot_failed("load", None, error, len(versions))
            return 0
        records = []
        for aggregate_id, version in versions.items():
            aggregate = loaded.get(aggregate_id)
            try:
                if aggregate is None or aggregate.version != version:
                    raise LookupError(f"{aggregate_id} v{version} not in the event store")
                record = self.mapper.to_stored_event(self.snapshot_class.take(aggregate))
                back = self.mapper.to_domain_event(record).mutate(None)
                differences = same_state(state_of(aggregate), state_of(back))
                if differences:
                    raise NotSnapshottable("; ".join(differences[:3]))
                records.append(record)
            except Exception as error:  # noqa: BLE001
                self._snapshot_failed(type(aggregate).__name__, aggregate_id, error)
        if records:
            try:
                self.snapshots.recorder.insert_events(records)
            except Exception as error:  # noqa: BLE001
                self._snapshot_failed("store", None, error, len(records))
                return 0
        self.snapshot_stats.taken += len(records)
        return len(records)

    def _snapshot_failed(self, what: str, aggregate_id: UUID | None, error: Exception, count: int = 1) -> None:
        self.snapshot_stats.failed += count
        if _missing_table(error):
            what = "no snapshot table"
            self._no_snapshot_table_until = monotonic() + MISSING_TABLE_RECHECK_SECONDS
        self._say(f"{what} {type(error).__name__}", logging.WARNING,
                  "snapshot not taken (%s %s), the aggregate replays its events further: %s: %s",
                  what, aggregate_id or "", type(error).__name__, str(error)[:500])

    def _say(self, key: str, level: int, message: str, *args: Any) -> None:
        """Log a problem once per kind at `level`; repeats at DEBUG (they are counted)."""
        log.log(level if key not in self._said else logging.DEBUG, message, *args)
        self._said.add(key)

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
