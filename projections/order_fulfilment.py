"""The order read model's fulfilment: per Shopify order, what Prima despatched, what is fulfilled
in Shopify, the tracking numbers, and the exception that holds it. Built from the
fulfilment-events topic (the OrderFulfilment aggregate's events, contracts/fulfilment/events.py);
rebuildable from offset zero: rows come from event data and event timestamps only, never the
clock. Shown with the order by the ops API (GET /orders/{id}, GET /fulfilments/{id}) and by
`shopify-prima orders show`.

One row (readmodel.order_fulfilment) per order:
- `lines`: the order's lines as the sales order states them (a bundle with its components),
  each with the units fulfilled by the integration's fulfilments;
- `despatches`: Prima's despatch notes (the first version's lines, the latest version's parcels
  with carrier, tracking number and URL), each `recorded` (not decided yet), `waiting` (nothing
  whole to fulfil yet: its parcels ride with the next fulfilment), `requested`, `fulfilled` (with
  the fulfilment that carries it), `exception`, or `settled` (an operator released its exception
  with --settle-despatch: handled outside the integration, with `settled_reason`);
- `fulfilments`: each fulfilment asked of Shopify (`requested`, `created` with Shopify's id, or
  `refused`), the despatches it covers, its line quantities, its tracking (as Shopify has it,
  after any update) and its tracking updates;
- `tracking_numbers`: every number on a created fulfilment; the open `exception` (kind, despatch,
  reason, since, action) and the `released_exceptions`.

Fully fulfilled: every line's quantity fulfilled, summing the line quantities of the created
fulfilments (each FulfilmentCreated matched to its FulfilmentRequested by command id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

import asyncpg

from contracts.fulfilment.events import FulfilmentEvent, FulfilmentProblem
from contracts.topics import FULFILMENT_EVENTS
from projections.base import Projection, ReadModel

log = logging.getLogger("shopify_prima.projections.order_fulfilment")

AWAITING_DESPATCH = "awaiting_despatch"  # nothing despatched yet for the integration to fulfil (or only settled)
DESPATCHED = "despatched"  # a despatch not decided yet (the order's lines or fulfillment orders not read yet)
WAITING = "waiting"  # despatched, nothing whole (line or bundle) to fulfil yet
FULFILMENT_REQUESTED = "fulfilment_requested"  # a fulfilment asked of Shopify, its answer not in yet
PARTLY_FULFILLED = "partly_fulfilled"
FULFILLED = "fulfilled"  # every line's quantity fulfilled
EXCEPTION = "exception"  # held until an operator releases it

# the kinds the OrderFulfilment aggregate raises, as its events state them
EXCEPTION_KINDS: tuple[str, ...] = get_args(FulfilmentProblem.model_fields["kind"].annotation)

ORDER_FULFILMENT = ReadModel(
    name="order_fulfilment",
    states=(AWAITING_DESPATCH, DESPATCHED, WAITING, FULFILMENT_REQUESTED, PARTLY_FULFILLED, FULFILLED, EXCEPTION),
    exception_kinds=EXCEPTION_KINDS,
)
DESPATCH_STATUSES = ("recorded", "waiting", "requested", "fulfilled", "exception", "settled")
FULFILMENT_STATUSES = ("requested", "created", "refused")

_JSON_COLUMNS = ("lines", "despatches", "fulfilments", "fulfillment_orders", "exception", "released_exceptions")
_COLUMNS = ("shopify_order_id", "state", *_JSON_COLUMNS, "tracking_numbers", "fulfillment_orders_read_at",
            "exception_kind", "opened_at", "updated_at", "last_event_version")


def release_command(shopify_order_id: int, settle_despatch: bool = False) -> str:
    return f"shopify-prima fulfilment release {shopify_order_id}" + (" --settle-despatch" if settle_despatch else "")


def action(kind: str, shopify_order_id: int) -> str:
    """What the operator does about an exception of this kind: release it once its cause is
    fixed; a despatch the integration cannot fulfil however often it is released (a SKU not on
    the order, a line fulfilled by hand or removed) is released settling the despatch."""
    release = release_command(shopify_order_id)
    settle = (f"; or, if what the despatch shipped is (or will be) fulfilled by hand in Shopify, "
              f"`{release_command(shopify_order_id, settle_despatch=True)}` settles the despatch and decides the "
              f"order's next despatches")
    if kind == "sku_not_on_order":
        return (f"the despatch names a SKU no line of the order holds: put the order right (a corrected note keeps "
                f"the first version's lines), then `{release}`{settle}")
    if kind == "cannot_allocate":
        return (f"Shopify's fulfillment orders cannot take the despatch (on hold, closed, a line removed or already "
                f"fulfilled): release the hold or fix the order in Shopify, then `{release}`{settle}")
    if kind == "tracking_refused":
        return f"Shopify refused the tracking update: check the fulfilment in Shopify, then `{release}` sends it again"
    return (f"Shopify refused the fulfilment: deal with its userErrors in Shopify (a hold, the quantities), then "
            f"`{release}` (the same despatch keeps its idempotency key)")


def _iso(value: datetime) -> str:
    return value.isoformat()


def _tracking(tracking: Any) -> dict[str, Any]:
    return {"company": tracking.company, "numbers": list(tracking.numbers), "urls": list(tracking.urls)}


class OrderFulfilmentProjection(Projection):
    read_model = ORDER_FULFILMENT
    topic = FULFILMENT_EVENTS
    accepts = (FulfilmentEvent,)
    tables = ("readmodel.order_fulfilment",)

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        """The batch's orders are read once, their events applied in order, each row written once."""
        order_ids = sorted({m.shopify_order_id for m in messages})
        found = await conn.fetch(
            f"SELECT shopify_order_id, state, {', '.join(f'{c}::text' for c in _JSON_COLUMNS)}, tracking_numbers, "
            "fulfillment_orders_read_at, exception_kind, opened_at, updated_at, last_event_version "
            "FROM readmodel.order_fulfilment WHERE shopify_order_id = ANY($1::bigint[])", order_ids)
        rows: dict[int, dict[str, Any]] = {}
        for r in found:
            row = dict(r)
            for column in _JSON_COLUMNS:
                row[column] = json.loads(row[column]) if row[column] is not None else None
            row["tracking_numbers"] = list(row["tracking_numbers"])
            rows[r["shopify_order_id"]] = row
        changed: set[int] = set()
        for e in messages:
            row = rows.get(e.shopify_order_id)
            if row is None:
                row = rows[e.shopify_order_id] = _new_row(e)
            elif e.aggregate_version <= row["last_event_version"]:
                continue  # applied already (the base dedupes too; this keeps a row's own history whole)
            apply_event(row, e)
            row["updated_at"], row["last_event_version"] = e.timestamp, e.aggregate_version
            row["state"] = state_of(row)
            changed.add(e.shopify_order_id)
        if changed:
            await conn.executemany(
                f"""INSERT INTO readmodel.order_fulfilment ({', '.join(_COLUMNS)})
                    VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11,
                            $12, $13, $14)
                    ON CONFLICT (shopify_order_id) DO UPDATE SET
                    {', '.join(f'{c} = EXCLUDED.{c}' for c in _COLUMNS[1:])}""",
                [_values(rows[order_id]) for order_id in sorted(changed)])

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        states, kinds = await super().counts(db)
        states.update({r["state"]: r["n"] for r in await db.fetch(
            "SELECT state, count(*) AS n FROM readmodel.order_fulfilment GROUP BY state")})
        kinds.update({r["exception_kind"]: r["n"] for r in await db.fetch(
            "SELECT exception_kind, count(*) AS n FROM readmodel.order_fulfilment WHERE exception_kind IS NOT NULL "
            "GROUP BY exception_kind")})
        return states, kinds


