"""Despatch and cancellation by polling: the Prima poller's order status feed when Prima is reached
through OM link (PRIMA_ADAPTER=omlink; issue 15, item 5).

OM link has no despatch feed. Prima says what became of an order only when asked OrderStatus
(`OmLinkAdapter.order_status`), one order per request. So one pass (`poll_once`):

1. picks the open orders that are due: an order of the order-sync read model
   (projections/order_sync.py, read, never written) with a Prima sales order whose number is
   this channel's OrderNumber for it (prefix + Shopify order id: OM link's orders), not cancelled
   through the integration, and not closed here (despatched and published, or cancelled in
   Prima); due when never asked or asked at least `status_interval_seconds` ago; the order asked
   longest ago first (never asked before all), at most the pass's budget of requests;
2. asks each one OrderStatus, paced by `RequestPacer`: never more than
   `status_requests_per_second`, spread evenly (one request every 1/rate seconds, also across
   passes: never a burst). One attempt per request (the feed's own schedule is the retry, and a
   retry would be a request outside the budget): Prima unavailable (or refusing the request)
   ends the pass and leaves the order as it was, asked again at the next pass;
3. turns the answer into what the flows consume (`despatch_fact`, the rule):
   - Despatched: one PrimaDespatchRecorded (prima.despatches.v1, keyed by the Shopify order id),
     the fact the fulfilment decider consumes from the REST despatch feed. OrderStatus does not
     say what shipped: the order is despatched in full, so the note covers every unit of the
     order's lines (the order-fulfilment read model's lines, as the sales order states them,
     bundles as their components, projections/order_fulfilment.py) that no despatch recorded
     there already covers. Its despatch_id is "<OrderNumber>/D1", version 1, change_id 1: the same
     on every pass, so a fact published again (at least once) is a repeat the OrderFulfilment
     aggregate ignores, never a second fulfilment. One parcel with the answer's Carrier and
     TrackingNumber where the installation gives them (the sandbox does); without them, a parcel
     without tracking (carrier "" when no Carrier) and the fact flagged
     `tracking_given_by_prima=False`: the fulfilment goes to Shopify without tracking.
     Only once Kafka acknowledged the fact is the order stored as published and closed. An order
     Prima says is despatched whose lines the read model does not have yet (the fulfilment
     projection behind) publishes nothing, stays open and is asked again at the next interval.
   - Part Despatched (picking) and Cancelled: OrderStatus does not say which lines shipped or
     were cancelled, and a guess would fulfil or cancel the wrong lines in Shopify, so nothing is
     published for them. The status is stored. Part Despatched stays open (asked until
     Despatched). Cancelled closes the order and surfaces it for an operator (it was cancelled in
     Prima, not through the integration: Shopify still holds it as paid): a warning in the log,
     the counter shopify_prima_omlink_cancelled_in_prima_total, and the row in
     ingest.omlink_order_status (port_status 'cancelled'); the operator cancels or refunds the
     order in Shopify.
   - Prima does not know the order (OrderStatus ERROR): counted and logged, asked again at the
     next interval. An answer that does not read: the same.
   State per order in `ingest.omlink_order_status` (migration 0012): Prima's status, when asked,
   what was published.

Failures end the pass with the outcome poller.py uses (prima_unavailable, prima_rejected,
kafka_error, store_error, error), logged and counted; orders handled before the failure keep what
they stored, the failing order is left as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from contracts.prima.despatches import DespatchLine, Parcel, PrimaDespatchRecorded
from contracts.topics import PRIMA_DESPATCHES
from services.platform.kafka import Outgoing
from services.platform.runner import wait_or_stop
from services.platform.settings import Settings
from services.prima.client import PrimaBadResponse, PrimaRejected, PrimaUnavailable
from services.prima.feeds import (
    FACTS_PUBLISHED,
    LAST_SUCCESS,
    POLLS,
    FeedPoll,
    PollFailed,
    Publish,
)
from services.prima.omlink.adapter import OmLinkAdapter, port_status
from services.prima.omlink.documents import OrderStatusAnswer

log = logging.getLogger("shopify_prima.prima_poller.omlink")
FEED = "order_status"
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
PASS_SECONDS = 30.0  # a pass asks at most status_requests_per_second x this many orders, then returns

ANSWERS = Counter(
    "shopify_prima_omlink_order_status_answers",
    "OrderStatus answers by port status (open, picking, despatched, cancelled), unknown (Prima does not know "
    "the order) or bad_answer", ["status"])
CANCELLED_IN_PRIMA = Counter(
    "shopify_prima_omlink_cancelled_in_prima",
    "Orders OrderStatus found Cancelled in Prima (not through the integration): cancel or refund them in "
    "Shopify by hand")
DESPATCHED_WITHOUT_LINES = Counter(
    "shopify_prima_omlink_despatched_without_lines",
    "Despatched answers not published: the order's lines are not in the order-fulfilment read model yet "
    "(asked again at the next interval)")
OPEN_ORDERS = Gauge(
    "shopify_prima_omlink_open_orders",
    "Orders with an OM link sales order the status feed still asks about (not despatched and published, nor "
    "cancelled), as of its last pass")


# ---------------------------------------------------------------------------------- pacing


async def _sleep(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    return await wait_or_stop(stop, seconds)


class RequestPacer:
    """At most `rate` requests a second, spread evenly: each request waits until 1/rate seconds
    after the one before it (a token bucket holding one token), so a backlog of open orders is
    never sent as a burst, neither within a pass nor from one pass to the next."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float, asyncio.Event | None], Awaitable[bool]] = _sleep) -> None:
        if not rate > 0:
            raise ValueError(f"a request rate is positive, not {rate!r}")
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None  # when the next request may go (clock time)

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for the next request's turn and take it; False (nothing taken) when `stop` is set."""
        if stop is not None and stop.is_set():
            return False
        if self._next is not None and (delay := self._next - self.clock()) > 0 and await self.sleep(delay, stop):
            return False
        now = self.clock()
        self._next = max(now, self._next if self._next is not None else now) + self.interval
        return True


