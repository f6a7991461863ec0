"""Kafka, in one place, through FastStream: the broker, the wire format, and the durable consumer
every decider, gateway and projection uses.

Wire format: the body is the message's JSON (pydantic), the key says what it is about, and every
message, whoever produces it, carries the same headers (`HEADERS`, documented per topic in
contracts/asyncapi.yaml): `message_type` (the model, what consumers decode by), `content-type:
application/json`, `correlation_id` (the producer's, else FastStream's random id of the
message), `causation_id` where the producer has one, and `event_type` on what the outbox relay
relays. Nothing else: an `Outgoing` with another header is refused when it is made, and
`wire_headers` is the one place that sets what goes on the wire, content-type included
(FastStream labels a bytes body with an EMPTY content-type unless the headers say otherwise).

A consumer (`Consumer`) is one consumer group over its topics, handling messages in batches:
- it decodes each record by its `message_type` into the model its topic declares
  (contracts/topics.py); a type the group does not handle is skipped (quietly: topics carry
  several kinds of message); a record that does not decode, or breaks a rule of
  contracts/validation.py (a NUL, an id beyond int64, an amount beyond numeric(18, 2), a
  duplicated JSON key, JSON nested too deep...), is dead-lettered at once: it never reaches a
  handler, a projection or an aggregate;
- it calls the handler with the batch and commits the offsets only after the handler returned
  (the work is durable): at least once, never lost;
- a handler that fails because a dependency is down (PostgreSQL, Kafka, a pool timeout) is retried
  until the dependency is back, with capped exponential backoff, logged once per outage; the
  batch is redelivered (FastStream's nack seeks back) after each wait, so the process never spins;
- any other failure is retried `handler_max_attempts` times with backoff; then the batch is
  handled one message at a time, so the one that fails is found, and that message is published
  to the dead-letter topic with its error (an exception record; a metric counts it). The rest
  of the batch goes on: no partition is pinned forever;
- `RedriveDeadLetter` operator commands for the group (the group also reads the operations
  topic) hand the dead letter to the handler again; success publishes DeadLetterRedriven.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid5

import asyncpg
from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.platform import DeadLetter, DeadLetterRedriven, RedriveDeadLetter
from contracts.topics import DEAD_LETTERS, OPERATIONS, TOPICS, TopicSpec
from contracts.validation import InvalidJSON, check_json
from services.platform.metrics import DEAD_LETTERED, HANDLER_RETRIES, MESSAGES_SKIPPED
from services.platform.runner import Outage, backoff
from services.platform.settings import Settings

M = TypeVar("M")
log = logging.getLogger("shopify_prima.kafka")
DEAD_LETTER_NAMESPACE = UUID("5b0c3c5e-64a4-4f4b-9d7e-6f1d3c2a9e11")
CONTENT_TYPE = "application/json"


# ------------------------------------------------------------------------------ the broker


def make_broker(settings: Settings, service: str) -> KafkaBroker:
    """Idempotent producer with acks=all: a publish returns only once every in-sync replica has
    the message, and a retried send is never written twice."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"shopify-prima-{service}",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=settings.kafka_max_message_bytes,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)],
        logger=None,
    )


# ----------------------------------------------------------------------------- wire format


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


# The headers a message may carry, and no other (contracts/export.py documents them per topic).
HEADERS = ("message_type", "content-type", "correlation_id", "causation_id", "event_type")


def headers_for(message: BaseModel, *, correlation_id: str | None = None, causation_id: str | None = None,
                event_type: str | None = None) -> dict[str, str]:
    """The headers every message carries (the module docstring says which)."""
    headers = {
        "message_type": str(getattr(message, "message_type", type(message).__name__)),
        "content-type": CONTENT_TYPE,
    }
    if correlation_id:
        headers["correlation_id"] = str(correlation_id)
    if causation_id:
        headers["causation_id"] = str(causation_id)
    if event_type:
        headers["event_type"] = str(event_type)
    return headers


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: where, under which key, with which headers (`headers_for`'s when
    None). A header outside HEADERS is refused here, where the producer makes the message."""

    topic: str
    key: bytes
    message: BaseModel
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        undocumented = sorted(set(self.headers or ()) - set(HEADERS))
        if undocumented:
            raise ValueError(f"header(s) {undocumented} are not among the documented ones {list(HEADERS)}")


def wire_headers(out: Outgoing) -> dict[str, str]:
    """The headers `out` is published with: the producer's (else headers_for's), always with
    its message_type and content-type application/json (the body is always JSON)."""
    headers = dict(out.headers) if out.headers is not None else headers_for(out.message)
    headers.setdefault("message_type", headers_for(out.message)["message_type"])
    headers["content-type"] = CONTENT_TYPE
    return headers


async def publish_all(broker: KafkaBroker, messages: Iterable[Outgoing]) -> int:
    """Send every message without waiting for each, then wait until Kafka acknowledged them all
    (raises if any send failed). Returns how many were sent. A producer whose sequence Kafka
    refuses is replaced before the error is raised, so that the caller's next try can succeed."""
    futures = []
    try:
        for out in messages:
            futures.append(await broker.publish(encode(out.message), out.topic, key=out.key,
                                                headers=wire_headers(out), no_confirm=True))
        pending = [f for f in futures if inspect.isawaitable(f)]  # FastStream's test broker confirms at once
        results = await asyncio.gather(*pending, return_exceptions=True) if pending else []
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
    except Exception as exc:
        if producer_broken(exc) and hasattr(broker, "_connection_kwargs"):
            await renew_producer(broker)  # the caller sends again (at least once) with the new one
        raise
    return len(futures)