def _new_row(e: Any) -> dict[str, Any]:
    return {"shopify_order_id": e.shopify_order_id, "state": AWAITING_DESPATCH, "lines": [], "despatches": [],
            "fulfilments": [], "fulfillment_orders": None, "exception": None, "released_exceptions": [],
            "tracking_numbers": [], "fulfillment_orders_read_at": None, "exception_kind": None,
            "opened_at": e.timestamp, "updated_at": e.timestamp, "last_event_version": 0}


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(row[c]) if c in _JSON_COLUMNS and row[c] is not None else row[c] for c in _COLUMNS)


# ------------------------------------------------------------------------------ applying events


def _despatch(row: dict[str, Any], despatch_id: str) -> dict[str, Any] | None:
    return next((d for d in row["despatches"] if d["despatch_id"] == despatch_id), None)


def _fulfilment(row: dict[str, Any], command_id: Any) -> dict[str, Any] | None:
    return next((f for f in row["fulfilments"] if f["command_id"] == str(command_id)), None)


def _tracking_update(row: dict[str, Any], command_id: Any) -> dict[str, Any] | None:
    return next((u for f in row["fulfilments"] for u in f["tracking_updates"] if u["command_id"] == str(command_id)),
                None)


def _recount(row: dict[str, Any]) -> None:
    """Units fulfilled per line and the tracking numbers, from the created fulfilments."""
    fulfilled: dict[int, int] = {}
    numbers: list[str] = []
    for f in row["fulfilments"]:
        if f["status"] != "created":
            continue
        for q in f["line_quantities"]:
            fulfilled[q["line_item_id"]] = fulfilled.get(q["line_item_id"], 0) + q["quantity"]
        numbers += [n for n in f["tracking"]["numbers"] if n not in numbers]
    for line in row["lines"]:
        line["fulfilled"] = fulfilled.get(line["line_item_id"], 0)
    row["tracking_numbers"] = numbers


