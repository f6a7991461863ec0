"""Writing fulfilments to Shopify (no Kafka): CreateFulfilment becomes `fulfillmentCreate`,
UpdateFulfilmentTracking `fulfillmentTrackingInfoUpdate`; the Shopify gateway
(services/shopify/gateway.py) runs this for its fulfilment consumer and its re-drives.

Never a second fulfilment for one despatch. Shopify's fulfillmentCreate takes no idempotency key
in API 2025-01 (and a Fulfillment has no metafields to carry one), so the writer keeps its own
journal (gateway.fulfilment_writes, one row per idempotency key "prima-despatch:<despatch id>")
and reads before it writes:

1. A key whose row has a fulfilment id was made already (a redelivery, a re-drive after the
   answer came): FulfilmentCreated again, `adopted`, without calling Shopify.
2. Else the order's fulfilments are read (OrderFulfillmentOrders). If an earlier attempt of the
   key was recorded and a fulfilment exists that was not among the ids known before that attempt
   and whose line items and quantities (or, when the command has tracking numbers, whose numbers)
   are the command's, that attempt was made and its answer lost: it is adopted (its id stored).
3. Else the attempt is recorded (the command, the ids of the order's fulfilments as just read)
   BEFORE fulfillmentCreate is sent. Made: its id is stored, FulfilmentCreated. userErrors:
   FulfilmentRefused with Shopify's "field: message" (nothing stored as made: the same key may
   come again once the exception is released).

fulfillmentCreate is sent through a client that makes ONE HTTP attempt (`once`, a ShopifyAdmin
with shopify_max_attempts 1; THROTTLED is still waited out, Shopify ran nothing then): a timeout
or a 5xx may come after Shopify made the fulfilment, so instead of the admin client's blind retry
the writer goes round again from step 2 (read, adopt or record and send), up to
shopify_max_attempts times with the client's backoff. When Shopify still does not answer, the
command is parked (the gateway's ParkedCommands; no outcome) and re-driven through the same path.

One order's fulfilments are written one at a time across processes: a PostgreSQL advisory lock
per order is held for the read-record-send-store sequence (a redelivery in the consumer and a
re-drive at once, or two gateways during a rebalance, cannot both send).

UpdateFulfilmentTracking replaces the fulfilment's company, numbers and urls: idempotent by
nature, so the admin client's own retries apply; journalled by its key too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from contracts.shopify.fulfilments import (
    CreateFulfilment,
    FulfilmentCreated,
    FulfilmentRefused,
    FulfilmentTrackingRefused,
    FulfilmentTrackingUpdated,
    TrackingInfo,
    UpdateFulfilmentTracking,
)
from contracts.shopify.payouts import gid_number
from services.platform.metrics import FULFILMENT_CREATE_CALLS, FULFILMENT_WRITES
from services.platform.runner import backoff
from services.platform.settings import Settings
from services.shopify.admin import (
    ShopifyAdmin,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyUnavailable,
)

log = logging.getLogger("shopify_prima.shopify_gateway")
ORDER_GID = "gid://shopify/Order/"
FULFILMENTS_READ = 50  # fulfilments of an order read before writing (Order.fulfillments `first`)
LINES_READ = 25  # line items read per fulfilment; more when a command fulfils more lines
LINES_READ_MAX = 200  # keeps the read under Shopify's 1000 points per query
LOCK_NAMESPACE = "shopify-fulfilment:"


def now_utc() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------ pure rules


def tracking_input(tracking: TrackingInfo, *, replace: bool = False) -> dict[str, Any] | None:
    """FulfillmentTrackingInput: company, numbers, urls; empty ones left out (a create), or the
    lists always sent (a tracking update replaces them). None when a create has no tracking."""
    found: dict[str, Any] = {}
    if tracking.company:
        found["company"] = tracking.company
    if tracking.numbers or replace:
        found["numbers"] = list(tracking.numbers)
    if tracking.urls or replace:
        found["urls"] = list(tracking.urls)
    return found or None


def create_variables(command: CreateFulfilment) -> dict[str, Any]:
    fulfillment: dict[str, Any] = {
        "lineItemsByFulfillmentOrder": [
            {"fulfillmentOrderId": group.fulfillment_order_id,
             "fulfillmentOrderLineItems": [{"id": line.id, "quantity": line.quantity}
                                           for line in group.fulfillment_order_line_items]}
            for group in command.line_items_by_fulfillment_order],
        "notifyCustomer": command.notify_customer,
    }
    tracking = tracking_input(command.tracking)
    if tracking is not None:
        fulfillment["trackingInfo"] = tracking
    return {"fulfillment": fulfillment}


def tracking_variables(command: UpdateFulfilmentTracking) -> dict[str, Any]:
    return {"fulfillmentId": command.fulfilment_id,
            "trackingInfoInput": tracking_input(command.tracking, replace=True),
            "notifyCustomer": command.notify_customer}


def user_error_texts(errors: Iterable[Any]) -> tuple[str, ...]:
    """Shopify's userErrors as "field: message" (the field path joined by dots; no field: the message)."""
    texts = []
    for error in errors:
        if not isinstance(error, dict):
            texts.append(str(error))
            continue
        path = ".".join(str(part) for part in error.get("field") or ())
        message = str(error.get("message") or error.get("code") or "refused")
        texts.append((f"{path}: {message}" if path else message)[:1000])
    return tuple(texts[:50]) or ("Shopify refused without saying why",)