def pass_budget(requests_per_second: float, pass_seconds: float) -> int:
    """How many orders one pass asks at most: what the rate allows in `pass_seconds` (at least one),
    so that a pass returns to the poller within about that time whatever the backlog."""
    return max(1, math.floor(requests_per_second * pass_seconds))


# ---------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class OpenOrder:
    """An order the feed asks about, as the selection found it."""

    shopify_order_id: int
    order_number: str  # the OrderNumber Prima knows it by


def remaining_lines(lines: Sequence[Mapping[str, Any]],
                    despatches: Sequence[Mapping[str, Any]] = ()) -> tuple[DespatchLine, ...]:
    """The units of the order's lines that no recorded despatch covers, one DespatchLine per
    (Shopify line, SKU). `lines` and `despatches` as the order-fulfilment read model holds them: a
    plain line ships its SKU x quantity, a bundle line its components x units per bundle x
    quantity (what the warehouse ships for a kit); a despatch's lines name the Shopify line
    (`line_item_id`) they count for."""
    shipped: dict[tuple[Any, str], int] = {}
    for despatch in despatches:
        for units in despatch.get("lines") or ():
            key = (units.get("line_item_id"), units["sku"])
            shipped[key] = shipped.get(key, 0) + units["quantity"]
    out: list[DespatchLine] = []
    for line in lines:
        parts = [(c["sku"], c["units_per_bundle"] * line["quantity"]) for c in line.get("components") or ()] \
            or [(line["sku"], line["quantity"])]
        for sku, units in parts:
            left = units - shipped.get((line["line_item_id"], sku), 0)
            if left > 0:
                out.append(DespatchLine(line_number=None, external_line_id=line["line_item_id"], sku=sku,
                                        quantity=left))
    return tuple(out)


