"""The outbox relay: an application's notification log, in order, onto Kafka.

It knows nothing of any flow. A flow registers a `RelayTable`: its application, and for each
domain event type the messages it stands for (`Route`: topic, key, and how to build the message
from the event and its envelope). The order flow's table says that every Order event goes to the
order-events topic and SalesOrderRequested also to prima.commands.v1 as a CreateSalesOrder; the
inventory flow's says the same for its events and commands.

A relay's position is stored only after Kafka acknowledged every message up to it (at least
once; each message has a stable id for consumers to dedupe on). One relay per log runs at a time
(an advisory lock). A notification that cannot be turned into messages (an event type without a
route, a message that does not validate) is dead-lettered with its error and the relay goes on:
it never stops the log behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid5

import asyncpg
from eventsourcing.application import Application
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from contracts.topics import DEAD_LETTERS, TopicSpec
from services.platform.kafka import Outgoing, Record, dead_letter, error_text, headers_for, publish_all
from services.platform.metrics import OUTBOX_POSITION, OUTBOX_RELAYED
from services.platform.runner import Outage, Worker, backoff
from services.platform.settings import Settings

S = TypeVar("S")  # what a flow knows an aggregate by (a Shopify order id; a SKU and location)
log = logging.getLogger("shopify_prima.outbox")
SUBJECT_CACHE = 200_000


def event_id(aggregate_id: UUID, version: int) -> UUID:
    """The stable id of an aggregate's event: the same every time it is relayed."""
    return uuid5(aggregate_id, f"event/{version}")


@dataclass(frozen=True)
class Envelope(Generic[S]):
    """What every relayed event has, whatever its type."""

    event_id: UUID
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int
    subject: S


@dataclass(frozen=True)
class Route(Generic[S]):
    """One message a domain event stands for. `build` may return None (no message this time)."""

    topic: TopicSpec
    key: Callable[[S], bytes]
    build: Callable[[Envelope[S], Any], BaseModel | None]


@dataclass(frozen=True)
class RelayTable(Generic[S]):
    """A flow's relay: its notification log and what each event type becomes.

    `routes` maps a domain event class's qualified name ("Order.SalesOrderRequested") to its
    routes; `subject_of` reads the subject from an aggregate's first event."""

    name: str
    lock: str
    application: Callable[[Settings], Application]
    routes: dict[str, Sequence[Route[S]]]
    subject_of: Callable[[Any], S]


class Relay(Generic[S]):
    def __init__(self, table: RelayTable[S], settings: Settings, broker: KafkaBroker | None,
                 app: Application | None = None) -> None:
        self.table = table
        self.settings = settings
        self.broker = broker
        self.app = app if app is not None else table.application(settings)
        self.subjects: OrderedDict[UUID, S] = OrderedDict()

    # -- notifications to messages (no I/O but the subject lookup) ----------------------------

    def subject(self, domain_event: Any) -> S:
        aggregate_id = domain_event.originator_id
        found = self.subjects.get(aggregate_id)
        if found is None:
            first = domain_event if domain_event.originator_version == 1 else self.app.mapper.to_domain_event(
                self.app.recorder.select_events(aggregate_id, lte=1)[0])
            found = self.table.subject_of(first)
            self.subjects[aggregate_id] = found
            if len(self.subjects) > SUBJECT_CACHE:
                self.subjects.popitem(last=False)
        else:
            self.subjects.move_to_end(aggregate_id)
        return found

    def messages(self, notification: Any) -> list[Outgoing]:
        """The messages one notification stands for (raises when it cannot be relayed)."""
        domain_event = self.app.mapper.to_domain_event(notification)
        name = type(domain_event).__qualname__
        routes = self.table.routes.get(name)
        if routes is None:
            raise LookupError(f"no route for {name} in the {self.table.name} relay table")
        subject = self.subject(domain_event)
        envelope = Envelope(
            event_id=event_id(domain_event.originator_id, domain_event.originator_version),
            aggregate_id=domain_event.originator_id, aggregate_version=domain_event.originator_version,
            timestamp=domain_event.timestamp, notification_id=notification.id, subject=subject,
        )
        out = []
        for route in routes:
            message = route.build(envelope, domain_event)
            if message is not None:
                out.append(Outgoing(route.topic.name, route.key(subject), message,
                                    headers_for(message, correlation_id=str(envelope.aggregate_id),
                                                causation_id=str(envelope.event_id),
                                                event_type=getattr(message, "event_type", None) or
                                                getattr(message, "message_type", type(message).__name__))))
        return out

    def read(self, after: int) -> tuple[list[Outgoing], int | None]:
        """The messages of the notifications after `after`, and the last notification id read."""
        notifications = self.app.recorder.select_notifications(after + 1, self.settings.relay_batch_size)
        out: list[Outgoing] = []
        for notification in notifications:
            try:
                out.extend(self.messages(notification))
            except Exception as exc:  # noqa: BLE001 - one bad notification never stops the log
                out.append(self._dead_letter(notification, exc))
        return out, (notifications[-1].id if notifications else None)

    def _dead_letter(self, notification: Any, exc: Exception) -> Outgoing:
        """A notification that cannot be relayed, kept whole (its stored event) as a dead letter."""
        record = Record(topic=f"notification-log:{self.table.name}", partition=0, offset=notification.id, key=None,
                        value=bytes(notification.state), headers=[("event_topic", notification.topic.encode())])
        letter = dead_letter(f"outbox-relay.{self.table.name}", record, "handler_failed", error_text(exc, 2000), 1)
        return Outgoing(DEAD_LETTERS.name, str(letter.dead_letter_id).encode(), letter)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, worker: Worker, pool: asyncpg.Pool) -> None:
        """Relay while holding this log's lock (taken again after a PostgreSQL restart)."""
        await worker.exclusive(pool, f"outbox-relay:{self.table.lock}", lambda: self._relay(worker, pool))

    async def _relay(self, worker: Worker, pool: asyncpg.Pool) -> None:
        await pool.execute("INSERT INTO outbox.relay_position VALUES ($1, 0) ON CONFLICT DO NOTHING", self.table.name)
        position = await pool.fetchval("SELECT position FROM outbox.relay_position WHERE relay = $1", self.table.name)
        log.info("relaying %s from notification %s", self.table.name, position)
        outage = Outage(f"relay {self.table.name}", log)
        while not worker.stop.is_set():
            try:
                messages, last = await asyncio.to_thread(self.read, position)
                if last is None:
                    outage.recovered()
                    await worker.sleep(self.settings.relay_poll_interval_seconds)
                    continue
                await publish_all(self.broker, messages)
                await pool.execute("UPDATE outbox.relay_position SET position = $2 WHERE relay = $1",
                                   self.table.name, last)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL or Kafka down: wait, then again
                outage.failed(exc)
                await worker.sleep(backoff(outage.attempts, 0.5, 15.0))
                continue
            outage.recovered()
            position = last
            for out in messages:
                OUTBOX_RELAYED.labels(topic=out.topic).inc()
            OUTBOX_POSITION.labels(relay=self.table.name).set(position)

    def close(self) -> None:
        self.app.close()
