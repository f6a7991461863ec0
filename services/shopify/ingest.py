"""Shopify webhook ingest: verify, keep, publish, then acknowledge.

What a delivery is answered (Shopify retries anything but 2xx for hours, then gives up):
- 413 when the body is larger than webhook_max_body_bytes, as Content-Length declares it or as
  counted while a chunked body streams in: before the body is read whole and before the HMAC;
  408 when the sender takes longer than webhook_read_timeout_seconds to send it;
- 401 when X-Shopify-Hmac-Sha256 does not match the body; 400 when the headers are not a delivery
  this endpoint takes (not an order topic, no X-Shopify-Webhook-Id or one longer than 255
  characters). Nothing is stored or published for these;
- 200 "accepted" once the raw body is stored (ingest.raw_webhooks) and the normalized fact
  (ShopifyOrderReceived) is on Kafka (acks=all); 200 "duplicate" for a webhook id already
  published (the aggregate ignores any duplicate that slips through);
- 200 "quarantined" for a validly signed body that does not normalize (not JSON, not an order, or
  an order too large for a Kafka message): the body is kept, quarantined, and an exception record
  is on Kafka: a DeadLetter of group "shopify-ingest" (the raw body, the Shopify headers), listed by
  `shopify-prima dead-letters list`. Not a 4xx: Shopify would only retry what can never parse and,
  after enough failures, drop the subscription. Once the normalizer is fixed,
  `shopify-prima dead-letters redrive <id>` has this process normalize the stored body again and
  publish it (RedriveDeadLetter on the operations topic, consumer group "shopify-ingest");
- 503 with Retry-After when PostgreSQL or Kafka does not answer within
  ingest_publish_timeout_seconds: at once, never past Shopify's 5 s. The body is stored before the
  publish, and a sweeper (every ingest_sweep_interval_seconds) publishes what was stored more than
  ingest_sweep_after_seconds ago and never published, so a delivery is not lost when Shopify
  stops retrying.

The process starts without Kafka or PostgreSQL and waits for them (answering 503 meanwhile); an
outage is logged when it starts and when it ends, not per request. Responses never echo the input,
and logs never print a body (bodies carry customer data).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from contracts.platform import DeadLetter, DeadLetterRedriven, RedriveDeadLetter
from contracts.shopify.orders import (
    MAX_WEBHOOK_ID_LENGTH,
    ORDER_WEBHOOK_TOPICS,
    ShopifyOrder,
    ShopifyOrderReceived,
)
from contracts.shopify.refunds import (
    EDIT_WEBHOOK_TOPIC,
    REFUND_WEBHOOK_TOPIC,
    ShopifyOrderEdit,
    ShopifyOrderEditReceived,
    ShopifyRefund,
    ShopifyRefundReceived,
)
from contracts.topics import DEAD_LETTERS, OPERATIONS, SHOPIFY_ORDERS, order_key
from contracts.validation import InvalidJSON, parse_json
from services.platform.kafka import (
    DependencyUnavailable,
    Outgoing,
    Record,
    _forget_result,
    dead_letter,
    encode,
    headers_for,
    is_dependency_failure,
    make_broker,
    message_type_of,
    producer_broken,
    publish_within,
    renew_producer,
    wire_headers,
)
from services.platform.metrics import (
    WEBHOOKS_DUPLICATE,
    WEBHOOKS_RECEIVED,
    WEBHOOKS_REJECTED,
)
from services.platform.runner import (
    Outage,
    backoff,
    run_http,
    start_broker,
    wait_or_stop,
)
from services.platform.settings import Settings, get_settings
from services.shopify.ingest_store import RawWebhookStore, StoredWebhook

log = logging.getLogger("shopify_prima.ingest")

GROUP = "shopify-ingest"  # the dead letters' consumer group, and the group reading re-drives
WEBHOOK_MESSAGE_TYPE = "ShopifyWebhook"  # a dead letter's original_message_type: a raw webhook body
WEBHOOK_SOURCE = "shopify-webhook:"  # a dead letter's "topic": where the body came from, e.g. shopify-webhook:orders/paid
MAX_HEADER_LENGTH = 1000  # any X-Shopify-* header kept with the body
RETRY_AFTER_SECONDS = 10
OFF_LOOP_BYTES = 64 * 1024  # larger bodies are parsed in a thread, so the event loop keeps answering
DEAD_LETTER_BODY_LIMIT = 512 * 1024  # base64 of a larger body would not fit a Kafka message: kept in the table only
SWEEP_BATCH = 200
_EMAIL = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+")


def verify_hmac(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """base64(HMAC-SHA256(body, secret)) against each accepted secret, in constant time."""
    if not signature:
        return False
    given = signature.encode()
    ok = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        ok |= hmac.compare_digest(expected, given)  # no early exit: same work whatever matches
    return ok


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None  # informational header only; updated_at in the body is what orders by


# ------------------------------------------------------------------------------ normalizing


class Unparseable(Exception):
    """A validly signed body that is not an order this integration can take. `reason` is short
    and never carries the body's text (no customer data, no echo of the input)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def safe_text(value: object, limit: int = 200) -> str:
    """An error's text fit for a log line, a dead letter and a response: bounded, no NUL, and
    anything that looks like an e-mail address masked."""
    return _EMAIL.sub("<e-mail>", str(value).replace("\x00", "\\x00")[: limit * 2])[:limit]