def apply_event(row: dict[str, Any], e: Any) -> None:
    t = e.event_type.removeprefix("OrderFulfilment.")
    if t == "Opened":
        row["opened_at"] = e.timestamp
    elif t == "LinesRecorded":
        row["lines"] = [{"line_item_id": line.line_item_id, "sku": line.sku, "quantity": line.quantity,
                         "components": [{"sku": c.sku, "units_per_bundle": c.units_per_bundle}
                                        for c in line.components], "fulfilled": 0} for line in e.lines]
        _recount(row)
    elif t == "FulfillmentOrdersRead":
        row["fulfillment_orders"] = [o.model_dump(mode="json") for o in e.fulfillment_orders]
        row["fulfillment_orders_read_at"] = e.read_at
    elif t == "DespatchRecorded":
        parcels = [p.model_dump(mode="json") for p in e.parcels]
        known = _despatch(row, e.despatch_id)
        if known is None:
            row["despatches"].append({
                "despatch_id": e.despatch_id, "version": e.version, "change_id": e.change_id,
                "sales_order_number": e.sales_order_number, "despatched_at": _iso(e.despatched_at),
                "lines": [u.model_dump(mode="json") for u in e.lines], "parcels": parcels, "status": "recorded",
                "fulfilment_id": None, "waiting_reason": None, "settled_reason": None,
                "recorded_at": _iso(e.timestamp)})
        else:  # a later version: new tracking; what was shipped stays the note's first statement
            known.update(version=e.version, change_id=e.change_id, parcels=parcels)
    elif t == "NothingFulfillable":
        despatch = _despatch(row, e.despatch_id)
        if despatch is not None:
            despatch.update(status="waiting", waiting_reason=e.reason)
    elif t == "FulfilmentRequested":
        c = e.command
        row["fulfilments"].append({
            "command_id": str(c.command_id), "idempotency_key": c.idempotency_key, "despatch_id": c.despatch_id,
            "covers": list(c.covers), "status": "requested", "fulfilment_id": None, "fulfilment_name": None,
            "line_quantities": [q.model_dump(mode="json") for q in c.line_quantities],
            "tracking": _tracking(c.tracking), "notify_customer": c.notify_customer, "warnings": list(c.warnings),
            "requested_at": _iso(c.issued_at), "created_at": None, "refused": None, "tracking_updates": []})
        despatch = _despatch(row, c.despatch_id)
        if despatch is not None:
            despatch["status"] = "requested"
    elif t == "FulfilmentCreated":
        fulfilment = _fulfilment(row, e.command_id)
        if fulfilment is None:  # the aggregate records a creation only for the command it requested
            log.warning("order %s: FulfilmentCreated for command %s, which no FulfilmentRequested asked",
                        e.shopify_order_id, e.command_id)
            return
        fulfilment.update(status="created", fulfilment_id=e.fulfilment_id, created_at=_iso(e.occurred_at))
        for despatch_id in fulfilment["covers"]:
            despatch = _despatch(row, despatch_id)
            if despatch is not None:
                despatch.update(status="fulfilled", fulfilment_id=e.fulfilment_id)
        _recount(row)
    elif t == "ExceptionRaised":
        x = e.exception
        row["exception"] = {"exception_id": str(e.event_id), "kind": x.kind, "despatch_id": x.despatch_id,
                            "reason": x.reason, "command_id": str(x.command_id) if x.command_id else None,
                            "since": _iso(e.timestamp), "action": action(x.kind, e.shopify_order_id)}
        row["exception_kind"] = x.kind
        refused = {"reason": x.reason, "at": _iso(e.timestamp)}
        if x.command_id is not None:
            fulfilment = _fulfilment(row, x.command_id)
            if fulfilment is not None and fulfilment["status"] == "requested":
                fulfilment.update(status="refused", refused=refused)
            update = _tracking_update(row, x.command_id)
            if update is not None and update["status"] == "requested":
                update.update(status="refused", refused=refused)
        if x.kind != "tracking_refused":
            despatch = _despatch(row, x.despatch_id)
            if despatch is not None:
                despatch["status"] = "exception"
    elif t == "TrackingUpdateRequested":
        c = e.command
        fulfilment = next((f for f in row["fulfilments"] if f["fulfilment_id"] == c.fulfilment_id), None)
        if fulfilment is not None:
            fulfilment["tracking_updates"].append({
                "command_id": str(c.command_id), "idempotency_key": c.idempotency_key, "despatch_id": c.despatch_id,
                "tracking": _tracking(c.tracking), "status": "requested", "requested_at": _iso(c.issued_at),
                "updated_at": None, "refused": None, "warnings": list(c.warnings)})
    elif t == "TrackingUpdated":
        for fulfilment in row["fulfilments"]:
            for update in fulfilment["tracking_updates"]:
                if update["command_id"] == str(e.command_id):
                    update.update(status="updated", updated_at=_iso(e.occurred_at))
                    fulfilment["tracking"] = update["tracking"]  # it replaces what Shopify had
        _recount(row)
    elif t == "Released":
        held = row["exception"] or {"exception_id": None, "kind": e.previous.kind,
                                    "despatch_id": e.previous.despatch_id, "reason": e.previous.reason,
                                    "command_id": str(e.previous.command_id) if e.previous.command_id else None,
                                    "since": None, "action": action(e.previous.kind, e.shopify_order_id)}
        row["released_exceptions"].append({**held, "released_at": _iso(e.timestamp), "released_by": e.released_by})
        row["exception"], row["exception_kind"] = None, None
        for despatch in row["despatches"]:
            if despatch["status"] == "exception":
                despatch["status"] = "recorded"  # decided again
    elif t == "DespatchSettled":
        despatch = _despatch(row, e.despatch_id)
        if despatch is not None:
            despatch.update(status="settled", settled_reason=e.reason)