def line_item_number(gid: Any) -> int | None:
    """The LineItem's number, None when the gid has none (contracts.shopify.payouts.gid_number)."""
    try:
        return gid_number(gid)
    except ValueError:
        return None


def quantities_of(fulfilment: dict[str, Any]) -> dict[int | None, int]:
    """Shopify order line -> units, of a fulfilment as read."""
    found: dict[int | None, int] = {}
    for node in (fulfilment.get("fulfillmentLineItems") or {}).get("nodes") or ():
        line = line_item_number((node.get("lineItem") or {}).get("id"))
        found[line] = found.get(line, 0) + int(node.get("quantity") or 0)
    return found


def numbers_of(fulfilment: dict[str, Any]) -> set[str]:
    return {t["number"] for t in fulfilment.get("trackingInfo") or () if t.get("number")}


def is_the_commands(fulfilment: dict[str, Any], command: CreateFulfilment) -> bool:
    """The fulfilment carries the command's line items and quantities, or (when the command has
    tracking numbers) its tracking numbers."""
    wanted: dict[int | None, int] = {}
    for line in command.line_quantities:
        wanted[line.line_item_id] = wanted.get(line.line_item_id, 0) + line.quantity
    if quantities_of(fulfilment) == wanted:
        return True
    return bool(command.tracking.numbers) and numbers_of(fulfilment) == set(command.tracking.numbers)


def made_by_attempt(fulfilments: list[dict[str, Any]], known: Iterable[str], command: CreateFulfilment
                    ) -> dict[str, Any] | None:
    """The fulfilment an earlier attempt made: not among the ids known before it, and the command's."""
    before = set(known)
    for fulfilment in fulfilments:
        if fulfilment.get("id") not in before and is_the_commands(fulfilment, command):
            return fulfilment
    return None


# ----------------------------------------------------------------------------- the writer


@dataclass(frozen=True)
class Written:
    """What one fulfilment command came to: Shopify's answer (an outcome), or parked (no answer
    after the retries: `park_reason`, `attempts`)."""

    outcome: BaseModel | None
    park_reason: str | None = None
    attempts: int = 0