# the topics this endpoint takes: an order's (its body the order), an edit's, a refund's (issue 9)
WEBHOOK_TOPICS = (*ORDER_WEBHOOK_TOPICS, EDIT_WEBHOOK_TOPIC, REFUND_WEBHOOK_TOPIC)
Normalized = ShopifyOrder | ShopifyRefund | ShopifyOrderEdit


def normalize(body: bytes, topic: str = "orders/paid") -> Normalized:
    """The order (or, by topic, the refund or the order edit) in a webhook body, or Unparseable
    (never anything else: whatever a sender put in the body is the body's fault, not a 500)."""
    try:  # contracts/validation.py: bounded depth, no duplicated key, no NaN
        document = parse_json(body)
    except InvalidJSON as exc:  # its text holds no input
        raise Unparseable("malformed_json", f"the body is not JSON this endpoint takes: {safe_text(exc)}") from None
    try:
        if topic == REFUND_WEBHOOK_TOPIC:
            return ShopifyRefund.from_webhook(document)
        if topic == EDIT_WEBHOOK_TOPIC and isinstance(document, dict) and "order_edit" in document:
            return ShopifyOrderEdit.from_webhook(document)
        return ShopifyOrder.from_webhook(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(map(str, first["loc"])) or "body"
        raise Unparseable("invalid_order", f"the body is not an order: {exc.error_count()} error(s), first at "
                                           f"{safe_text(where, 100)}: {safe_text(first['msg'])}") from None
    except RecursionError:
        raise Unparseable("invalid_order", "the body is not an order: nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - KeyError, ValueError, TypeError, decimal.InvalidOperation ...
        raise Unparseable("invalid_order", f"the body is not an order: {type(exc).__name__}: {safe_text(exc)}") from None


Fact = ShopifyOrderReceived | ShopifyRefundReceived | ShopifyOrderEditReceived


def _fact(raw_id: UUID, webhook_id: str, topic: str, shop_domain: str, headers: dict[str, str],
          received_at: datetime, order: Normalized) -> Fact:
    delivery = {"webhook_id": webhook_id, "event_id": headers.get("x-shopify-event-id"), "topic": topic,
                "shop_domain": shop_domain, "api_version": headers.get("x-shopify-api-version"),
                "triggered_at": _timestamp(headers.get("x-shopify-triggered-at")), "received_at": received_at,
                "raw_payload_id": raw_id}
    try:
        if isinstance(order, ShopifyRefund):
            return ShopifyRefundReceived(**delivery, refund=order)
        if isinstance(order, ShopifyOrderEdit):
            return ShopifyOrderEditReceived(**delivery, edit=order)
        return ShopifyOrderReceived(**delivery, order=order)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        raise Unparseable("invalid_headers", f"the delivery's headers do not make a fact: "
                                             f"{'.'.join(map(str, first['loc']))}: {safe_text(first['msg'])}") from None


# ------------------------------------------------------------------------------ responses


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _reject(status: int, reason: str, message: str) -> JSONResponse:
    WEBHOOKS_REJECTED.labels(reason=reason).inc()
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse({"error": {"code": reason, "message": message}}, status_code=status, headers=headers)


class KafkaUnavailable(DependencyUnavailable):
    pass


class TooLarge(Exception):
    """The fact is larger than Kafka takes: it never will be published as it is."""


def _dependency_failure(exc: BaseException) -> bool:
    """Not the delivery's fault: PostgreSQL or Kafka is down, restarting or too slow."""
    return is_dependency_failure(exc) or isinstance(exc, (
        asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InsufficientResourcesError))


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused (413) as soon as it is known to be larger than `limit`: by its
    Content-Length before anything is read, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Refused(400, "bad_content_length", "Content-Length is not a number of bytes")
        if int(declared) > limit:
            raise _Refused(413, "body_too_large", f"the body is larger than the {limit} bytes this endpoint takes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, "body_too_large", f"the body is larger than the {limit} bytes this endpoint takes")
                chunks.append(chunk)
    except TimeoutError:
        raise _Refused(408, "read_timeout", f"the body did not arrive within {timeout:g}s") from None
    except ClientDisconnect:
        raise _Refused(400, "client_disconnected", "the sender went away before the body arrived") from None
    return b"".join(chunks)


# ------------------------------------------------------------------------------ the ingest


class WebhookIngest:
    """What the ingest does besides answering: publishing within a time bound, quarantining
    with an exception record, the sweeper, and re-drives of its dead letters."""

    def __init__(self, settings: Settings, broker: KafkaBroker, *, orders_topic: str, operations_topic: str,
                 dead_letter_topic: str, group: str = GROUP) -> None:
        self.settings = settings
        self.broker = broker
        self.group = group
        self.orders_topic = orders_topic
        self.dead_letter_topic = dead_letter_topic
        self.store: RawWebhookStore | None = None
        self.kafka_ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.resets: list[asyncio.Task] = []
        self.kafka_outage = Outage("Kafka (publishing webhooks)", log)
        self.database_outage = Outage("PostgreSQL (storing webhooks)", log)
        self.redrive_outage = Outage("re-driving a dead letter: a dependency", log)
        subscriber = broker.subscriber(operations_topic, group_id=group, auto_offset_reset="earliest",
                                       ack_policy=AckPolicy.MANUAL, decoder=_no_decoding)
        subscriber(self._on_operation)

    @property
    def timeout(self) -> float:
        return self.settings.ingest_publish_timeout_seconds

    async def normalize(self, body: bytes, topic: str = "orders/paid") -> Normalized:
        if len(body) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(normalize, body, topic)
        return normalize(body, topic)

    async def in_store(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A store operation (bounded in time by the store's own asyncpg timeouts: cancelling a
        query from outside can leave its connection unusable); a failure of PostgreSQL is logged
        once per outage."""
        task = asyncio.ensure_future(call())
        task.add_done_callback(_forget_result)
        try:
            # asyncpg's own timeout ends a slow statement first; this bounds anything else (a
            # pool that cannot connect, say) without cancelling the operation
            done, _ = await asyncio.wait([task], timeout=self.timeout + 1.0)
            if not done:
                raise TimeoutError(f"PostgreSQL did not answer within {self.timeout + 1.0:g}s")
            result = task.result()
        except Exception as exc:
            if _dependency_failure(exc):
                self.database_outage.failed(exc)
            raise
        self.database_outage.recovered()
        return result

    # -- publishing ------------------------------------------------------------------------------

    def fact_out(self, fact: Fact) -> Outgoing:
        """The fact as a message; TooLarge when it takes more than half of what Kafka takes
        (kafka_max_message_bytes): what it becomes downstream (the order's event, the dead letter
        that carries it base64-encoded) must fit a Kafka message too."""
        limit = self.settings.kafka_max_message_bytes // 2
        size = len(encode(fact))
        if size > limit:
            raise TooLarge(f"the normalized order takes {size} bytes, more than the {limit} a fact may take")
        return Outgoing(self.orders_topic, order_key(fact.shopify_order_id), fact,
                        headers_for(fact, correlation_id=fact.webhook_id))

    def letter_out(self, stored: StoredWebhook, error: str | None = None, attempts: int = 0) -> Outgoing:
        """The exception record of a quarantined body: a dead letter whose id is the stored row's."""
        fits = len(stored.body) <= min(DEAD_LETTER_BODY_LIMIT, self.settings.kafka_max_message_bytes // 2)
        error = error or stored.quarantine_reason or "quarantined"
        if not fits:
            error += (f" (the body, {len(stored.body)} bytes, is too large to carry here: it is kept in "
                      f"ingest.raw_webhooks, id {stored.id})")
        record = Record(
            topic=f"{WEBHOOK_SOURCE}{stored.topic}", partition=-1, offset=-1, key=stored.webhook_id.encode(),
            value=stored.body if fits else b"",
            # message_type: what the body is, said by a header so that nothing parses the body to find out
            headers=[("message_type", WEBHOOK_MESSAGE_TYPE.encode()), ("raw_payload_id", str(stored.id).encode())]
            + [(k, str(v).encode()) for k, v in stored.headers.items()],
        )
        reason = "handler_failed" if error.startswith("too_large") else "undecodable"
        letter: DeadLetter = dead_letter(self.group, record, reason, error, attempts)
        letter = letter.model_copy(update={"dead_letter_id": stored.id})
        return Outgoing(self.dead_letter_topic, str(stored.id).encode(), letter)

    async def send(self, out: Outgoing) -> None:
        """Publish and wait for Kafka's acknowledgement, at most ingest_publish_timeout_seconds.
        TooLarge if Kafka never will take it; anything else means Kafka is not there now. A send
        that takes too long is not cancelled (services/platform/kafka.py publish_within says why):
        it may still land, and the row, not marked published, is published again by the sweeper
        (at least once; consumers dedupe on the webhook id)."""
        if not self.kafka_ready.is_set():
            raise KafkaUnavailable("not connected to Kafka yet")
        try:
            await publish_within(self.broker, [out], self.timeout)
        except MessageSizeTooLargeError as exc:
            raise TooLarge(str(exc)) from exc
        except Exception as exc:  # a refused producer is replaced by publish_all already
            self.kafka_outage.failed(exc)
            raise KafkaUnavailable(f"{type(exc).__name__}: {safe_text(exc)}") from exc
        self.kafka_outage.recovered()

    def reset_if_broken(self, exc: BaseException) -> None:
        """A producer whose sequence the broker refuses never recovers: a new one (the sweeper's
        sends go around publish_all, which does this for every other send)."""
        if producer_broken(exc):
            self.resets.append(asyncio.create_task(renew_producer(self.broker)))

    async def settle(self, stored: StoredWebhook, order: Normalized | None, problem: Unparseable | None) -> JSONResponse | dict:
        """Put what a stored delivery became on Kafka (its fact, or its dead letter), then mark it
        published; the answer to Shopify."""
        assert self.store is not None
        if not stored.quarantined and order is None:  # a body kept before as fine now fails: quarantine it now
            reason = str(problem or Unparseable("invalid_order", "the body is not an order"))
            await self.in_store(lambda: self.store.quarantine(stored.id, reason))
            stored = replace(stored, quarantined_at=datetime.now(UTC), quarantine_reason=reason)
        if not stored.quarantined:
            assert order is not None
            try:
                fact = _fact(stored.id, stored.webhook_id, stored.topic, stored.shop_domain, stored.headers,
                             stored.received_at, order)
                await self.send(self.fact_out(fact))
            except (Unparseable, TooLarge) as exc:
                reason = str(exc) if isinstance(exc, Unparseable) else f"too_large: the normalized order is larger " \
                                                                         f"than a Kafka message may be ({safe_text(exc)})"
                await self.in_store(lambda: self.store.quarantine(stored.id, reason))
                stored = replace(stored, quarantined_at=datetime.now(UTC), quarantine_reason=reason)
            except KafkaUnavailable:
                return _reject(503, "kafka_unavailable", "Kafka is not available; the delivery is kept, retry later")
            else:
                await self._mark_published(stored.id)
                WEBHOOKS_RECEIVED.labels(topic=stored.topic).inc()
                return {"status": "accepted", "webhook_id": stored.webhook_id}
        try:
            await self.send(self.letter_out(stored))
        except (KafkaUnavailable, TooLarge):
            return _reject(503, "kafka_unavailable", "Kafka is not available; the delivery is kept, retry later")
        await self._mark_published(stored.id)
        code = (stored.quarantine_reason or "quarantined").split(":", 1)[0]
        return {"status": "quarantined", "webhook_id": stored.webhook_id, "reason": code}

    async def _mark_published(self, raw_id: UUID) -> None:
        try:
            await self.in_store(lambda: self.store.mark_published(raw_id))
        except Exception as exc:  # what it became is on Kafka: the sweeper publishes it again (harmless)
            if not _dependency_failure(exc):
                raise

    # -- the sweeper -----------------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Publish what was stored but never published (its fact, or for a quarantined body its
        dead letter) and received more than ingest_sweep_after_seconds ago; how many rows were
        settled. Rows are taken FOR UPDATE SKIP LOCKED: two ingests never publish the same row."""
        assert self.store is not None
        if not self.kafka_ready.is_set():
            raise KafkaUnavailable("not connected to Kafka yet")
        total = 0
        while True:
            failure: BaseException | None = None
            async with self.store.claim_unpublished(self.settings.ingest_sweep_after_seconds, SWEEP_BATCH) as claim:
                if not claim.rows:
                    return total
                outgoing: list[tuple[StoredWebhook, Outgoing]] = []
                for row in claim.rows:
                    if not row.quarantined:
                        try:
                            order = await self.normalize(row.body, row.topic)
                            fact = _fact(row.id, row.webhook_id, row.topic, row.shop_domain, row.headers,
                                         row.received_at, order)
                            out = self.fact_out(fact)
                        except (Unparseable, TooLarge) as exc:
                            reason = str(exc) if isinstance(exc, Unparseable) else f"too_large: {safe_text(exc)}"
                            await claim.quarantine(row.id, reason)
                            row = replace(row, quarantined_at=datetime.now(UTC), quarantine_reason=reason)
                        else:
                            outgoing.append((row, out))
                            continue
                    outgoing.append((row, self.letter_out(row)))
                sent, too_large, failure = await self._send_many(outgoing)
                for row in too_large:
                    await claim.quarantine(row.id, "too_large: the normalized order is larger than a Kafka message may be")
                await claim.published([row.id for row in sent])
                for row in sent:
                    if not row.quarantined:
                        WEBHOOKS_RECEIVED.labels(topic=row.topic).inc()
            total += len(sent)
            if sent:
                log.info("sweeper: published %d stored webhook(s) that had not been published", len(sent))
            if failure is not None:
                raise failure
            if len(claim.rows) < SWEEP_BATCH:
                return total

    async def _send_many(self, outgoing: list[tuple[StoredWebhook, Outgoing]]
                         ) -> tuple[list[StoredWebhook], list[StoredWebhook], BaseException | None]:
        """Send all, then wait for Kafka's acknowledgements: (sent, too large, a failure)."""
        pending: list[tuple[StoredWebhook, Any]] = []
        too_large: list[StoredWebhook] = []
        try:
            for row, out in outgoing:
                try:
                    # the send's own future; waited for below without cancelling (publish_within)
                    future = await self.broker.publish(encode(out.message), out.topic, key=out.key,
                                                       headers=wire_headers(out), no_confirm=True)
                except MessageSizeTooLargeError:
                    too_large.append(row)
                    continue
                pending.append((row, future))
            waiting = [f for _, f in pending if inspect.isawaitable(f)]
            if waiting:
                done, _ = await asyncio.wait(waiting, timeout=self.timeout + len(waiting) * 0.01)
                if len(done) < len(waiting):
                    raise TimeoutError("Kafka did not acknowledge the sweep in time (the sends go on)")
        except Exception as exc:  # noqa: BLE001 - Kafka went away mid-sweep: nothing marked, all again later
            self.reset_if_broken(exc)
            return [], too_large, KafkaUnavailable(f"{type(exc).__name__}: {safe_text(exc)}")
        sent, failure = [], None
        for row, future in pending:
            result = (future.exception() or future.result()) if inspect.isawaitable(future) else None
            if isinstance(result, MessageSizeTooLargeError):
                too_large.append(row)
            elif isinstance(result, BaseException):
                self.reset_if_broken(result)
                failure = failure or KafkaUnavailable(f"{type(result).__name__}: {safe_text(result)}")
            else:
                sent.append(row)
        return sent, too_large, failure

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        outage = Outage("the sweeper: a dependency", log)
        while not await wait_or_stop(stop, self.settings.ingest_sweep_interval_seconds):
            if not self.kafka_ready.is_set():
                continue
            try:
                await self.sweep_once()
            except Exception as exc:
                if _dependency_failure(exc):
                    outage.failed(exc)
                else:
                    log.exception("sweeper: unexpected failure; trying again in %ss",
                                  self.settings.ingest_sweep_interval_seconds)
                continue
            outage.recovered()

    # -- re-drives -------------------------------------------------------------------------------

    async def _on_operation(self, msg: KafkaMessage) -> None:
        """An operator command for anyone: this process handles RedriveDeadLetter for its group."""
        try:
            await self.handle_operation(msg.raw_message)
        except Exception as exc:
            if _dependency_failure(exc):
                self.redrive_outage.failed(exc)
                await asyncio.sleep(backoff(self.redrive_outage.attempts, self.settings.handler_backoff_initial_seconds,
                                            self.settings.handler_backoff_max_seconds))
                await msg.nack()  # delivered again once the dependency is back
                return
            log.exception("a re-drive failed; the dead letter stays open")
        else:
            self.redrive_outage.recovered()
        await msg.ack()

    async def handle_operation(self, record: Any) -> None:
        if message_type_of(record) != "RedriveDeadLetter":
            return
        try:
            command = RedriveDeadLetter.model_validate_json(record.value)
        except ValidationError:
            log.error("an unreadable RedriveDeadLetter at %s[%s]@%s skipped", record.topic, record.partition, record.offset)
            return
        if command.group == self.group:
            await self.redrive(command)

    async def redrive(self, command: RedriveDeadLetter) -> None:
        """Normalize the stored body of a quarantined delivery again; publish its fact if it now is
        an order (and DeadLetterRedriven, which resolves the exception), else its dead letter again
        with the new error."""
        assert self.store is not None
        stored = await self.in_store(lambda: self.store.get(command.dead_letter_id))
        if stored is None:
            log.error("re-drive of %s: no stored webhook with that id; nothing to do", command.dead_letter_id)
            return
        if stored.quarantined:
            try:
                order = await self.normalize(stored.body, stored.topic)
                fact = _fact(stored.id, stored.webhook_id, stored.topic, stored.shop_domain, stored.headers,
                             stored.received_at, order)
                await self.send(self.fact_out(fact))
            except (Unparseable, TooLarge) as exc:
                error = str(exc) if isinstance(exc, Unparseable) else f"too_large: {safe_text(exc)}"
                log.error("re-drive of %s (webhook %s): still not publishable: %s", stored.id, stored.webhook_id, error)
                await self.send(self.letter_out(stored, error, attempts=1))
                return
            await self.in_store(lambda: self.store.mark_redriven(stored.id))
            log.info("re-drive of %s (webhook %s): published", stored.id, stored.webhook_id)
        elif not stored.published:
            return  # not quarantined and not published: the sweeper publishes it
        await self.send(Outgoing(self.dead_letter_topic, str(stored.id).encode(), DeadLetterRedriven(
            dead_letter_id=stored.id, group=self.group, redriven_at=datetime.now(UTC))))

    # -- Kafka -----------------------------------------------------------------------------------

    async def connect(self, stop: asyncio.Event) -> None:
        """Start the broker once Kafka answers (logged once however long it takes)."""
        if await start_broker(self.broker, stop):
            self.kafka_ready.set()


# What the endpoint takes, for its OpenAPI document (/openapi.json): the route reads the raw body
# itself (the HMAC covers the bytes), so FastAPI cannot say it. The fuzz tests generate requests
# from it (tests/orders/integration/test_ingest_fuzz.py).
_HEADER = {"in": "header", "schema": {"type": "string", "maxLength": MAX_HEADER_LENGTH}}
_AMOUNT = {"type": "string", "description": "a decimal amount, e.g. \"19.99\""}
WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {**_HEADER, "name": "X-Shopify-Hmac-Sha256", "required": True,
         "description": "base64 HMAC-SHA256 of the body with the app's secret"},
        {"in": "header", "name": "X-Shopify-Topic", "required": True, "schema": {"enum": list(WEBHOOK_TOPICS)}},
        {"in": "header", "name": "X-Shopify-Webhook-Id", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_WEBHOOK_ID_LENGTH}},
        {**_HEADER, "name": "X-Shopify-Shop-Domain"},
        {**_HEADER, "name": "X-Shopify-Event-Id"},
        {**_HEADER, "name": "X-Shopify-Triggered-At"},
        {**_HEADER, "name": "X-Shopify-API-Version"},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "an order as Shopify's REST webhooks send it (SHOPIFY.md); "
                                          "for refunds/create a refund, for orders/edited an order edit",
        "required": ["id", "currency", "created_at", "updated_at", "line_items", "subtotal_price",
                     "total_discounts", "total_tax", "total_price"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "order_number": {"type": "integer"},
            "email": {"type": "string"}, "currency": {"type": "string"}, "taxes_included": {"type": "boolean"},
            "financial_status": {"type": "string"}, "test": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "subtotal_price": _AMOUNT, "total_discounts": _AMOUNT, "total_tax": _AMOUNT, "total_price": _AMOUNT,
            "line_items": {"type": "array", "items": {
                "type": "object", "required": ["id", "quantity", "price"],
                "properties": {"id": {"type": "integer"}, "sku": {"type": "string"}, "title": {"type": "string"},
                               "variant_id": {"type": "integer"}, "quantity": {"type": "integer"},
                               "price": _AMOUNT}}},
            "shipping_lines": {"type": "array", "items": {
                "type": "object", "required": ["price"],
                "properties": {"title": {"type": "string"}, "price": _AMOUNT}}},
        }}}}},
}
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "object", "required": ["code", "message"],
              "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}}
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "kept: accepted (its fact is on Kafka), duplicate, or quarantined (an exception record)"},
    400: {**_ERROR, "description": "not a delivery this endpoint takes (topic, webhook id, headers)"},
    401: {**_ERROR, "description": "X-Shopify-Hmac-Sha256 does not match the body"},
    408: {**_ERROR, "description": "the body did not arrive within webhook_read_timeout_seconds"},
    413: {**_ERROR, "description": "the body is larger than webhook_max_body_bytes"},
    503: {**_ERROR, "description": "PostgreSQL or Kafka is not available: retry (Retry-After)"},
}