async def publish_within(broker: KafkaBroker, messages: Iterable[Outgoing], timeout: float) -> int:
    """publish_all, but give up waiting after `timeout` seconds (TimeoutError) WITHOUT cancelling
    the sends: a produce cancelled in flight leaves the idempotent producer's sequence numbers
    with a gap, and the broker then refuses every later batch of that partition
    (OutOfOrderSequenceNumber) for good. The sends go on in the background; at least once."""
    task = asyncio.ensure_future(publish_all(broker, list(messages)))
    task.add_done_callback(_forget_result)
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        raise TimeoutError(f"Kafka did not acknowledge within {timeout:g}s (the send goes on)")
    return task.result()


def _forget_result(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure is no "exception was never retrieved"


def producer_broken(exc: BaseException) -> bool:
    """The idempotent producer cannot go on (its sequence or epoch is refused): a new one must
    be started. aiokafka does not recover from these by itself."""
    from aiokafka.errors import OutOfOrderSequenceNumber, UnknownProducerId

    try:
        from aiokafka.errors import InvalidProducerEpoch
    except ImportError:  # pragma: no cover
        InvalidProducerEpoch = OutOfOrderSequenceNumber  # noqa: N806
    return isinstance(exc, (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch))


async def renew_producer(broker: KafkaBroker) -> None:
    """Replace the broker's producer with a new one (a new producer id, sequence numbers from
    zero), leaving its subscribers alone. FastStream has no call for this, so this reaches into
    its broker config (the one place that does): the producer FastStream made at start is
    disconnected and one built from the same connection settings is connected in its place."""
    import aiokafka
    from faststream._internal.parser import DefaultCodec

    config = broker.config
    try:
        await config.producer.disconnect()
    except Exception as exc:  # noqa: BLE001 - it is broken already
        log.debug("stopping the refused producer: %s", exc)
    producer = aiokafka.AIOKafkaProducer(**broker._connection_kwargs)  # noqa: SLF001
    await config.producer.connect(producer, serializer=config.fd_config._serializer,  # noqa: SLF001
                                  codec=config.broker_codec or DefaultCodec())
    log.warning("the Kafka producer's sequence was refused: a new producer is in place")


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def message_type_of(record: Any) -> str | None:
    """The record's message_type header, else the body's "message_type" field."""
    found = _header(record, "message_type")
    if found:
        return found
    try:
        body = json.loads(record.value)
    except (ValueError, TypeError, RecursionError):
        return None
    value = body.get("message_type") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """A decoded message and where it came from."""

    message: M
    topic: str
    partition: int
    offset: int
    key: bytes | None
    redrive_of: UUID | None = None  # a re-driven dead letter


class Undecodable(Exception):
    pass


_ADAPTERS: dict[int, TypeAdapter] = {}


def _adapter(model: Any) -> TypeAdapter:
    found = _ADAPTERS.get(id(model))
    if found is None:
        found = _ADAPTERS[id(model)] = TypeAdapter(model)
    return found


def decode_record(record: Any, accepts: dict[str, Any]) -> BaseModel | None:
    """The record's message if its type is one the group handles; None for a type the topic
    carries but the group does not handle. Raises Undecodable otherwise."""
    message_type = message_type_of(record)
    spec = TOPICS.get(record.topic)
    model = accepts.get(message_type or "")
    if model is None:
        if spec is not None and message_type in spec.message_types:
            return None  # a message of the topic that this group has no business with
        raise Undecodable(f"message_type {message_type!r} is not one {record.topic} carries")
    try:  # contracts/validation.py: the JSON rules here, the models' field rules below
        check_json(record.value)
    except InvalidJSON as exc:
        raise Undecodable(f"{message_type} does not validate: not JSON within the rules: {exc}") from exc
    try:
        return _adapter(model).validate_json(record.value)
    except ValidationError as exc:
        raise Undecodable(f"{message_type} does not validate: {exc.error_count()} error(s), first: "
                          f"{_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


# --------------------------------------------------------------------- failure classification


class DependencyUnavailable(Exception):
    """Raised by a handler when something it needs is not there yet (not the message's fault)."""


def is_dependency_failure(exc: BaseException) -> bool:
    """PostgreSQL, Kafka or the network failed, not the message: retry until it is back."""
    if isinstance(exc, DependencyUnavailable):
        return True
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        NodeNotReadyError,
        RequestTimedOutError,
    )

    dependency = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                  asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError,
                  KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)
    if isinstance(exc, dependency):
        return True
    try:
        import psycopg
        import psycopg_pool

        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)):
            return True
    except ImportError:  # pragma: no cover
        pass
    from eventsourcing.persistence import InterfaceError, OperationalError

    if isinstance(exc, (InterfaceError, OperationalError)):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_dependency_failure(cause)