def _detail(details: Mapping[str, str], name: str) -> str | None:
    """A value of the answer by name, whatever its case; None when absent or blank."""
    found = next((v for k, v in details.items() if k.casefold() == name.casefold()), None)
    return (found.strip() or None) if found is not None else None


def despatched_at(details: Mapping[str, str], polled_at: datetime) -> datetime:
    """When Prima says the order left: its DespatchDate (an ISO date or date-time, or a UK
    dd/mm/yyyy date, taken as UTC), else when the feed saw it despatched."""
    given = _detail(details, "DespatchDate")
    if given is None:
        return polled_at
    try:
        found = datetime.fromisoformat(given)
    except ValueError:
        try:
            found = datetime.strptime(given, "%d/%m/%Y")
        except ValueError:
            log.warning("DespatchDate %r does not read as a date: the despatch is dated when it was seen", given)
            return polled_at
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def despatch_id_of(order_number: str) -> str:
    """The one despatch an OM link order gets: the same on every pass (the fulfilment's
    idempotency key comes from it)."""
    return f"{order_number}/D1"


def despatch_fact(order: OpenOrder, answer: OrderStatusAnswer, lines: Sequence[DespatchLine], *, warehouse: str,
                  polled_at: datetime) -> PrimaDespatchRecorded | None:
    """The rule for a Despatched answer: the despatch of every unit still to despatch (`lines`:
    `remaining_lines`), in one parcel with the answer's Carrier and TrackingNumber when Prima gives
    them, else without tracking and flagged so. None when nothing is left to despatch."""
    if not lines:
        return None
    carrier = _detail(answer.details, "Carrier")
    tracking = _detail(answer.details, "TrackingNumber")
    at = despatched_at(answer.details, polled_at)
    return PrimaDespatchRecorded(
        change_id=1, change="despatched", changed_at=at, despatch_id=despatch_id_of(order.order_number), version=1,
        sales_order_number=order.order_number, external_reference=str(order.shopify_order_id),
        warehouse=warehouse, despatched_at=at, lines=tuple(lines),
        parcels=(Parcel(parcel_number=1, carrier=carrier or "", tracking_number=tracking, tracking_url=None,
                        lines=None),),
        polled_at=polled_at, tracking_given_by_prima=carrier is not None and tracking is not None)


# ---------------------------------------------------------------------------------- the feed

DUE = """
    SELECT o.shopify_order_id, o.prima_sales_order_number AS order_number
    FROM readmodel.order_sync o
    LEFT JOIN ingest.omlink_order_status s ON s.shopify_order_id = o.shopify_order_id
    WHERE o.prima_sales_order_number = $1 || o.shopify_order_id::text AND o.state <> 'cancelled'
      AND s.closed_at IS NULL AND (s.asked_at IS NULL OR s.asked_at <= $2)
    ORDER BY s.asked_at NULLS FIRST, o.shopify_order_id
    LIMIT $3
"""
OPEN = """
    SELECT count(*) FROM readmodel.order_sync o
    LEFT JOIN ingest.omlink_order_status s ON s.shopify_order_id = o.shopify_order_id
    WHERE o.prima_sales_order_number = $1 || o.shopify_order_id::text AND o.state <> 'cancelled'
      AND s.closed_at IS NULL
"""
STORE = """
    INSERT INTO ingest.omlink_order_status AS s (shopify_order_id, order_number, status, port_status, details,
        status_since, asked_at, last_error, despatch_id, published_at, closed_at)
    VALUES ($1, $2, $3, $4, coalesce($5::jsonb, '{}'), $6, $7, $8, $9, $10, $11)
    ON CONFLICT (shopify_order_id) DO UPDATE SET
        order_number = EXCLUDED.order_number,
        status = coalesce(EXCLUDED.status, s.status),
        port_status = coalesce(EXCLUDED.port_status, s.port_status),
        details = CASE WHEN EXCLUDED.status IS NULL THEN s.details ELSE EXCLUDED.details END,
        status_since = CASE WHEN EXCLUDED.status IS NULL OR EXCLUDED.status = s.status THEN s.status_since
                            ELSE EXCLUDED.asked_at END,
        asked_at = EXCLUDED.asked_at, last_error = EXCLUDED.last_error,
        despatch_id = coalesce(EXCLUDED.despatch_id, s.despatch_id),
        published_at = coalesce(EXCLUDED.published_at, s.published_at),
        closed_at = EXCLUDED.closed_at
"""