def fully_fulfilled(row: dict[str, Any]) -> bool:
    """Every line's quantity fulfilled by the created fulfilments (a line's `fulfilled`)."""
    return bool(row["lines"]) and all(line["fulfilled"] >= line["quantity"] for line in row["lines"])


def state_of(row: dict[str, Any]) -> str:
    """The row's state, from what it holds."""
    if row["exception"] is not None:
        return EXCEPTION
    if any(f["status"] == "requested" for f in row["fulfilments"]):
        return FULFILMENT_REQUESTED
    created = any(f["status"] == "created" for f in row["fulfilments"])
    if created and fully_fulfilled(row):
        return FULFILLED
    if created:
        return PARTLY_FULFILLED
    if any(d["status"] == "recorded" for d in row["despatches"]):
        return DESPATCHED
    if any(d["status"] == "waiting" for d in row["despatches"]):
        return WAITING
    return AWAITING_DESPATCH  # nothing despatched, or only despatches settled outside the integration


# ------------------------------------------------------------------------------ reading it


async def fulfilment_of(db: asyncpg.Pool | asyncpg.Connection, shopify_order_id: int) -> dict[str, Any] | None:
    """An order's fulfilment row as the ops API shows it (JSON columns decoded), or None."""
    row = await db.fetchrow(
        f"SELECT {', '.join(f'{c}::text AS {c}' if c in _JSON_COLUMNS else c for c in _COLUMNS)} "
        "FROM readmodel.order_fulfilment WHERE shopify_order_id = $1", shopify_order_id)
    if row is None:
        return None
    out = dict(row)
    for column in _JSON_COLUMNS:
        out[column] = json.loads(out[column]) if out[column] is not None else None
    out["fully_fulfilled"] = fully_fulfilled(out)
    return out
