"""Despatch notes in the Prima sandbox: what the warehouse shipped against a sales order, in which
parcels, behind a cursor feed (`GET /v1/despatches?after=&limit=`, as the stock feed), as
contracts/prima/openapi.yaml documents them, in the sandbox's PostgreSQL schema. The fault
switches (faults.py) apply as to every /v1 route: set `path_prefix` to /v1/despatches and
`method` to GET.

- `POST /_sandbox/sales-orders/{number}/despatch` (the warehouse despatches): lines (absent:
  everything left to despatch), in one or more parcels. A despatch note DN-000001, ... is made,
  the lines leave the warehouse (on hand and allocated both fall by their units) and the feed gets
  a change `despatched`. The order becomes `despatched` once nothing is left, `picking` before
  (a partial despatch: past the amendment cut-off).
- `GET /v1/sales-orders/{number}/despatches`: the order's notes as they stand now.
- `POST /_sandbox/despatches/{despatch_id}/parcels/{parcel_number}/tracking`: a parcel gets its
  tracking number (or a corrected one) after the fact: the note's version goes up and the feed
  gets a change `tracking_updated` carrying the whole note again. The same tracking again
  changes nothing.

What can be despatched: a stock item line its SKU, a bundle (kit) line its components (bundle
quantity x component quantity), a service or an account line nothing; less what earlier notes
despatched from that line. A quantity beyond that is 409 `over_despatch`, a SKU the order does
not carry 422 `not_on_sales_order`, a cancelled (or already wholly despatched) order 409
`invalid_status`, an unknown one 404; each changes nothing.

Feed order: a despatch or tracking change draws its change_id from the sequence
`despatch_change_id` while holding a transaction lock that serializes those writers, so
change_ids become visible in increasing order and a poller that stores `next_cursor` misses
nothing. Each change is its own entry (a change log, unlike stock's latest-value records), so a
consumer sees the despatch and, later, the tracking update. Neither the sequence nor the
despatch number counter is reset by `/_sandbox/reset` (a consumer's cursor and its record of
despatch ids stay valid); the notes and their changes are deleted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC

import asyncpg
from fastapi import Depends, FastAPI, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .lifecycle import ADJUST_ALLOCATION
from .models import SalesOrderCreate
from .store import ALLOCATION_WAREHOUSE, ApiError, create_tables, decode_stock_cursor

DDL = """
INSERT INTO counters VALUES ('despatch', 0) ON CONFLICT DO NOTHING;
CREATE SEQUENCE IF NOT EXISTS despatch_change_id;
CREATE TABLE IF NOT EXISTS despatches (
    despatch_id        text PRIMARY KEY,
    sales_order_number text NOT NULL,
    version            integer NOT NULL,
    note               jsonb NOT NULL,  -- the note as it stands (latest change)
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS despatches_sales_order ON despatches (sales_order_number);
-- one row per change, the note as of that change: what the feed serves
CREATE TABLE IF NOT EXISTS despatch_changes (
    change_id   bigint PRIMARY KEY,
    despatch_id text NOT NULL,
    version     integer NOT NULL,
    note        jsonb NOT NULL,
    UNIQUE (despatch_id, version)
);
"""

CHANGE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_despatch_changes:' || current_schema()))"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DespatchLineRequest(_Body):
    sku: str = Field(min_length=1, max_length=255)
    quantity: int = Field(gt=0, le=1_000_000_000)
    line_number: int | None = Field(None, ge=1)  # the sales-order line; None: the SKU's lines in order


class ParcelLineRequest(_Body):
    sku: str = Field(min_length=1, max_length=255)
    quantity: int = Field(gt=0, le=1_000_000_000)


class ParcelRequest(_Body):
    carrier: str = Field(min_length=1, max_length=100)  # as Prima names it: DPD, Royal Mail, UPS
    tracking_number: str | None = Field(None, min_length=1, max_length=255)
    tracking_url: str | None = Field(None, min_length=1, max_length=2000, pattern=r"^https?://")
    lines: list[ParcelLineRequest] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _url_with_a_number(self) -> ParcelRequest:
        if self.tracking_url is not None and self.tracking_number is None:
            raise ValueError("a tracking_url comes with its tracking_number")
        return self


class DespatchRequest(_Body):
    lines: list[DespatchLineRequest] | None = Field(None, min_length=1)
    parcels: list[ParcelRequest] = Field(min_length=1, max_length=100)
    despatched_at: AwareDatetime | None = None  # default: now

    @model_validator(mode="after")
    def _parcel_lines_all_or_none(self) -> DespatchRequest:
        given = [p.lines is not None for p in self.parcels]
        if any(given) and not all(given):
            raise ValueError("parcel lines are given for every parcel or for none")
        numbers = [p.tracking_number for p in self.parcels if p.tracking_number is not None]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a tracking number is given to two parcels")
        return self


class TrackingUpdate(_Body):
    tracking_number: str = Field(min_length=1, max_length=255)
    tracking_url: str | None = Field(None, min_length=1, max_length=2000, pattern=r"^https?://")
    carrier: str | None = Field(None, min_length=1, max_length=100)  # None: the parcel's carrier


@dataclass
class _Despatchable:
    """What one sales-order line can still despatch of one SKU."""

    line_number: int
    external_line_id: int | None
    sku: str
    left: int


def _sum_by_sku(lines: list) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for line in lines:
        total[line.sku] += line.quantity
    return dict(total)


class Despatches:
    def __init__(self, pool: asyncpg.Pool, warehouse: str = ALLOCATION_WAREHOUSE) -> None:
        self.pool = pool
        self.warehouse = warehouse

    async def create_tables(self) -> None:
        await create_tables(self.pool, DDL)

    async def reset(self) -> None:
        """Delete the notes and the feed; the despatch counter and change sequence go on."""
        await self.pool.execute("TRUNCATE despatches, despatch_changes")

    async def count(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM despatches")

    # -- the warehouse ------------------------------------------------------------------------

    async def _despatchable(self, conn: asyncpg.Connection, number: str, body: SalesOrderCreate) -> list[_Despatchable]:
        """Per sales-order line and SKU, in line order: ordered less despatched by earlier notes."""
        items = {r["item_id"]: r for r in await conn.fetch(
            "SELECT item_id, item_type, components FROM items WHERE item_id = ANY($1)",
            [line.item_id for line in body.lines if line.kind == "item"])}
        done: dict[tuple[int, str], int] = defaultdict(int)
        for row in await conn.fetch("SELECT note FROM despatches WHERE sales_order_number = $1", number):
            for line in json.loads(row["note"])["lines"]:
                done[(line["line_number"], line["sku"])] += line["quantity"]
        units: list[_Despatchable] = []
        for line in sorted(body.lines, key=lambda line: line.line_number):
            if line.kind != "item":
                continue
            item = items.get(line.item_id)
            item_type = item["item_type"] if item is not None else "stock"
            if item_type == "service":
                continue  # nothing to pick
            parts = ([(c["sku"], line.quantity * c["quantity"]) for c in json.loads(item["components"])]
                     if item_type == "bundle" else [(line.sku, line.quantity)])
            for sku, ordered in parts:
                units.append(_Despatchable(line.line_number, line.external_line_id, sku,
                                           ordered - done[(line.line_number, sku)]))
        return units

    @staticmethod
    def _take(number: str, units: list[_Despatchable], wanted: list[DespatchLineRequest]) -> list[dict]:
        """The note's lines for the requested ones: each SKU from its sales-order lines in line
        order (or the one named); refused if more is asked than is left."""
        taken: dict[tuple[int, str], int] = defaultdict(int)
        for request in wanted:
            matching = [u for u in units if u.sku == request.sku
                        and (request.line_number is None or u.line_number == request.line_number)]
            where = f"SKU {request.sku}" + (f" on line {request.line_number}" if request.line_number else "")
            if not matching:
                raise ApiError("not_on_sales_order", f"sales order {number} has no {where} to despatch", 422)
            left = sum(u.left - taken[(u.line_number, u.sku)] for u in matching)
            if request.quantity > left:
                raise ApiError("over_despatch", f"{where}: {request.quantity} asked, {left} left to despatch "
                                                f"on sales order {number}", 409)
            asked = request.quantity
            for unit in matching:
                n = min(asked, unit.left - taken[(unit.line_number, unit.sku)])
                if n > 0:
                    taken[(unit.line_number, unit.sku)] += n
                    asked -= n
        return [{"line_number": u.line_number, "external_line_id": u.external_line_id, "sku": u.sku,
                 "quantity": taken[(u.line_number, u.sku)]}
                for u in units if taken[(u.line_number, u.sku)]]

    async def despatch(self, number: str, request: DespatchRequest) -> dict:
        async with self.pool.acquire() as conn, conn.transaction():
            order = await conn.fetchrow("SELECT * FROM sales_orders WHERE sales_order_number = $1 FOR UPDATE", number)
            if order is None:
                raise ApiError("not_found", f"no sales order {number}", 404)
            if order["status"] in ("cancelled", "despatched"):
                raise ApiError("invalid_status", f"sales order {number} is {order['status']}: nothing to despatch")
            units = await self._despatchable(conn, number, SalesOrderCreate(**json.loads(order["body"])))
            parcel_lines = None if request.parcels[0].lines is None else [
                line for parcel in request.parcels for line in parcel.lines]
            if request.lines is not None:
                wanted = request.lines
            elif parcel_lines is not None:
                wanted = [DespatchLineRequest(sku=sku, quantity=n) for sku, n in _sum_by_sku(parcel_lines).items()]
            else:
                wanted = [DespatchLineRequest(sku=u.sku, quantity=u.left, line_number=u.line_number)
                          for u in units if u.left > 0]
                if not wanted:
                    raise ApiError("nothing_to_despatch", f"sales order {number} has nothing left to despatch")
            lines = self._take(number, units, wanted)
            if parcel_lines is not None and _sum_by_sku(parcel_lines) != _sum_by_sku(wanted):
                raise ApiError("parcel_lines_mismatch", "the parcels' lines do not add up, per SKU, to the "
                                                        "lines despatched", 422)
            # the lines leave the warehouse: allocated and on hand fall together
            shipped = defaultdict(int)
            for line in lines:
                shipped[line["sku"]] += line["quantity"]
            skus = sorted(shipped)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_stock:' || current_schema()))")
            await conn.execute(ADJUST_ALLOCATION, skus, [-shipped[s] for s in skus], [shipped[s] for s in skus],
                               self.warehouse)
            left = sum(u.left for u in units) - sum(shipped.values())
            status = "despatched" if left == 0 else (
                "picking" if order["status"] in ("open", "released_to_warehouse") else order["status"])
            await conn.execute(
                """UPDATE sales_orders SET status = $2, updated_at = now(), released_at = coalesce(released_at, now())
                   WHERE sales_order_number = $1""", number, status)
            seq = await conn.fetchval("UPDATE counters SET value = value + 1 WHERE name = 'despatch' RETURNING value")
            despatched_at = (request.despatched_at or await conn.fetchval("SELECT now()")).astimezone(UTC)
            note = {
                "despatch_id": f"DN-{seq:06d}", "version": 1,
                "sales_order_number": number, "external_reference": order["external_reference"],
                "warehouse": self.warehouse,
                "despatched_at": despatched_at.isoformat().replace("+00:00", "Z"),
                "lines": lines,
                "parcels": [{"parcel_number": i, "carrier": p.carrier, "tracking_number": p.tracking_number,
                             "tracking_url": p.tracking_url,
                             "lines": None if p.lines is None else [line.model_dump() for line in p.lines]}
                            for i, p in enumerate(request.parcels, start=1)],
            }
            return await self._record(conn, note, "despatched", created=True)

    async def add_tracking(self, despatch_id: str, parcel_number: int, update: TrackingUpdate) -> dict:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT note FROM despatches WHERE despatch_id = $1 FOR UPDATE", despatch_id)
            if row is None:
                raise ApiError("not_found", f"no despatch note {despatch_id}", 404)
            note = json.loads(row["note"])
            parcel = next((p for p in note["parcels"] if p["parcel_number"] == parcel_number), None)
            if parcel is None:
                raise ApiError("not_found", f"despatch note {despatch_id} has no parcel {parcel_number}", 404)
            changed = {"tracking_number": update.tracking_number, "tracking_url": update.tracking_url,
                       "carrier": update.carrier or parcel["carrier"]}
            if all(parcel[k] == v for k, v in changed.items()):
                return note  # the same tracking again: no change
            if any(p["tracking_number"] == update.tracking_number for p in note["parcels"] if p is not parcel):
                raise ApiError("duplicate_tracking_number", f"another parcel of {despatch_id} has tracking number "
                                                            f"{update.tracking_number}", 409)
            parcel.update(changed)
            note["version"] += 1
            return await self._record(conn, note, "tracking_updated", created=False)

    async def _record(self, conn: asyncpg.Connection, note: dict, change: str, *, created: bool) -> dict:
        """Give the note its change: a change_id drawn under the writers' lock, so change_ids
        become visible in increasing order; store the note and append it to the feed."""
        await conn.execute(CHANGE_LOCK)
        change_id, changed_at = await conn.fetchrow("SELECT nextval('despatch_change_id'), now()")
        note.update(change_id=change_id, change=change, changed_at=changed_at.isoformat().replace("+00:00", "Z"))
        document = json.dumps(note)
        if created:
            await conn.execute("INSERT INTO despatches (despatch_id, sales_order_number, version, note) "
                               "VALUES ($1, $2, $3, $4)", note["despatch_id"], note["sales_order_number"],
                               note["version"], document)
        else:
            await conn.execute("UPDATE despatches SET version = $2, note = $3 WHERE despatch_id = $1",
                               note["despatch_id"], note["version"], document)
        await conn.execute("INSERT INTO despatch_changes (change_id, despatch_id, version, note) "
                           "VALUES ($1, $2, $3, $4)", change_id, note["despatch_id"], note["version"], document)
        return note

    # -- the API ------------------------------------------------------------------------------

    async def changes(self, after: str | None, limit: int) -> tuple[list[dict], str, bool]:
        """The changes after the cursor, in change_id order; the cursor is the last change_id."""
        position = decode_stock_cursor(after) if after is not None else 0
        rows = await self.pool.fetch(
            "SELECT change_id, note FROM despatch_changes WHERE change_id > $1 ORDER BY change_id LIMIT $2",
            position, limit + 1)
        page = [json.loads(r["note"]) for r in rows[:limit]]
        return page, str(page[-1]["change_id"] if page else position), len(rows) > limit

    async def get(self, despatch_id: str) -> dict | None:
        note = await self.pool.fetchval("SELECT note FROM despatches WHERE despatch_id = $1", despatch_id)
        return json.loads(note) if note is not None else None

    async def for_sales_order(self, number: str) -> list[dict] | None:
        """The notes of a sales order as they stand, in despatch order; None: no such order."""
        if not await self.pool.fetchval("SELECT EXISTS (SELECT FROM sales_orders WHERE sales_order_number = $1)",
                                        number):
            return None
        rows = await self.pool.fetch("SELECT note FROM despatches WHERE sales_order_number = $1 ORDER BY despatch_id",
                                     number)
        return [json.loads(r["note"]) for r in rows]


def add_despatch_routes(router: FastAPI, auth: list) -> None:
    """The routes, on the app itself (its route list is checked against the contract); `auth` is
    the app's bearer-key dependency."""

    async def despatches(request: Request) -> Despatches:
        return request.app.state.despatches

    @router.get("/v1/despatches", dependencies=auth)
    async def list_despatch_changes(after: str | None = None, limit: int = Query(100, ge=1, le=1000),
                                    db: Despatches = Depends(despatches)) -> dict:
        page, next_cursor, has_more = await db.changes(after, limit)
        return {"despatches": page, "next_cursor": next_cursor, "has_more": has_more}

    @router.get("/v1/sales-orders/{sales_order_number}/despatches", dependencies=auth)
    async def list_sales_order_despatches(sales_order_number: str, db: Despatches = Depends(despatches)) -> dict:
        if (notes := await db.for_sales_order(sales_order_number)) is None:
            raise ApiError("not_found", f"no sales order {sales_order_number}", 404)
        return {"despatches": notes}

    @router.get("/v1/despatches/{despatch_id}", dependencies=auth)
    async def get_despatch(despatch_id: str, db: Despatches = Depends(despatches)) -> dict:
        if (note := await db.get(despatch_id)) is None:
            raise ApiError("not_found", f"no despatch note {despatch_id}", 404)
        return note

    @router.post("/_sandbox/sales-orders/{sales_order_number}/despatch")
    async def despatch_sales_order(sales_order_number: str, body: DespatchRequest,
                                   db: Despatches = Depends(despatches)) -> dict:
        return await db.despatch(sales_order_number, body)

    @router.post("/_sandbox/despatches/{despatch_id}/parcels/{parcel_number}/tracking")
    async def add_parcel_tracking(despatch_id: str, parcel_number: int, body: TrackingUpdate,
                                  db: Despatches = Depends(despatches)) -> dict:
        return await db.add_tracking(despatch_id, parcel_number, body)