async def _no_decoding(msg: Any, original: Any = None) -> None:
    """FastStream's body decoder, switched off: the record is read by its message_type."""
    return


def create_app(settings: Settings | None = None, *, orders_topic: str = SHOPIFY_ORDERS.name,
               operations_topic: str = OPERATIONS.name, dead_letter_topic: str = DEAD_LETTERS.name,
               group: str = GROUP) -> FastAPI:
    """The ingest; the topics and the consumer group are the real ones unless a test names its own."""
    settings = settings or get_settings()
    secrets = [settings.shopify_webhook_secret.get_secret_value()]
    if settings.shopify_webhook_secret_previous:
        secrets.append(settings.shopify_webhook_secret_previous.get_secret_value())
    ingest = WebhookIngest(settings, make_broker(settings, "shopify-ingest"), orders_topic=orders_topic,
                           operations_topic=operations_topic, dead_letter_topic=dead_letter_topic, group=group)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # min_size=0: no connection at start, so the ingest starts (and answers 503) while PostgreSQL is down
        pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=10,
                                         timeout=settings.ingest_publish_timeout_seconds)
        ingest.store = RawWebhookStore(pool, settings.ingest_publish_timeout_seconds)
        stop = ingest.stopping
        tasks = [asyncio.create_task(ingest.connect(stop)), asyncio.create_task(ingest.sweep_forever(stop))]
        try:
            yield
        finally:
            stop.set()
            tasks += ingest.resets
            _, running = await asyncio.wait(tasks, timeout=5)
            for task in running:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ingest.broker.stop()
            await pool.close()

    app = FastAPI(title="shopify-prima webhook ingest", lifespan=lifespan)
    app.state.ingest = ingest

    @app.post("/webhooks/shopify", openapi_extra=WEBHOOK_OPENAPI, responses=WEBHOOK_RESPONSES)
    async def receive(request: Request):
        received_at = datetime.now(UTC)
        try:
            body = await _read_body(request, settings.webhook_max_body_bytes, settings.webhook_read_timeout_seconds)
        except _Refused as refused:
            return _reject(refused.status, refused.reason, refused.message)
        h = request.headers  # case-insensitive, as Shopify's header names are
        if not verify_hmac(body, h.get("x-shopify-hmac-sha256"), secrets):
            return _reject(401, "bad_signature", "X-Shopify-Hmac-Sha256 does not match the body")
        topic = h.get("x-shopify-topic", "")
        webhook_id = h.get("x-shopify-webhook-id")
        if topic not in WEBHOOK_TOPICS:
            return _reject(400, "unsupported_topic",
                           f"X-Shopify-Topic is not one this endpoint takes ({', '.join(WEBHOOK_TOPICS)})")
        if not webhook_id:
            return _reject(400, "missing_webhook_id", "X-Shopify-Webhook-Id is required")
        if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
            return _reject(400, "invalid_webhook_id", f"X-Shopify-Webhook-Id is longer than {MAX_WEBHOOK_ID_LENGTH} characters")
        shopify_headers = {k: v for k, v in h.items() if k.startswith("x-shopify-")}
        if any(len(v) > MAX_HEADER_LENGTH or "\x00" in v for v in shopify_headers.values()):
            return _reject(400, "invalid_header", f"an X-Shopify-* header is longer than {MAX_HEADER_LENGTH} "
                                                  "characters or holds a NUL character")
        order: Normalized | None = None
        problem: Unparseable | None = None
        try:
            order = await ingest.normalize(body, topic)
        except Unparseable as exc:
            problem = exc
        try:
            stored = await ingest.in_store(lambda: ingest.store.record(
                webhook_id, topic, h.get("x-shopify-shop-domain", ""), h.get("x-shopify-event-id"), shopify_headers,
                body, received_at, quarantine_reason=str(problem) if problem else None))
            if stored.published:
                WEBHOOKS_DUPLICATE.inc()
                return {"status": "duplicate", "webhook_id": webhook_id}
            return await ingest.settle(stored, order, problem)
        except Exception as exc:
            if _dependency_failure(exc):
                return _reject(503, "database_unavailable", "PostgreSQL is not available; retry later")
            log.exception("webhook %s: unexpected failure (the body is not logged)", webhook_id)
            return _reject(500, "internal_error", "the delivery could not be handled; retry later")

    @app.get("/health")
    async def health():
        """Ready once connected to Kafka (deploy/local/services.sh and compose wait for this); a
        later outage does not change it: the process is up and answers 503 per request meanwhile."""
        if not ingest.kafka_ready.is_set():
            return JSONResponse({"status": "starting", "kafka": "waiting"}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return {"status": "ok", "kafka": "connected"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


if __name__ == "__main__":
    run_http(create_app, lambda s: s.ingest_host, lambda s: s.ingest_port)