class FulfilmentWriter:
    """CreateFulfilment / UpdateFulfilmentTracking -> Shopify, journalled in gateway.fulfilment_writes."""

    def __init__(self, admin: ShopifyAdmin, pool: asyncpg.Pool, settings: Settings, *,
                 once: ShopifyAdmin | None = None, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.admin = admin
        self.pool = pool
        self.settings = settings
        self._once = once
        self._own_once = once is None
        self._sleep = sleep

    @property
    def once(self) -> ShopifyAdmin:
        """The client fulfillmentCreate goes through: one HTTP attempt per call (module docstring)."""
        if self._once is None:
            self._once = ShopifyAdmin(self.settings.model_copy(update={"shopify_max_attempts": 1}))
        return self._once

    async def aclose(self) -> None:
        if self._own_once and self._once is not None:
            await self._once.aclose()
            self._once = None

    async def execute(self, command: CreateFulfilment | UpdateFulfilmentTracking) -> Written:
        async with self._order_locked(command.shopify_order_id) as conn:
            if isinstance(command, CreateFulfilment):
                written = await self._create(conn, command)
            else:
                written = await self._update_tracking(conn, command)
        answer = "parked" if written.outcome is None else {
            "FulfilmentCreated": "adopted" if getattr(written.outcome, "adopted", False) else "created",
            "FulfilmentRefused": "refused", "FulfilmentTrackingUpdated": "updated",
            "FulfilmentTrackingRefused": "refused"}[written.outcome.message_type]
        FULFILMENT_WRITES.labels(command.message_type, answer).inc()
        return written

    @contextlib.asynccontextmanager
    async def _order_locked(self, shopify_order_id: int) -> AsyncIterator[asyncpg.Connection]:
        """A connection holding the order's advisory lock (released with it, a crash included)."""
        async with self.pool.acquire() as conn:
            key = f"{LOCK_NAMESPACE}{shopify_order_id}"
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
            try:
                yield conn
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)

    # -- create ---------------------------------------------------------------------------------

    async def _create(self, conn: asyncpg.Connection, command: CreateFulfilment) -> Written:
        key = command.idempotency_key
        row = await conn.fetchrow("SELECT * FROM gateway.fulfilment_writes WHERE idempotency_key = $1", key)
        if row is not None and row["fulfilment_id"]:
            log.info("fulfilment %s for %s was made already (%s): adopted", row["fulfilment_id"], key,
                     row["fulfilment_name"])
            await self._answered(conn, key, "adopted")
            return Written(self._created(command, row["fulfilment_id"], row["fulfilment_name"], adopted=True))
        attempts = 0
        reason = ""
        for round_ in range(1, self.settings.shopify_max_attempts + 1):
            if round_ > 1:
                await self._sleep(backoff(round_ - 1, self.settings.shopify_backoff_initial_seconds,
                                          self.settings.shopify_backoff_max_seconds))
            try:
                fulfilments = await self._fulfilments(command)
            except ShopifyError as exc:
                return self._park(command, f"reading the order's fulfilments: {type(exc).__name__}: {exc}",
                                  attempts + (exc.attempts or 1))
            if fulfilments is None:
                missing = f"order: Order {ORDER_GID}{command.shopify_order_id} does not exist."
                return await self._refused(conn, command, (missing,))
            if row is not None:
                made = made_by_attempt(fulfilments, row["known_fulfilment_ids"], command)
                if made is not None:
                    log.warning("fulfilment %s for %s was made by an attempt whose answer was lost: adopted",
                                made["id"], key)
                    await self._made(conn, key, made, "adopted")
                    return Written(self._created(command, made["id"], made.get("name"), adopted=True))
            row = await self._record_attempt(conn, command, [f["id"] for f in fulfilments if f.get("id")])
            try:
                response = await self.once.request("FulfillmentCreate", create_variables(command))
            except ShopifyUnavailable as exc:  # no answer: made or not, the next round reads first
                attempts += exc.attempts or 1
                reason = f"{type(exc).__name__}: {exc}"
                FULFILMENT_CREATE_CALLS.labels("failed").inc()
                log.warning("fulfillmentCreate for %s got no answer (round %d of %d): %s", key, round_,
                            self.settings.shopify_max_attempts, exc)
                continue
            except ShopifyGraphQLError as exc:  # a request Shopify will never run (a tracking URL it refuses):
                # nothing was made; a refusal the order shows as an exception, released once put right
                FULFILMENT_CREATE_CALLS.labels("user_errors").inc()
                return await self._refused(conn, command, (f"request: {exc}",))
            except ShopifyError as exc:  # refused access (the token or its scopes): parked until put right
                FULFILMENT_CREATE_CALLS.labels("failed").inc()
                return self._park(command, f"{type(exc).__name__}: {exc}", attempts + (exc.attempts or 1))
            attempts += response.attempts
            payload = response.data.get("fulfillmentCreate") or {}
            errors = payload.get("userErrors") or []
            fulfilment = payload.get("fulfillment")
            if errors or not fulfilment:
                FULFILMENT_CREATE_CALLS.labels("user_errors").inc()
                return await self._refused(conn, command, user_error_texts(errors))
            FULFILMENT_CREATE_CALLS.labels("made").inc()
            await self._made(conn, key, fulfilment, "created")
            return Written(self._created(command, fulfilment["id"], fulfilment.get("name"), adopted=False),
                           attempts=attempts)
        return self._park(command, reason or "no answer", attempts)

    async def _fulfilments(self, command: CreateFulfilment) -> list[dict[str, Any]] | None:
        """The order's fulfilments as Shopify has them now (None: no such order)."""
        lines = min(LINES_READ_MAX, max(LINES_READ, len(command.line_quantities)))
        data = await self.admin.execute("OrderFulfillmentOrders", {
            "id": f"{ORDER_GID}{command.shopify_order_id}", "fulfillmentOrders": 1, "lines": lines,
            "fulfillments": FULFILMENTS_READ})
        order = data.get("order")
        return None if order is None else list(order.get("fulfillments") or ())

    async def _record_attempt(self, conn: asyncpg.Connection, command: CreateFulfilment | UpdateFulfilmentTracking,
                              known: list[str]) -> asyncpg.Record:
        at = now_utc()
        kind = "create" if isinstance(command, CreateFulfilment) else "tracking"
        fulfilment_id = None if isinstance(command, CreateFulfilment) else command.fulfilment_id
        return await conn.fetchrow(
            """INSERT INTO gateway.fulfilment_writes AS w (idempotency_key, kind, command_id, shopify_order_id,
                   despatch_id, command, known_fulfilment_ids, fulfilment_id, attempts, first_sent_at, last_sent_at)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, 1, $9, $9)
               ON CONFLICT (idempotency_key) DO UPDATE SET command_id = EXCLUDED.command_id,
                   command = EXCLUDED.command, known_fulfilment_ids = EXCLUDED.known_fulfilment_ids,
                   fulfilment_id = coalesce(w.fulfilment_id, EXCLUDED.fulfilment_id),
                   attempts = w.attempts + 1, last_sent_at = EXCLUDED.last_sent_at
               RETURNING *""",
            command.idempotency_key, kind, command.command_id, command.shopify_order_id, command.despatch_id,
            command.model_dump_json(), known, fulfilment_id, at)

    async def _made(self, conn: asyncpg.Connection, key: str, fulfilment: dict[str, Any], answer: str) -> None:
        await conn.execute(
            """UPDATE gateway.fulfilment_writes SET fulfilment_id = $2, fulfilment_name = $3, answer = $4,
                   user_errors = '{}', answered_at = now() WHERE idempotency_key = $1""",
            key, fulfilment["id"], fulfilment.get("name"), answer)

    async def _answered(self, conn: asyncpg.Connection, key: str, answer: str, user_errors: Iterable[str] = ()) -> None:
        await conn.execute(
            """UPDATE gateway.fulfilment_writes SET answer = $2, user_errors = $3, answered_at = now()
               WHERE idempotency_key = $1""", key, answer, list(user_errors))

    async def _refused(self, conn: asyncpg.Connection, command: CreateFulfilment, errors: tuple[str, ...]) -> Written:
        log.warning("fulfillmentCreate for %s refused: %s", command.idempotency_key, "; ".join(errors))
        await conn.execute(
            """INSERT INTO gateway.fulfilment_writes AS w (idempotency_key, kind, command_id, shopify_order_id,
                   despatch_id, command, first_sent_at, last_sent_at, answer, user_errors, answered_at)
               VALUES ($1, 'create', $2, $3, $4, $5::jsonb, $6, $6, 'refused', $7, $6)
               ON CONFLICT (idempotency_key) DO UPDATE SET answer = 'refused', user_errors = EXCLUDED.user_errors,
                   answered_at = EXCLUDED.answered_at""",
            command.idempotency_key, command.command_id, command.shopify_order_id, command.despatch_id,
            command.model_dump_json(), now_utc(), list(errors))
        return Written(FulfilmentRefused(command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                                         despatch_id=command.despatch_id, user_errors=errors,
                                         occurred_at=now_utc()))

    @staticmethod
    def _created(command: CreateFulfilment, fulfilment_id: str, name: str | None, *, adopted: bool) -> FulfilmentCreated:
        return FulfilmentCreated(command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                                 despatch_id=command.despatch_id, fulfilment_id=fulfilment_id,
                                 fulfilment_name=name or None, adopted=adopted, occurred_at=now_utc())

    @staticmethod
    def _park(command: Any, reason: str, attempts: int) -> Written:
        log.warning("%s %s (%s): Shopify did not answer: %s", command.message_type, command.command_id,
                    command.idempotency_key, reason)
        return Written(None, reason, max(1, attempts))

    # -- tracking -------------------------------------------------------------------------------

    async def _update_tracking(self, conn: asyncpg.Connection, command: UpdateFulfilmentTracking) -> Written:
        await self._record_attempt(conn, command, [])
        try:
            response = await self.admin.request("FulfillmentTrackingInfoUpdate", tracking_variables(command))
            payload = response.data.get("fulfillmentTrackingInfoUpdate") or {}
            errors = payload.get("userErrors") or []
            texts = user_error_texts(errors)
        except ShopifyGraphQLError as exc:  # a request Shopify will never run: refused, not parked
            response, payload, errors, texts = None, {}, [], (f"request: {exc}",)
        except ShopifyError as exc:
            return self._park(command, f"{type(exc).__name__}: {exc}", exc.attempts or 1)
        if errors or not payload.get("fulfillment"):
            log.warning("fulfillmentTrackingInfoUpdate for %s refused: %s", command.idempotency_key, "; ".join(texts))
            await self._answered(conn, command.idempotency_key, "refused", texts)
            return Written(FulfilmentTrackingRefused(
                command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                despatch_id=command.despatch_id, user_errors=texts, occurred_at=now_utc()),
                attempts=response.attempts if response is not None else 1)
        await self._answered(conn, command.idempotency_key, "updated")
        return Written(FulfilmentTrackingUpdated(
            command_id=command.command_id, shopify_order_id=command.shopify_order_id,
            despatch_id=command.despatch_id, fulfilment_id=payload["fulfillment"].get("id") or command.fulfilment_id,
            occurred_at=now_utc()), attempts=response.attempts)