# ------------------------------------------------------------------------------ dead letters

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def error_text(exc: BaseException, limit: int = 500) -> str:
    """An exception as a log line and a dead letter may carry it: pydantic's errors without the
    input values, no NUL, bounded, and anything like an e-mail address masked (a message's data
    may be a customer's)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        text = f"{exc.error_count()} validation error(s), first at {'.'.join(map(str, first['loc']))}: {first['msg']}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return _EMAIL.sub("<e-mail>", text.replace("\x00", "\\x00")[: limit * 2])[:limit]



def dead_letter(group: str, record: Any, reason: str, error: str, attempts: int) -> DeadLetter:
    """The dead letter of a record (topic, partition, offset, key, value, headers) a group gave
    up on: kept whole, its id stable for the group and position (a repeat is the same letter).
    Logged without the body (it may carry customer data)."""
    clean = _clean
    log.error("%s: %s[%s]@%s dead-lettered: %s", group, record.topic, record.partition, record.offset, error[:300])
    DEAD_LETTERED.labels(group=group, topic=record.topic, reason=reason).inc()
    return DeadLetter(
        dead_letter_id=uuid5(DEAD_LETTER_NAMESPACE, f"{group}/{record.topic}/{record.partition}/{record.offset}"),
        group=group, topic=record.topic, partition=record.partition, offset=record.offset,
        key_base64=base64.b64encode(record.key).decode() if record.key is not None else None,
        value_base64=base64.b64encode(record.value or b"").decode(),
        headers={clean(k): clean(v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                 for k, v in record.headers or ()},
        original_message_type=clean(message_type_of(record) or "") or None, reason=reason,
        error=clean(error)[:2000], attempts=attempts, dead_lettered_at=datetime.now(UTC),
    )


# ------------------------------------------------------------------------------ the consumer


class Reposition(Exception):
    """Raised by a handler to move the group to other offsets (a projection being rebuilt):
    the batch is dropped, the consumer seeks there, and those offsets are committed."""

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        super().__init__(f"reposition to {positions}")
        self.positions = positions


Handler = Callable[[list[Delivery[Any]]], Awaitable[None]]
# (assigned partitions, their end offsets) -> where to start in each
AssignHook = Callable[[set[TopicPartition], dict[TopicPartition, int]], Awaitable[dict[TopicPartition, int]]]


class _Listener(ConsumerRebalanceListener):
    """On assignment, seek to the positions the hook gives (a projection's own positions)."""

    def __init__(self, consumer: Consumer) -> None:
        self.owner = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        kafka_consumer = self.owner.subscriber.consumer if self.owner.subscriber else None
        if self.owner.on_assign is None or kafka_consumer is None or not assigned:
            return
        end_offsets = await kafka_consumer.end_offsets(list(assigned))
        for tp, offset in (await self.owner.on_assign(set(assigned), end_offsets)).items():
            kafka_consumer.seek(tp, offset)


class Consumer:
    """One consumer group over its topics, handling batches (module docstring)."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: Settings,
        *,
        group: str,
        topics: Sequence[TopicSpec],
        accepts: Iterable[Any],
        handler: Handler,
        operations: bool = True,
        max_records: int | None = None,
        on_assign: AssignHook | None = None,
        start_from: str = "earliest",
        operations_topic: str = OPERATIONS.name,
        dead_letter_topic: str = DEAD_LETTERS.name,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.group = group
        self.handler = handler
        self.on_assign = on_assign
        self.accepts = _accepted(accepts)
        self.operations_topic = operations_topic
        self.dead_letter_topic = dead_letter_topic
        self.topics = [t.name for t in topics] + ([operations_topic] if operations else [])
        self.attempts: dict[tuple[str, int, int], int] = {}
        self.outage = Outage(f"{group}: a dependency", log)
        self.subscriber = broker.subscriber(
            *self.topics, group_id=group, auto_offset_reset=start_from, ack_policy=AckPolicy.MANUAL,
            batch=True, max_records=max_records or settings.consumer_batch_size,
            batch_timeout_ms=settings.consumer_batch_wait_ms, listener=_Listener(self),
            max_poll_interval_ms=600_000, decoder=_raw,
        )
        self.subscriber(self._on_batch)

    def seek(self, offset: int = 0) -> list[TopicPartition]:
        """Move every assigned partition (operations topic aside) to `offset`; what was moved."""
        kafka_consumer = self.subscriber.consumer
        if kafka_consumer is None:
            return []
        moved = [tp for tp in kafka_consumer.assignment() if tp.topic != self.operations_topic]
        for tp in moved:
            kafka_consumer.seek(tp, offset)
        return moved

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The end offsets of every partition of the group's topics (operations topic aside)."""
        kafka_consumer = self.subscriber.consumer
        if kafka_consumer is None:
            raise DependencyUnavailable(f"{self.group} is not consuming yet")
        partitions = [TopicPartition(topic, p) for topic in self.topics if topic != self.operations_topic
                      for p in sorted(kafka_consumer.partitions_for_topic(topic) or ())]
        return await kafka_consumer.end_offsets(partitions)

    async def _on_batch(self, msg: KafkaMessage) -> None:
        raw = msg.raw_message
        records = tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        try:
            await self._handle(records)
        except Reposition as exc:
            for tp, offset in exc.positions.items():
                msg.consumer.seek(tp, offset)
            await msg.ack()
            return
        except _Redeliver:
            await msg.nack()
            return
        except Exception as exc:  # noqa: BLE001 - e.g. Kafka down while publishing dead letters
            if not is_dependency_failure(exc):
                log.exception("%s: unexpected failure around the handler; the batch is delivered again", self.group)
            self.outage.failed(exc)
            await asyncio.sleep(backoff(self.outage.attempts, self.settings.handler_backoff_initial_seconds,
                                        self.settings.handler_backoff_max_seconds))
            await msg.nack()
            return
        await msg.ack()

    async def _handle(self, records: Sequence[Any]) -> None:
        deliveries: list[Delivery[Any]] = []
        letters: list[DeadLetter] = []
        for record in records:
            if record.topic == self.operations_topic and message_type_of(record) == "RedriveDeadLetter":
                delivery = self._redrive(record)
                if delivery is not None:
                    deliveries.append(delivery)
                continue
            try:
                message = decode_record(record, self.accepts)
            except Undecodable as exc:
                letters.append(self._letter(record, "undecodable", str(exc), 0))
                continue
            if message is None:
                MESSAGES_SKIPPED.labels(group=self.group, topic=record.topic).inc()
                continue
            deliveries.append(Delivery(message, record.topic, record.partition, record.offset, record.key))
        if deliveries:
            letters += await self._run(records[0], deliveries)
        if letters:
            await self._dead_letter(letters)
        redriven = [d.redrive_of for d in deliveries if d.redrive_of is not None
                    and not any(letter.dead_letter_id == d.redrive_of for letter in letters)]
        if redriven:
            now = datetime.now(UTC)
            await publish_all(self.broker, [
                Outgoing(self.dead_letter_topic, str(i).encode(), DeadLetterRedriven(dead_letter_id=i, group=self.group,
                                                                                 redriven_at=now))
                for i in redriven])

    async def _run(self, first: Any, deliveries: list[Delivery[Any]]) -> list[DeadLetter]:
        """Run the handler; the dead letters of what could not be handled."""
        position = (first.topic, first.partition, first.offset)
        try:
            await self.handler(deliveries)
        except Reposition:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            if is_dependency_failure(exc):
                self.outage.failed(exc)
                await asyncio.sleep(backoff(self.outage.attempts, self.settings.handler_backoff_initial_seconds,
                                            self.settings.handler_backoff_max_seconds))
                raise _Redeliver from exc
            attempts = self.attempts.get(position, 0) + 1
            self.attempts[position] = attempts
            HANDLER_RETRIES.labels(group=self.group).inc()
            if attempts < self.settings.handler_max_attempts:
                log.warning("%s: handling %d message(s) from %s[%s]@%s failed (attempt %d of %d), retrying: %s",
                            self.group, len(deliveries), *position, attempts, self.settings.handler_max_attempts,
                            error_text(exc))
                await asyncio.sleep(backoff(attempts, self.settings.handler_backoff_initial_seconds,
                                            self.settings.handler_backoff_max_seconds))
                raise _Redeliver from exc
            self.attempts.pop(position, None)
            log.error("%s: %d message(s) from %s[%s]@%s failed %d times (%s); handling them one by one to find the bad one",
                      self.group, len(deliveries), *position, attempts, error_text(exc))
            return await self._one_by_one(deliveries, attempts)
        self.attempts.pop(position, None)
        self.outage.recovered()
        return []

    async def _one_by_one(self, deliveries: list[Delivery[Any]], attempts: int) -> list[DeadLetter]:
        letters = []
        for delivery in deliveries:
            try:
                await self.handler([delivery])
            except Exception as exc:  # noqa: BLE001
                if is_dependency_failure(exc):
                    raise _Redeliver from exc  # not the message's fault after all: all again later
                letters.append(self._letter_of(delivery, error_text(exc, 2000), attempts + 1))
        return letters

    def _letter(self, record: Any, reason: str, error: str, attempts: int) -> DeadLetter:
        return dead_letter(self.group, record, reason, error, attempts)

    def _letter_of(self, delivery: Delivery[Any], error: str, attempts: int) -> DeadLetter:
        message = delivery.message
        record = Record(delivery.topic, delivery.partition, delivery.offset, delivery.key,
                         encode(message) if isinstance(message, BaseModel) else b"",
                         [(k, v.encode()) for k, v in headers_for(message).items()])
        letter = self._letter(record, "handler_failed", error, attempts)
        if delivery.redrive_of is not None:
            letter = letter.model_copy(update={"dead_letter_id": delivery.redrive_of})
        return letter

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        await publish_all(self.broker, [Outgoing(self.dead_letter_topic, str(letter.dead_letter_id).encode(), letter)
                                        for letter in letters])

    def _redrive(self, record: Any) -> Delivery[Any] | None:
        try:
            command = RedriveDeadLetter.model_validate_json(record.value)
        except ValidationError:
            log.error("%s: an unreadable RedriveDeadLetter at %s[%s]@%s skipped", self.group, record.topic,
                      record.partition, record.offset)
            return None
        if command.group != self.group:
            return None
        original = Record(command.topic, -1, -1,
                           base64.b64decode(command.key_base64) if command.key_base64 else None,
                           base64.b64decode(command.value_base64),
                           [(k, v.encode()) for k, v in command.headers.items()])
        try:
            message = decode_record(original, self.accepts)
        except Undecodable as exc:
            log.error("%s: dead letter %s still does not decode: %s", self.group, command.dead_letter_id, exc)
            return None
        if message is None:
            return None
        log.info("%s: re-driving dead letter %s (%s)", self.group, command.dead_letter_id, command.topic)
        return Delivery(message, command.topic, -1, -1, original.key, redrive_of=command.dead_letter_id)


def _clean(text: str) -> str:
    """Text fit for PostgreSQL (no NUL) and for a log line (bounded)."""
    return text.replace("\x00", "\\x00")[:2000]


async def _raw(msg: Any, original: Any = None) -> None:
    """FastStream's body decoder, switched off: the consumer decodes each record itself, by its
    message_type, into the model its topic declares."""
    return


class _Redeliver(Exception):
    """Nack the batch: it is delivered again (after the backoff already waited)."""


@dataclass(frozen=True)
class Record:
    """What a dead letter keeps of a message (a consumer record has these attributes too)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _accepted(accepts: Iterable[Any]) -> dict[str, Any]:
    """message_type -> model (or the topic's union, for OrderEvent/StockEvent)."""
    found: dict[str, Any] = {}
    for model in accepts:
        if isinstance(model, type) and issubclass(model, BaseModel):
            found[model.model_fields["message_type"].default] = model
        else:  # a union of models sharing a message_type (Annotated[A | B, Field(discriminator="event_type")])
            from contracts.topics import members_of

            names = {m.model_fields["message_type"].default for m in members_of(model)}
            for name in names:
                found[name] = model
    return found
