"""Fulfilment in the sandbox's shop: FulfillmentOrders per order and location, Fulfillments with
tracking, fulfilment holds, Admin GraphQL over them, and the fulfillments/create and
fulfillments/update webhooks the shop sends to the subscribed address.

As Shopify documents it (https://shopify.dev/docs/apps/build/orders-fulfillment, the FulfillmentOrder,
fulfillmentCreate, fulfillmentTrackingInfoUpdate, fulfillmentOrderHold and
fulfillmentOrderReleaseHold reference pages):

- When the shop holds an order that has been paid (financial_status paid, partially_refunded or
  refunded; the order is recorded by `POST /_sandbox/webhooks` or `POST /_sandbox/orders`), it
  splits the order's lines into FulfillmentOrders by assigned location, once per order. The
  sandbox's rule for a line's location: the first active location (by id) whose inventory level
  of the line's SKU has `available` >= the line's quantity; else the first active location that
  stocks the SKU at all; else the shop's primary location (the first active one). A paid order of a
  sandbox shop without any active location (every Shopify shop has one; a seeding gap) is split
  when it is first read after a location exists. A fulfillment order line item covers
  the whole order line: totalQuantity = the line's current quantity, remainingQuantity = what is
  left to fulfil.
- A later change of the order (an edit, a refund, a cancellation: a newer body) updates the lines:
  totalQuantity follows the line's current_quantity, remainingQuantity = current - fulfilled (a
  line removed by an edit has 0 left); a line the edit added joins the open fulfillment order of its
  location, or a new one. An OPEN / IN_PROGRESS fulfillment order with nothing left is CLOSED; a
  cancelled order's open, in-progress and held fulfillment orders are CLOSED.
- Status: OPEN -> IN_PROGRESS (partly fulfilled) -> CLOSED (nothing left); ON_HOLD while it has a
  hold (back to the status it had when the last hold is released); CANCELLED by the merchant
  (`POST /_sandbox/fulfillment_orders/<id>/cancel`). requestStatus is UNSUBMITTED (no fulfilment
  service).
- fulfillmentCreate is atomic: any userError and nothing changes. userErrors (`field`
  ["fulfillment"], as Shopify's responses show it):
  - no lineItemsByFulfillmentOrder: "Line items by fulfillment order can't be blank.";
  - an unknown fulfillment order: "Fulfillment order <gid> does not exist.";
  - fulfillment orders of two orders: "All fulfillment orders must belong to the same order.";
  - fulfillment orders assigned to two locations: "All fulfillment orders must be assigned to the same
    location." (the mutation's reference says they are; the message is the sandbox's);
  - a status other than OPEN / IN_PROGRESS: "Fulfillment order <number> has an unfulfillable
    status= <status>." (lower case: on_hold, closed, cancelled), Shopify's message;
  - a line item not on that fulfillment order: "Fulfillment order line item <gid> does not exist on
    fulfillment order <gid>.";
  - a quantity of 0 or less, or above what remains (the same line item listed twice counts
    together; a line removed by an edit has 0 left): "Invalid fulfillment order line item quantity
    requested.", Shopify's message.
  A group without fulfillmentOrderLineItems fulfils everything left on its fulfillment order.
  Success: one Fulfillment (status SUCCESS, name "<order name>.<n>") whose fulfillmentLineItems
  carry the quantities, trackingInfo one entry per tracking number (company, number, the url at
  the same position in `urls`, or `url`); remainingQuantity falls; each fulfillment order becomes
  IN_PROGRESS or CLOSED; a fulfillments/create webhook goes to each subscribed address.
- fulfillmentTrackingInfoUpdate replaces the fulfillment's company, numbers and urls (userError
  ["fulfillmentId"] "Fulfillment does not exist." for an unknown one) and sends fulfillments/update.
- fulfillmentOrderHold (reason, reasonNotes, handle) puts an OPEN, IN_PROGRESS or ON_HOLD
  fulfillment order ON_HOLD; userErrors FULFILLMENT_ORDER_NOT_FOUND, DUPLICATE_FULFILLMENT_HOLD_HANDLE,
  FULFILLMENT_ORDER_HOLD_LIMIT_REACHED (10 holds by the app), and a status that cannot be held
  (no code: Shopify's enum has none). Holding some line items only (a split) is not served: an
  error says so. fulfillmentOrderReleaseHold(id, holdIds?) releases those holds, or all of them.
- The webhook body is the REST Fulfillment (id, order_id, status "success", created_at,
  updated_at, service "manual", tracking_company, tracking_number(s), tracking_url(s), location_id,
  email, destination, line_items with the fulfilled quantity, name, admin_graphql_api_id), signed
  like every sandbox webhook (webhooks.py), one delivery attempt per subscribed address, recorded
  in `GET /_sandbox/webhook_deliveries`.

Not modelled: inventory (a sale does not commit stock, a fulfilment does not take it off hand),
order `fulfillment_status` in the REST body (GraphQL `displayFulfillmentStatus` is computed),
fulfilment services and requests, moves, splits, merges, scheduled fulfilment orders.

Registered by `import sandboxes.shopify.fulfillments` (admin.py); the book is
`ShopState.fulfillments` (state.py), fed by `OrderBook.watchers`; the controls by
`control_router` (app.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError

from sandboxes.shopify.order_queries import (
    GID_ORDER,
    HeldOrder,
    OrderBook,
    _line_item,
    graphql_order,
)
from sandboxes.shopify.resolvers import MUTATIONS, Ctx, connection
from sandboxes.shopify.resolvers import field as resolver
from sandboxes.shopify.store import Location, Store, gid_number
from sandboxes.shopify.webhooks import send_webhook

log = logging.getLogger(__name__)

GID = "gid://shopify/"
FULFILLMENT_ORDER_BASE = 6_000_000_000
FULFILLMENT_ORDER_LINE_BASE = 16_000_000_000
FULFILLMENT_BASE = 4_700_000_000
FULFILLMENT_LINE_BASE = 9_700_000_000
HOLD_BASE = 300_000_000
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
FULFILLABLE = ("OPEN", "IN_PROGRESS")
HOLDABLE = ("OPEN", "IN_PROGRESS", "ON_HOLD")
APP_HOLD_LIMIT = 10
WEBHOOK_TOPICS = ("fulfillments/create", "fulfillments/update")
HOLD_REASONS = {
    "AWAITING_PAYMENT": "Awaiting payment", "HIGH_RISK_OF_FRAUD": "High risk of fraud",
    "INCORRECT_ADDRESS": "Incorrect address", "INVENTORY_OUT_OF_STOCK": "Inventory out of stock",
    "UNKNOWN_DELIVERY_DATE": "Unknown delivery date",
    "ONLINE_STORE_POST_PURCHASE_CROSS_SELL": "Post purchase cross sell",
    "AWAITING_RETURN_ITEMS": "Awaiting return items", "OTHER": "Other",
}
QUANTITY_ERROR = "Invalid fulfillment order line item quantity requested."
REST_LINE_KEYS = ("id", "variant_id", "product_id", "title", "name", "sku", "variant_title", "vendor", "price",
                  "price_set", "total_discount", "discount_allocations", "tax_lines", "taxable", "gift_card",
                  "requires_shipping", "grams", "properties")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rest_time(iso_z: str) -> str:
    return iso_z.replace("Z", "+00:00")


# ------------------------------------------------------------------------------ the objects


@dataclass(eq=False)
class Hold:
    num: int
    reason: str
    reason_notes: str | None
    handle: str
    by_app: bool  # placed through the API (the app) rather than by the merchant
    typename: str = "FulfillmentHold"

    @property
    def gid(self) -> str:
        return f"{GID}FulfillmentHold/{self.num}"


@dataclass(eq=False)
class OrderLine:
    """A fulfillment order line item: one order line at one location."""

    num: int
    fulfillment_order: FulfillmentOrder
    line_id: int
    sku: str | None
    total: int
    remaining: int
    fulfilled: int = 0
    typename: str = "FulfillmentOrderLineItem"

    @property
    def gid(self) -> str:
        return f"{GID}FulfillmentOrderLineItem/{self.num}"


@dataclass(eq=False)
class FulfillmentOrder:
    num: int
    order_id: int
    location: Location
    created_at: str
    status: str = "OPEN"
    status_before_hold: str = "OPEN"
    updated_at: str = ""
    lines: list[OrderLine] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    fulfillments: list[Fulfillment] = field(default_factory=list)
    typename: str = "FulfillmentOrder"

    @property
    def gid(self) -> str:
        return f"{GID}FulfillmentOrder/{self.num}"

    def remaining(self) -> int:
        return sum(line.remaining for line in self.lines)

    def row(self) -> dict[str, Any]:
        return {"id": self.gid, "order_id": self.order_id, "status": self.status, "location_id": self.location.gid,
                "line_items": [{"id": line.gid, "line_item_id": line.line_id, "sku": line.sku,
                                "total_quantity": line.total, "remaining_quantity": line.remaining}
                               for line in self.lines],
                "holds": [{"id": h.gid, "reason": h.reason, "reason_notes": h.reason_notes, "by_app": h.by_app}
                          for h in self.holds]}


@dataclass(eq=False)
class FulfilledLine:
    num: int
    order_line: OrderLine
    quantity: int
    typename: str = "FulfillmentLineItem"

    @property
    def gid(self) -> str:
        return f"{GID}FulfillmentLineItem/{self.num}"


@dataclass(eq=False)
class Fulfillment:
    num: int
    order_id: int
    name: str
    location: Location
    created_at: str
    updated_at: str
    company: str | None
    numbers: list[str]
    urls: list[str]
    lines: list[FulfilledLine]
    fulfillment_orders: list[FulfillmentOrder]
    notify_customer: bool
    status: str = "SUCCESS"
    typename: str = "Fulfillment"

    @property
    def gid(self) -> str:
        return f"{GID}Fulfillment/{self.num}"

    def tracking(self) -> list[dict[str, Any]]:
        """FulfillmentTrackingInfo: one per number, the url at the same position."""
        if not self.numbers:
            return [{"company": self.company, "number": None, "url": self.urls[0] if self.urls else None}] \
                if self.company or self.urls else []
        return [{"company": self.company, "number": n, "url": self.urls[i] if i < len(self.urls) else None}
                for i, n in enumerate(self.numbers)]

    def row(self) -> dict[str, Any]:
        return {"id": self.gid, "order_id": self.order_id, "name": self.name, "status": self.status,
                "created_at": self.created_at, "updated_at": self.updated_at, "tracking_company": self.company, "tracking_numbers": list(self.numbers),
                "tracking_urls": list(self.urls), "notify_customer": self.notify_customer,
                "line_items": [{"id": fl.gid, "fulfillment_order_line_item_id": fl.order_line.gid,
                                "line_item_id": fl.order_line.line_id, "sku": fl.order_line.sku,
                                "quantity": fl.quantity} for fl in self.lines]}


def _current(line: dict[str, Any]) -> int:
    value = line.get("current_quantity", line.get("quantity"))
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ------------------------------------------------------------------------------ the book


class FulfillmentBook:
    """The shop's fulfillment orders, fulfillments and holds, and the webhook subscriptions of the
    fulfillment topics."""

    def __init__(self, store: Store, orders: OrderBook) -> None:
        self.store, self.orders = store, orders
        self.secret = "sandbox-secret"
        self.subscriptions: dict[str, list[str]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()
        orders.watchers.append(self.order_changed)

    def reset(self) -> None:
        self.by_order: dict[int, list[FulfillmentOrder]] = {}
        self.fulfillment_orders: dict[int, FulfillmentOrder] = {}
        self.order_lines: dict[int, OrderLine] = {}
        self.fulfillments: dict[int, Fulfillment] = {}
        self.order_fulfillments: dict[int, list[Fulfillment]] = {}
        self.waiting: set[int] = set()  # paid orders not split yet: the shop had no active location
        self.subscriptions.clear()
        self.deliveries.clear()
        self._next = {"fo": FULFILLMENT_ORDER_BASE + 1, "line": FULFILLMENT_ORDER_LINE_BASE + 1,
                      "f": FULFILLMENT_BASE + 1, "fl": FULFILLMENT_LINE_BASE + 1, "hold": HOLD_BASE + 1}

    def _take(self, kind: str) -> int:
        num = self._next[kind]
        self._next[kind] = num + 1
        return num

    # ---------------------------------------------------------------- orders

    def order_changed(self, order_id: int, held: HeldOrder | None) -> None:
        """The shop holds a new state of an order (None: the order was deleted)."""
        if held is None:
            for fo in self.by_order.pop(order_id, []):
                del self.fulfillment_orders[fo.num]
                for line in fo.lines:
                    del self.order_lines[line.num]
            for f in self.order_fulfillments.pop(order_id, []):
                del self.fulfillments[f.num]
            self.waiting.discard(order_id)
            return
        if order_id not in self.by_order:
            if str(held.body.get("financial_status") or "").lower() in PAID_STATUSES:
                if self._active_locations():
                    self._split(held)
                else:
                    self.waiting.add(order_id)
            return
        self._restate(held)

    def _active_locations(self) -> list[Location]:
        return sorted((loc for loc in self.store.locations.values() if loc.is_active), key=lambda loc: loc.num)

    def settle(self) -> None:
        """Split the paid orders that waited for the shop's first location."""
        if self.waiting and self._active_locations():
            waiting, self.waiting = sorted(self.waiting), set()
            for order_id in waiting:
                held = self.orders.get(order_id)
                if held is not None and order_id not in self.by_order:
                    self._split(held)

    def _split(self, held: HeldOrder) -> None:
        now = _now()
        by_location: dict[int, FulfillmentOrder] = {}
        fos: list[FulfillmentOrder] = []
        for line in held.body.get("line_items") or ():
            if not isinstance(line, dict) or not isinstance(line.get("id"), int) or _current(line) <= 0:
                continue
            location = self.location_for(line.get("sku"), _current(line))
            fo = by_location.get(location.num)
            if fo is None:
                fo = by_location[location.num] = FulfillmentOrder(self._take("fo"), held.id, location, now,
                                                                  updated_at=now)
                fos.append(fo)
            self._add_line(fo, line)
        self.by_order[held.id] = fos
        for fo in fos:
            self.fulfillment_orders[fo.num] = fo
        self._restate(held)

    def _add_line(self, fo: FulfillmentOrder, line: dict[str, Any]) -> OrderLine:
        quantity = _current(line)
        order_line = OrderLine(self._take("line"), fo, line["id"], line.get("sku") or None, quantity, quantity)
        fo.lines.append(order_line)
        self.order_lines[order_line.num] = order_line
        return order_line

    def _restate(self, held: HeldOrder) -> None:
        """Follow the order's lines as they stand (edits, refunds, cancellation)."""
        fos = self.by_order[held.id]
        known = {line.line_id: line for fo in fos for line in fo.lines}
        now = _now()
        cancelled = bool(held.body.get("cancelled_at"))
        for line in held.body.get("line_items") or ():
            if not isinstance(line, dict) or not isinstance(line.get("id"), int):
                continue
            current = _current(line)
            order_line = known.get(line["id"])
            if order_line is None:
                if current <= 0 or cancelled:
                    continue
                location = self.location_for(line.get("sku"), current)
                fo = next((f for f in fos if f.location.num == location.num and f.status in HOLDABLE), None)
                if fo is None:
                    fo = FulfillmentOrder(self._take("fo"), held.id, location, now, updated_at=now)
                    fos.append(fo)
                    self.fulfillment_orders[fo.num] = fo
                self._add_line(fo, line)
                fo.updated_at = now
                continue
            total, remaining = max(current, order_line.fulfilled), max(0, current - order_line.fulfilled)
            if (total, remaining) != (order_line.total, order_line.remaining):
                order_line.total, order_line.remaining = total, remaining
                order_line.fulfillment_order.updated_at = now
        for fo in fos:
            if (cancelled and fo.status in HOLDABLE) or (fo.status in FULFILLABLE and fo.remaining() == 0):
                fo.status, fo.holds, fo.updated_at = "CLOSED", [], now

    def location_for(self, sku: Any, quantity: int) -> Location:
        active = self._active_locations() or sorted(self.store.locations.values(), key=lambda loc: loc.num)
        if isinstance(sku, str) and sku:
            levels = {lv.location.num: lv for v in self.store.variants_with_sku(sku) for lv in v.item.levels.values()}
            enough = [loc for loc in active if loc.num in levels and levels[loc.num].available >= quantity]
            stocked = [loc for loc in active if loc.num in levels]
            if enough or stocked:
                return (enough or stocked)[0]
        return active[0]

    # ---------------------------------------------------------------- lookups

    def fulfillment_order(self, gid: Any) -> FulfillmentOrder | None:
        num = gid_number(gid, "FulfillmentOrder")
        return self.fulfillment_orders.get(num) if num is not None else None

    def fulfillment(self, gid: Any) -> Fulfillment | None:
        num = gid_number(gid, "Fulfillment")
        return self.fulfillments.get(num) if num is not None else None

    def of_order(self, order_id: int) -> list[FulfillmentOrder]:
        self.settle()
        return sorted(self.by_order.get(order_id, ()), key=lambda fo: fo.num)

    # ---------------------------------------------------------------- writes

    def create(self, data: dict[str, Any]) -> tuple[Fulfillment | None, list[dict[str, Any]]]:
        """fulfillmentCreate: (the fulfillment, []) or (None, userErrors); nothing changes on errors."""
        groups = data.get("lineItemsByFulfillmentOrder") or []
        if not groups:
            return None, [_user_error(["fulfillment"], "Line items by fulfillment order can't be blank.")]
        wanted: dict[int, tuple[OrderLine, int]] = {}  # line num -> (line, quantity)
        fos: list[FulfillmentOrder] = []
        order_id: int | None = None
        for group in groups:
            fo = self.fulfillment_order(group.get("fulfillmentOrderId"))
            if fo is None:
                return None, [_user_error(["fulfillment"],
                                          f"Fulfillment order {group.get('fulfillmentOrderId')} does not exist.")]
            if order_id is not None and fo.order_id != order_id:
                return None, [_user_error(["fulfillment"], "All fulfillment orders must belong to the same order.")]
            order_id = fo.order_id
            if fos and fo not in fos and fo.location is not fos[0].location:
                # fulfillmentCreate's reference: "The fulfillment orders are associated with the same
                # order and are assigned to the same location."
                return None, [_user_error(["fulfillment"],
                                          "All fulfillment orders must be assigned to the same location.")]
            if fo.status not in FULFILLABLE:
                return None, [_user_error(["fulfillment"], f"Fulfillment order {fo.num} has an unfulfillable "
                                                           f"status= {fo.status.lower()}.")]
            if fo not in fos:
                fos.append(fo)
            items = group.get("fulfillmentOrderLineItems")
            if not items:
                items = [{"id": line.gid, "quantity": line.remaining} for line in fo.lines if line.remaining > 0]
            for item in items:
                line = next((candidate for candidate in fo.lines if candidate.gid == item.get("id")), None)
                if line is None:
                    return None, [_user_error(["fulfillment"], f"Fulfillment order line item {item.get('id')} does "
                                                               f"not exist on fulfillment order {fo.gid}.")]
                quantity = item.get("quantity")
                before = wanted.get(line.num, (line, 0))[1]
                if not isinstance(quantity, int) or quantity <= 0 or before + quantity > line.remaining:
                    return None, [_user_error(["fulfillment"], QUANTITY_ERROR)]
                wanted[line.num] = (line, before + quantity)
        if not wanted:  # unreachable while an OPEN / IN_PROGRESS fulfillment order has something left
            return None, [_user_error(["fulfillment"], "The fulfillment orders have no line items left to fulfil.")]
        held = self.orders.get(order_id)  # type: ignore[arg-type]
        if held is None:
            return None, [_user_error(["fulfillment"], f"Order {order_id} does not exist.")]
        tracking = data.get("trackingInfo") or {}
        numbers, urls = _tracking(tracking)
        now = _now()
        lines = []
        for line, quantity in wanted.values():
            line.remaining -= quantity
            line.fulfilled += quantity
            lines.append(FulfilledLine(self._take("fl"), line, quantity))
        for fo in fos:
            fo.status, fo.updated_at = ("CLOSED" if fo.remaining() == 0 else "IN_PROGRESS"), now
        made = self.order_fulfillments.setdefault(held.id, [])
        name = f"{held.body.get('name') or '#' + str(held.id)}.{len(made) + 1}"
        fulfillment = Fulfillment(self._take("f"), held.id, name, fos[0].location, now, now, tracking.get("company"),
                                  numbers, urls, lines, fos, bool(data.get("notifyCustomer")))
        made.append(fulfillment)
        self.fulfillments[fulfillment.num] = fulfillment
        for fo in fos:
            fo.fulfillments.append(fulfillment)
        self.notify("fulfillments/create", fulfillment)
        return fulfillment, []

    def update_tracking(self, fulfillment: Fulfillment, tracking: dict[str, Any]) -> None:
        fulfillment.numbers, fulfillment.urls = _tracking(tracking)
        fulfillment.company = tracking.get("company")
        fulfillment.updated_at = _now()
        self.notify("fulfillments/update", fulfillment)

    def hold(self, fo: FulfillmentOrder, reason: str, notes: str | None, handle: str = "", *,
             by_app: bool) -> tuple[Hold | None, list[dict[str, Any]]]:
        if fo.status not in HOLDABLE:
            return None, [{"field": ["id"], "code": None,
                           "message": f"The fulfillment order's status {fo.status} does not allow a hold."}]
        mine = [h for h in fo.holds if h.by_app == by_app]
        if by_app and any(h.handle == handle for h in mine):
            return None, [{"field": ["fulfillmentHold", "handle"], "code": "DUPLICATE_FULFILLMENT_HOLD_HANDLE",
                           "message": "The handle provided for the fulfillment hold is already in use by this app "
                                      "for another hold on this fulfillment order."}]
        if by_app and len(mine) >= APP_HOLD_LIMIT:
            return None, [{"field": ["id"], "code": "FULFILLMENT_ORDER_HOLD_LIMIT_REACHED",
                           "message": "The maximum number of fulfillment holds for this fulfillment order has been "
                                      "reached for this app. An app can only have up to 10 holds on a single "
                                      "fulfillment order at any one time."}]
        hold = Hold(self._take("hold"), reason, notes, handle, by_app)
        if fo.status != "ON_HOLD":
            fo.status_before_hold = fo.status
        fo.holds.append(hold)
        fo.status, fo.updated_at = "ON_HOLD", _now()
        return hold, []

    def release(self, fo: FulfillmentOrder, hold_ids: list[str] | None = None) -> list[dict[str, Any]]:
        if hold_ids:
            unknown = [h for h in hold_ids if h not in {hold.gid for hold in fo.holds}]
            if unknown:
                return [{"field": ["holdIds"], "code": None,
                         "message": f"Fulfillment hold(s) {', '.join(unknown)} not found on fulfillment order {fo.gid}."}]
            fo.holds = [h for h in fo.holds if h.gid not in hold_ids]
        else:
            fo.holds = []
        if not fo.holds and fo.status == "ON_HOLD":
            fo.status, fo.updated_at = fo.status_before_hold, _now()
            if fo.status in FULFILLABLE and fo.remaining() == 0:
                fo.status = "CLOSED"
        return []

    def cancel(self, fo: FulfillmentOrder) -> None:
        fo.status, fo.holds, fo.updated_at = "CANCELLED", [], _now()

    # ---------------------------------------------------------------- webhooks

    def notify(self, topic: str, fulfillment: Fulfillment) -> None:
        """Send the topic's webhook to each subscribed address (in the background; `wait()`)."""
        addresses = self.subscriptions.get(topic) or []
        if not addresses:
            return
        body = json.dumps(self.rest_body(fulfillment)).encode()
        event_id = str(uuid.uuid4())
        for address in addresses:
            task = asyncio.get_running_loop().create_task(self._deliver(address, topic, body, fulfillment, event_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, address: str, topic: str, body: bytes, fulfillment: Fulfillment, event_id: str) -> None:
        webhook_id = str(uuid.uuid4())
        record: dict[str, Any] = {"webhook_id": webhook_id, "event_id": event_id, "topic": topic, "address": address,
                                  "fulfillment_id": fulfillment.gid, "order_id": fulfillment.order_id,
                                  "status": None, "error": None, "at": _now()}
        self.deliveries.append(record)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await send_webhook(client, address, topic, body, self.secret, webhook_id=webhook_id,
                                              event_id=event_id)
            record["status"] = response.status_code
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("fulfillment webhook %s to %s failed: %s", topic, address, exc)

    async def wait(self) -> None:
        """Until every webhook delivery started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def rest_body(self, fulfillment: Fulfillment) -> dict[str, Any]:
        """The REST Fulfillment, as the fulfillments/* webhooks carry it."""
        held = self.orders.get(fulfillment.order_id)
        order = held.body if held else {}
        by_id = {line.get("id"): line for line in order.get("line_items") or () if isinstance(line, dict)}
        fulfilled_of_line: dict[int, int] = {}
        remaining_of_line: dict[int, int] = {}
        for fo in self.by_order.get(fulfillment.order_id, ()):
            for line in fo.lines:
                fulfilled_of_line[line.line_id] = fulfilled_of_line.get(line.line_id, 0) + line.fulfilled
                remaining_of_line[line.line_id] = remaining_of_line.get(line.line_id, 0) + line.remaining
        lines = []
        for fl in fulfillment.lines:
            line_id = fl.order_line.line_id
            source = by_id.get(line_id, {})
            rest = {k: source[k] for k in REST_LINE_KEYS if k in source}
            left = remaining_of_line.get(line_id, 0)
            rest.update({"id": line_id, "quantity": fl.quantity, "fulfillable_quantity": left,
                         "fulfillment_service": "manual", "fulfillment_status": "partial" if left else "fulfilled",
                         "admin_graphql_api_id": f"{GID}LineItem/{line_id}"})
            lines.append(rest)
        numbers, urls = fulfillment.numbers, fulfillment.urls
        return {
            "id": fulfillment.num, "admin_graphql_api_id": fulfillment.gid, "order_id": fulfillment.order_id,
            "name": fulfillment.name, "status": fulfillment.status.lower(),
            "created_at": _rest_time(fulfillment.created_at), "updated_at": _rest_time(fulfillment.updated_at),
            "service": "manual", "shipment_status": None, "location_id": fulfillment.location.num,
            "origin_address": None, "email": order.get("email"), "destination": order.get("shipping_address"),
            "tracking_company": fulfillment.company, "tracking_number": numbers[0] if numbers else None,
            "tracking_numbers": list(numbers), "tracking_url": urls[0] if urls else None,
            "tracking_urls": list(urls), "receipt": {}, "line_items": lines,
        }


def _tracking(tracking: dict[str, Any]) -> tuple[list[str], list[str]]:
    numbers = list(tracking.get("numbers") or ([tracking["number"]] if tracking.get("number") else []))
    urls = list(tracking.get("urls") or ([tracking["url"]] if tracking.get("url") else []))
    return numbers, urls


def _user_error(path: list[str], message: str) -> dict[str, Any]:
    return {"field": path, "message": message}


def book_of(ctx: Ctx) -> FulfillmentBook:
    return ctx.state.fulfillments


# ------------------------------------------------------------------------------ GraphQL


def _count(ctx: Ctx, name: str) -> None:
    calls = ctx.state.stats.mutation_calls
    calls[name] = calls.get(name, 0) + 1


def _order_node(order_id: int, ctx: Ctx) -> Any:
    held = ctx.state.orders.get(order_id)
    return graphql_order(held, ctx) if held else None


@resolver("QueryRoot", "fulfillmentOrder")
def _fulfillment_order(_o: Any, args: dict[str, Any], ctx: Ctx) -> FulfillmentOrder | None:
    return book_of(ctx).fulfillment_order(args.get("id"))


@resolver("QueryRoot", "fulfillment")
def _fulfillment(_o: Any, args: dict[str, Any], ctx: Ctx) -> Fulfillment | None:
    return book_of(ctx).fulfillment(args.get("id"))


connection("Order", "fulfillmentOrders")(lambda order, _a, ctx: book_of(ctx).of_order(order.num))


@resolver("Order", "fulfillments")
def _order_fulfillments(order: Any, args: dict[str, Any], ctx: Ctx) -> list[Fulfillment]:
    made = book_of(ctx).order_fulfillments.get(order.num, [])
    return made[: args["first"]] if args.get("first") is not None else list(made)


@resolver("Order", "displayFulfillmentStatus")
def _display_fulfillment_status(order: Any, _a: dict[str, Any], ctx: Ctx) -> str:
    fos = book_of(ctx).of_order(order.num)
    fulfilled = sum(line.fulfilled for fo in fos for line in fo.lines)
    left = sum(line.remaining for fo in fos for line in fo.lines if fo.status != "CANCELLED")
    if fulfilled and not left:
        return "FULFILLED"
    if fulfilled:
        return "PARTIALLY_FULFILLED"
    if any(fo.status == "ON_HOLD" for fo in fos):
        return "ON_HOLD"
    return "UNFULFILLED"


for _type in ("FulfillmentOrder", "FulfillmentOrderLineItem", "Fulfillment", "FulfillmentLineItem", "FulfillmentHold"):
    resolver(_type, "id")(lambda o, _a, _c: o.gid)

resolver("FulfillmentOrder", "status")(lambda o, _a, _c: o.status)
resolver("FulfillmentOrder", "requestStatus")(lambda _o, _a, _c: "UNSUBMITTED")
resolver("FulfillmentOrder", "createdAt")(lambda o, _a, _c: o.created_at)
resolver("FulfillmentOrder", "updatedAt")(lambda o, _a, _c: o.updated_at)
resolver("FulfillmentOrder", "orderId")(lambda o, _a, _c: f"{GID_ORDER}{o.order_id}")
resolver("FulfillmentOrder", "order")(lambda o, _a, ctx: _order_node(o.order_id, ctx))
resolver("FulfillmentOrder", "fulfillmentHolds")(lambda o, _a, _c: list(o.holds))
resolver("FulfillmentOrder", "fulfillAt")(lambda _o, _a, _c: None)
resolver("FulfillmentOrder", "fulfillBy")(lambda _o, _a, _c: None)
connection("FulfillmentOrder", "lineItems")(lambda o, _a, _c: list(o.lines))
connection("FulfillmentOrder", "fulfillments")(lambda o, _a, _c: list(o.fulfillments))


@resolver("FulfillmentOrder", "orderName")
def _order_name(fo: FulfillmentOrder, _a: dict[str, Any], ctx: Ctx) -> str:
    held = ctx.state.orders.get(fo.order_id)
    return (held.body.get("name") if held else None) or f"#{fo.order_id}"


@resolver("FulfillmentOrder", "orderProcessedAt")
def _order_processed_at(fo: FulfillmentOrder, _a: dict[str, Any], ctx: Ctx) -> str | None:
    node = _order_node(fo.order_id, ctx)
    return node.data["processedAt"] if node else None


@resolver("FulfillmentOrder", "assignedLocation")
def _assigned_location(fo: FulfillmentOrder, _a: dict[str, Any], _c: Ctx) -> dict[str, Any]:
    # the sandbox's locations have no address; the country is the shop's (US)
    return {"name": fo.location.name, "location": fo.location, "countryCode": "US", "address1": None,
            "address2": None, "city": None, "province": None, "zip": None, "phone": None}


resolver("FulfillmentOrderLineItem", "totalQuantity")(lambda o, _a, _c: o.total)
resolver("FulfillmentOrderLineItem", "remainingQuantity")(lambda o, _a, _c: o.remaining)
resolver("FulfillmentOrderLineItem", "sku")(lambda o, _a, _c: o.sku)
resolver("FulfillmentOrderLineItem", "requiresShipping")(lambda _o, _a, _c: True)


def _order_line_item(order_line: OrderLine, ctx: Ctx) -> Any:
    held = ctx.state.orders.get(order_line.fulfillment_order.order_id)
    if held is None:
        return None
    line = next((li for li in held.body.get("line_items") or () if isinstance(li, dict)
                 and li.get("id") == order_line.line_id), {"id": order_line.line_id, "sku": order_line.sku})
    return _line_item(line, held.body["currency"], ctx)


resolver("FulfillmentOrderLineItem", "lineItem")(lambda o, _a, ctx: _order_line_item(o, ctx))


@resolver("FulfillmentOrderLineItem", "productTitle")
def _product_title(o: OrderLine, _a: dict[str, Any], ctx: Ctx) -> str:
    node = _order_line_item(o, ctx)
    return node.data["title"] if node else ""


@resolver("FulfillmentOrderLineItem", "variant")
def _fo_line_variant(o: OrderLine, _a: dict[str, Any], ctx: Ctx) -> Any:
    node = _order_line_item(o, ctx)
    return node.data["variant"] if node else None


@resolver("FulfillmentOrderLineItem", "inventoryItemId")
def _inventory_item_id(o: OrderLine, _a: dict[str, Any], ctx: Ctx) -> str | None:
    variants = ctx.store.variants_with_sku(o.sku) if o.sku else []
    return variants[0].item.gid if variants else None


resolver("Fulfillment", "legacyResourceId")(lambda o, _a, _c: str(o.num))
resolver("Fulfillment", "name")(lambda o, _a, _c: o.name)
resolver("Fulfillment", "status")(lambda o, _a, _c: o.status)
resolver("Fulfillment", "displayStatus")(lambda _o, _a, _c: "FULFILLED")
resolver("Fulfillment", "createdAt")(lambda o, _a, _c: o.created_at)
resolver("Fulfillment", "updatedAt")(lambda o, _a, _c: o.updated_at)
resolver("Fulfillment", "requiresShipping")(lambda _o, _a, _c: True)
resolver("Fulfillment", "totalQuantity")(lambda o, _a, _c: sum(fl.quantity for fl in o.lines))
resolver("Fulfillment", "location")(lambda o, _a, _c: o.location)
resolver("Fulfillment", "order")(lambda o, _a, ctx: _order_node(o.order_id, ctx))
resolver("Fulfillment", "deliveredAt")(lambda _o, _a, _c: None)
resolver("Fulfillment", "inTransitAt")(lambda _o, _a, _c: None)
resolver("Fulfillment", "estimatedDeliveryAt")(lambda _o, _a, _c: None)
connection("Fulfillment", "fulfillmentLineItems")(lambda o, _a, _c: list(o.lines))
connection("Fulfillment", "fulfillmentOrders")(lambda o, _a, _c: sorted(o.fulfillment_orders, key=lambda f: f.num))


@resolver("Fulfillment", "trackingInfo")
def _tracking_info(f: Fulfillment, args: dict[str, Any], _c: Ctx) -> list[dict[str, Any]]:
    infos = f.tracking()
    return infos[: args["first"]] if args.get("first") is not None else infos


resolver("FulfillmentLineItem", "quantity")(lambda o, _a, _c: o.quantity)
resolver("FulfillmentLineItem", "lineItem")(lambda o, _a, ctx: _order_line_item(o.order_line, ctx))

resolver("FulfillmentHold", "reason")(lambda o, _a, _c: o.reason)
resolver("FulfillmentHold", "reasonNotes")(lambda o, _a, _c: o.reason_notes)
resolver("FulfillmentHold", "handle")(lambda o, _a, _c: o.handle)
resolver("FulfillmentHold", "displayReason")(lambda o, _a, _c: HOLD_REASONS.get(o.reason, o.reason))
resolver("FulfillmentHold", "heldByRequestingApp")(lambda o, _a, _c: o.by_app)
resolver("FulfillmentHold", "heldByApp")(lambda _o, _a, _c: None)


# ------------------------------------------------------------------------------ mutations


def fulfillment_create(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "fulfillmentCreate")
    fulfillment, errors = book_of(ctx).create(args["fulfillment"])
    return {"fulfillment": fulfillment, "userErrors": errors}


def fulfillment_tracking_info_update(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "fulfillmentTrackingInfoUpdate")
    book = book_of(ctx)
    fulfillment = book.fulfillment(args["fulfillmentId"])
    if fulfillment is None:
        return {"fulfillment": None, "userErrors": [_user_error(["fulfillmentId"], "Fulfillment does not exist.")]}
    book.update_tracking(fulfillment, args["trackingInfoInput"])
    return {"fulfillment": fulfillment, "userErrors": []}


def _not_found(field_name: str = "id") -> dict[str, Any]:
    return {"field": [field_name], "code": "FULFILLMENT_ORDER_NOT_FOUND", "message": "Fulfillment order not found."}


def fulfillment_order_hold(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "fulfillmentOrderHold")
    book = book_of(ctx)
    fo = book.fulfillment_order(args["id"])
    empty = {"fulfillmentHold": None, "fulfillmentOrder": None, "remainingFulfillmentOrder": None}
    if fo is None:
        return {**empty, "userErrors": [_not_found()]}
    data = args["fulfillmentHold"]
    if data.get("fulfillmentOrderLineItems"):
        raise GraphQLError("fulfillmentOrderHold: holding some line items only (splitting the fulfillment order) is "
                           "not served by the Shopify sandbox", extensions={"code": "NOT_IMPLEMENTED_IN_SANDBOX"})
    hold, errors = book.hold(fo, data["reason"], data.get("reasonNotes"), data.get("handle") or "", by_app=True)
    if errors:
        return {**empty, "userErrors": errors}
    return {"fulfillmentHold": hold, "fulfillmentOrder": fo, "remainingFulfillmentOrder": None, "userErrors": []}


def fulfillment_order_release_hold(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "fulfillmentOrderReleaseHold")
    book = book_of(ctx)
    fo = book.fulfillment_order(args["id"])
    if fo is None:
        return {"fulfillmentOrder": None, "userErrors": [_not_found()]}
    errors = book.release(fo, args.get("holdIds"))
    return {"fulfillmentOrder": None if errors else fo, "userErrors": errors}


MUTATIONS.update({
    "fulfillmentCreate": fulfillment_create,
    "fulfillmentTrackingInfoUpdate": fulfillment_tracking_info_update,
    "fulfillmentOrderHold": fulfillment_order_hold,
    "fulfillmentOrderReleaseHold": fulfillment_order_release_hold,
})


# ------------------------------------------------------------------------------ controls


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def control_router(state: Any) -> APIRouter:
    """/_sandbox/fulfillment_orders, /_sandbox/fulfillments, /_sandbox/webhook_subscriptions,
    /_sandbox/webhook_deliveries (no auth, like every control)."""
    router = APIRouter()
    book: FulfillmentBook = state.fulfillments

    def found(num: int) -> FulfillmentOrder | JSONResponse:
        fo = book.fulfillment_orders.get(num)
        if fo is None:
            return JSONResponse({"detail": f"the shop has no fulfillment order {num}"}, status_code=404)
        return fo

    @router.get("/_sandbox/fulfillment_orders")
    async def list_fulfillment_orders(order_id: int | None = None) -> JSONResponse:
        book.settle()
        fos = book.of_order(order_id) if order_id is not None else sorted(book.fulfillment_orders.values(),
                                                                          key=lambda fo: fo.num)
        return JSONResponse([fo.row() for fo in fos])

    @router.post("/_sandbox/fulfillment_orders/{num}/hold")
    async def hold(num: int, request: Request) -> JSONResponse:
        """The merchant puts the fulfillment order on hold (body {"reason"?: "OTHER", "reason_notes"?})."""
        fo = found(num)
        if isinstance(fo, JSONResponse):
            return fo
        body = await _json_body(request) or {}
        reason = body.get("reason", "OTHER") if isinstance(body, dict) else None
        if reason not in HOLD_REASONS:
            return JSONResponse({"detail": f"reason must be one of {sorted(HOLD_REASONS)}"}, status_code=422)
        _, errors = book.hold(fo, reason, body.get("reason_notes"), by_app=False)
        if errors:
            return JSONResponse({"detail": errors[0]["message"]}, status_code=422)
        return JSONResponse(fo.row())

    @router.post("/_sandbox/fulfillment_orders/{num}/release")
    async def release(num: int) -> JSONResponse:
        """The merchant releases every hold of the fulfillment order."""
        fo = found(num)
        if isinstance(fo, JSONResponse):
            return fo
        book.release(fo)
        return JSONResponse(fo.row())

    @router.post("/_sandbox/fulfillment_orders/{num}/cancel")
    async def cancel(num: int) -> JSONResponse:
        """The merchant cancels the fulfillment order (no replacement is opened)."""
        fo = found(num)
        if isinstance(fo, JSONResponse):
            return fo
        if fo.status == "CLOSED":
            return JSONResponse({"detail": "a closed fulfillment order cannot be cancelled"}, status_code=422)
        book.cancel(fo)
        return JSONResponse(fo.row())

    @router.get("/_sandbox/fulfillments")
    async def list_fulfillments(order_id: int | None = None) -> JSONResponse:
        made = book.order_fulfillments.get(order_id, []) if order_id is not None else sorted(
            book.fulfillments.values(), key=lambda f: f.num)
        return JSONResponse([f.row() for f in made])

    @router.get("/_sandbox/webhook_subscriptions")
    async def subscriptions() -> JSONResponse:
        return JSONResponse(book.subscriptions)

    @router.post("/_sandbox/webhook_subscriptions")
    async def subscribe(request: Request) -> JSONResponse:
        """Subscribe an address to a fulfillment topic (webhookSubscriptionCreate's effect)."""
        body = await _json_body(request)
        topic = body.get("topic") if isinstance(body, dict) else None
        address = body.get("address") if isinstance(body, dict) else None
        if topic not in WEBHOOK_TOPICS or not isinstance(address, str) or not address.startswith(("http://", "https://")):
            return JSONResponse({"detail": f'body: {{"topic": one of {list(WEBHOOK_TOPICS)}, "address": "http(s)://..."}}'},
                                status_code=422)
        addresses = book.subscriptions.setdefault(topic, [])
        if address not in addresses:
            addresses.append(address)
        return JSONResponse(book.subscriptions)

    @router.delete("/_sandbox/webhook_subscriptions")
    async def unsubscribe() -> JSONResponse:
        book.subscriptions.clear()
        return JSONResponse(book.subscriptions)

    @router.get("/_sandbox/webhook_deliveries")
    async def deliveries(topic: str | None = None, wait: bool = False) -> JSONResponse:
        if wait:
            await book.wait()
        return JSONResponse([d for d in book.deliveries if topic is None or d["topic"] == topic])

    return router