class OrderStatusFeed:
    """One pass over the open orders that are due per `poll_once`. Tests give their own
    `despatch_topic`, `publish`, `pacer` and `pass_seconds`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, adapter: OmLinkAdapter, publish: Publish, *,
                 despatch_topic: str = PRIMA_DESPATCHES.name, pass_seconds: float = PASS_SECONDS,
                 pacer: RequestPacer | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.config = adapter.config
        # one attempt per request (the adapter's own retries would be requests outside the budget);
        # the same SOAP client
        self.adapter = OmLinkAdapter(adapter.config.model_copy(update={"max_attempts": 1}), adapter.soap)
        self.publish = publish
        self.despatch_topic = despatch_topic
        self.pacer = pacer or RequestPacer(self.config.status_requests_per_second)
        self.budget = pass_budget(self.config.status_requests_per_second, pass_seconds)
        self.warehouse = self.config.line_warehouse or self.config.availability_warehouse
        FACTS_PUBLISHED.labels(feed=FEED)
        POLLS.labels(feed=FEED, outcome="ok")
        LAST_SUCCESS.labels(feed=FEED)
        for status in ("open", "picking", "despatched", "cancelled", "unknown", "bad_answer"):
            ANSWERS.labels(status=status)

    async def poll_once(self, stop: asyncio.Event | None = None) -> FeedPoll:
        """Ask the orders that are due, paced (until done, a failure, or `stop`). `pages` in the
        result counts the OrderStatus requests made, `published` the despatch facts. Failures are
        in the result (logged and counted), never raised."""
        result = FeedPoll(FEED)
        try:
            for order in await self._due():
                if not await self.pacer.wait(stop):
                    break
                result.published += await self._ask(order)
                result.pages += 1
            OPEN_ORDERS.set(await self._db(self.pool.fetchval, "counting the open orders", OPEN,
                                           self.config.order_codes.order_number_prefix))
        except PollFailed as exc:
            result.outcome, result.error = exc.outcome, str(exc)
            log.warning("asking Prima OrderStatus failed (%s) after %d orders, %d despatches published: %s",
                        exc.outcome, result.pages, result.published, exc)
        except Exception as exc:
            result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
            log.exception("asking Prima OrderStatus failed unexpectedly")
        POLLS.labels(feed=FEED, outcome=result.outcome).inc()
        if result.ok:
            LAST_SUCCESS.labels(feed=FEED).set_to_current_time()
            if result.pages:
                log.info("Prima OrderStatus: %d orders asked, %d despatches published", result.pages,
                         result.published)
        return result

    async def _db(self, call: Callable[..., Awaitable[Any]], what: str, *args: Any) -> Any:
        try:
            return await call(*args)
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"{what}: {type(exc).__name__}: {exc}") from exc

    async def _due(self) -> list[OpenOrder]:
        before = datetime.now(UTC) - timedelta(seconds=self.config.status_interval_seconds)
        rows = await self._db(self.pool.fetch, "reading the open orders", DUE,
                              self.config.order_codes.order_number_prefix, before, self.budget)
        return [OpenOrder(r["shopify_order_id"], r["order_number"]) for r in rows]

    async def _lines(self, shopify_order_id: int) -> tuple[list[dict], list[dict]] | None:
        """The order's lines and recorded despatches in the order-fulfilment read model; None
        while it has no lines for the order."""
        row = await self._db(self.pool.fetchrow, f"reading order {shopify_order_id}'s lines",
                             "SELECT lines::text, despatches::text FROM readmodel.order_fulfilment "
                             "WHERE shopify_order_id = $1", shopify_order_id)
        lines = json.loads(row["lines"]) if row is not None else []
        return (lines, json.loads(row["despatches"])) if lines else None

    async def _store(self, order: OpenOrder, asked_at: datetime, answer: OrderStatusAnswer | None = None, *,
                     error: str | None = None, closed: bool = False, despatch_id: str | None = None,
                     published_at: datetime | None = None) -> None:
        await self._db(
            self.pool.execute, f"storing order {order.shopify_order_id}'s status", STORE,
            order.shopify_order_id, order.order_number, answer.status if answer else None,
            port_status(answer.status) if answer else None, json.dumps(answer.details) if answer else None,
            asked_at if answer else None, asked_at, error, despatch_id, published_at, asked_at if closed else None)

    async def _ask(self, order: OpenOrder) -> int:
        """Ask one order's status and act on the answer; the number of facts published."""
        asked_at = datetime.now(UTC)
        number, order_id = order.order_number, order.shopify_order_id
        try:
            answer = await self.adapter.order_status(number)
        except PrimaUnavailable as exc:
            raise PollFailed("prima_unavailable", f"OrderStatus {number}: {exc}") from exc
        except PrimaRejected as exc:
            raise PollFailed("prima_rejected", f"OrderStatus {number}: {exc}") from exc
        except PrimaBadResponse as exc:
            ANSWERS.labels(status="bad_answer").inc()
            log.warning("order %s: Prima's OrderStatus answer for %s does not read (asked again later): %s",
                        order_id, number, exc)
            await self._store(order, asked_at, error=f"an answer that does not read: {exc}")
            return 0
        if answer is None:
            ANSWERS.labels(status="unknown").inc()
            log.warning("order %s: Prima does not know OrderNumber %s (asked again later)", order_id, number)
            await self._store(order, asked_at, error="Prima does not know the order (OrderStatus answered ERROR)")
            return 0
        status = port_status(answer.status)
        ANSWERS.labels(status=status).inc()
        if status == "cancelled":
            await self._store(order, asked_at, answer, closed=True)
            CANCELLED_IN_PRIMA.inc()
            log.warning("order %s: sales order %s was cancelled in Prima, not through the integration; Shopify still "
                        "holds the order: cancel or refund it in Shopify", order_id, number)
            return 0
        if status != "despatched":
            await self._store(order, asked_at, answer)
            return 0
        found = await self._lines(order_id)
        if found is None:
            DESPATCHED_WITHOUT_LINES.inc()
            log.info("order %s: despatched in Prima, but its lines are not in the order-fulfilment read model yet "
                     "(asked again later)", order_id)
            await self._store(order, asked_at, answer, error="despatched in Prima; the order's lines are not in the "
                                                             "order-fulfilment read model yet")
            return 0
        fact = despatch_fact(order, answer, remaining_lines(*found), warehouse=self.warehouse, polled_at=asked_at)
        if fact is None:
            log.info("order %s: despatched in Prima; every unit is already recorded as despatched", order_id)
            await self._store(order, asked_at, answer, closed=True)
            return 0
        try:
            await self.publish([Outgoing(self.despatch_topic, fact.key, fact)])
        except Exception as exc:
            raise PollFailed("kafka_error", f"sending order {order_id}'s despatch to {self.despatch_topic}: "
                                            f"{type(exc).__name__}: {exc}") from exc
        await self._store(order, asked_at, answer, closed=True, despatch_id=fact.despatch_id,
                          published_at=datetime.now(UTC))
        FACTS_PUBLISHED.labels(feed=FEED).inc()
        if not fact.tracking_given_by_prima:
            log.info("order %s: despatched without tracking from Prima: the fulfilment goes without tracking",
                     order_id)
        return 1
