"""A sales order's life in the Prima sandbox after it is created: the warehouse's statuses, amendments
and cancellations that stop at the cut-off, and credit memos; as contracts/prima/openapi.yaml
documents them, in the sandbox's PostgreSQL schema. The fault switches (faults.py) apply as to
every /v1 route (amend and cancel are POSTs under /v1/sales-orders, the default prefix; set
`path_prefix` to /v1/credit-memos for memos).

- `POST /v1/sales-orders/{number}/amendments` {sales_order, amendable_statuses, changes}: the
  sales order becomes the body (lines, shipping, totals, delivery address), its version goes up
  and its allocation follows the lines, only while its status is one of amendable_statuses
  (else 409 status_conflict, nothing changed). Idempotent by Idempotency-Key (the same key and
  body answer the first answer again, `Idempotent-Replayed: true`).
- `POST /v1/sales-orders/{number}/cancellation` {reason, cancellable_statuses}: the sales order is
  cancelled and its allocation released, while its status is one of cancellable_statuses (else
  409 status_conflict); an order already cancelled answers as it is.
- `POST /v1/credit-memos`: a credit memo against a sales order (422 unknown_sales_order,
  currency_mismatch, unknown_item, totals_mismatch; 409 duplicate_external_reference: one memo
  per external reference, the Shopify refund); idempotent by Idempotency-Key.
  `GET /v1/credit-memos?external_reference=` and `GET /v1/credit-memos/{number}`.
- `POST /_sandbox/sales-orders/{number}/status` {status}: the warehouse moves the order
  (released_to_warehouse, picking, despatched; back to open for a reopened pick). Despatch
  ships the lines: on hand and allocated both fall by their units.

A request that fails changes nothing and does not use its key.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from .models import Currency, Money, SalesOrder, SalesOrderCreate, SalesOrderStatus
from .store import (
    ALLOCATION_WAREHOUSE,
    ApiError,
    _check_items,
    _order,
    allocation_units,
    create_tables,
)

DDL = """
INSERT INTO counters VALUES ('credit_memo', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS credit_memos (
    credit_memo_number text PRIMARY KEY,
    external_reference text NOT NULL UNIQUE,
    sales_order_number text NOT NULL,
    idempotency_key    text NOT NULL,
    body               jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credit_memos_sales_order ON credit_memos (sales_order_number);
-- answers of amendments, cancellations and credit memos by Idempotency-Key
CREATE TABLE IF NOT EXISTS change_idempotency_keys (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    status_code  integer NOT NULL,
    response     jsonb NOT NULL,
    replays      integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
"""

# de-allocate (negative units) or allocate more (positive) on an amendment, a cancellation or a
# despatch, keeping the record's naming of the latest sales order allocated on it
ADJUST_ALLOCATION = """
WITH wanted AS (
    SELECT sku, sum(units)::bigint AS units, sum(shipped)::bigint AS shipped
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS w(sku, units, shipped) GROUP BY sku ORDER BY sku
)
INSERT INTO stock AS s (sku, warehouse, on_hand, allocated, change_id, changed_at)
SELECT sku, $4, 0, greatest(units, 0), nextval('stock_change_id'), now() FROM wanted ORDER BY sku
ON CONFLICT (sku, warehouse) DO UPDATE SET
    allocated = greatest(s.allocated + (SELECT units FROM wanted w WHERE w.sku = s.sku), 0),
    on_hand = greatest(s.on_hand - (SELECT shipped FROM wanted w WHERE w.sku = s.sku), 0),
    change_id = EXCLUDED.change_id, changed_at = EXCLUDED.changed_at
"""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amendment(_Body):
    sales_order: SalesOrderCreate
    amendable_statuses: list[SalesOrderStatus] = Field(min_length=1)
    changes: list[str] = []


class Cancellation(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    cancellable_statuses: list[SalesOrderStatus] = Field(min_length=1)


class StatusChange(_Body):
    status: Literal["open", "released_to_warehouse", "picking", "despatched"]


_SIGNED = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")


def _signed(value: object) -> object:
    if not isinstance(value, str) or not _SIGNED.match(value):
        raise ValueError("a signed amount is a decimal string such as '-5.00'")
    return value


SignedMoney = Annotated[Decimal, BeforeValidator(_signed)]  # an adjustment may lower a memo


class CreditMemoLine(_Body):
    line_number: int = Field(ge=1)
    kind: Literal["item", "account"] = "item"
    item_id: str | None = None
    sku: str | None = None
    account: str | None = None
    description: str
    quantity: int = Field(gt=0)
    amount: Money
    tax_amount: Money
    restock_type: Literal["no_restock", "cancel", "return", "legacy_restock"] | None = None
    returned: bool = False
    external_line_id: int | None = None

    @model_validator(mode="after")
    def _an_item_or_an_account(self) -> CreditMemoLine:
        if self.kind == "item" and (not self.item_id or not self.sku or self.account is not None):
            raise ValueError("an item line names item_id and sku, and no account")
        if self.kind == "account" and (not self.account or self.item_id is not None or self.sku is not None):
            raise ValueError("an account line names an account, and no item_id or sku")
        return self


class CreditMemoShipping(_Body):
    description: str
    amount: Money
    tax_amount: Money


class CreditMemoAdjustment(_Body):
    kind: str = Field(min_length=1)
    description: str
    amount: SignedMoney
    tax_amount: SignedMoney


class CreditMemoTotals(_Body):
    lines: Money
    shipping: Money
    adjustments: SignedMoney
    tax: SignedMoney
    total: Money


class CreditMemoCreate(_Body):
    sales_order_number: str = Field(min_length=1)
    external_reference: str = Field(min_length=1)
    currency: Currency
    taxes_included: bool
    memo_date: AwareDatetime
    reason: str | None = None
    lines: list[CreditMemoLine] = []
    shipping: CreditMemoShipping | None = None
    adjustments: list[CreditMemoAdjustment] = []
    totals: CreditMemoTotals

    @model_validator(mode="after")
    def _credits_something(self) -> CreditMemoCreate:
        if not self.lines and self.shipping is None and not self.adjustments:
            raise ValueError("a credit memo credits lines, shipping or adjustments: it has none")
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line_number must be unique within the memo")
        return self

    def totals_mismatches(self) -> list[str]:
        lines = sum((line.amount for line in self.lines), Decimal(0))
        shipping = self.shipping.amount if self.shipping else Decimal(0)
        adjustments = sum((a.amount for a in self.adjustments), Decimal(0))
        tax = (sum((line.tax_amount for line in self.lines), Decimal(0)) + (self.shipping.tax_amount if self.shipping
                                                                           else Decimal(0))
               + sum((a.tax_amount for a in self.adjustments), Decimal(0)))
        total = lines + shipping + adjustments + (0 if self.taxes_included else tax)
        expected = {"lines": lines, "shipping": shipping, "adjustments": adjustments, "tax": tax, "total": total}
        return [f"{name} is {getattr(self.totals, name)} but the memo adds up to {value}"
                for name, value in expected.items() if getattr(self.totals, name) != value]


class CreditMemo(CreditMemoCreate):
    credit_memo_number: str
    created_at: AwareDatetime


def _hash(body: BaseModel, *extra: str) -> str:
    canonical = json.dumps([body.model_dump(mode="json"), *extra], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _memo(row: asyncpg.Record) -> CreditMemo:
    return CreditMemo(**json.loads(row["body"]), credit_memo_number=row["credit_memo_number"],
                      created_at=row["created_at"])


class Lifecycle:
    def __init__(self, pool: asyncpg.Pool, warehouse: str = ALLOCATION_WAREHOUSE) -> None:
        self.pool = pool
        self.warehouse = warehouse

    async def create_tables(self) -> None:
        await create_tables(self.pool, DDL)

    async def reset(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("TRUNCATE credit_memos, change_idempotency_keys")
            await conn.execute("UPDATE counters SET value = 0 WHERE name = 'credit_memo'")

    async def count(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM credit_memos")

    # -- idempotency ------------------------------------------------------------------------------

    async def _claimed(self, conn: asyncpg.Connection, key: str, digest: str) -> tuple[int, Any] | None:
        """The earlier answer of this key (its replay), or None once the key is ours to use."""
        row = await conn.fetchrow("SELECT request_hash, status_code, response FROM change_idempotency_keys "
                                  "WHERE key = $1 FOR UPDATE", key)
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise ApiError("idempotency_key_reused", f"Idempotency-Key {key!r} was used for a different request")
        await conn.execute("UPDATE change_idempotency_keys SET replays = replays + 1 WHERE key = $1", key)
        return row["status_code"], json.loads(row["response"])

    async def _remember(self, conn: asyncpg.Connection, key: str, digest: str, status: int, response: Any) -> None:
        await conn.execute("INSERT INTO change_idempotency_keys (key, request_hash, status_code, response) "
                           "VALUES ($1, $2, $3, $4)", key, digest, status, json.dumps(response, default=str))

    async def _lock_key(self, conn: asyncpg.Connection, key: str) -> None:
        """Concurrent requests with one key wait for each other (the first one's answer wins)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_key:' || $1))", key)

    # -- the warehouse ----------------------------------------------------------------------------

    async def _sales_order(self, conn: asyncpg.Connection, number: str) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM sales_orders WHERE sales_order_number = $1 FOR UPDATE", number)
        if row is None:
            raise ApiError("not_found", f"no sales order {number}", 404)
        return row

    async def _adjust(self, conn: asyncpg.Connection, before: SalesOrderCreate | None, after: SalesOrderCreate | None,
                      shipped: SalesOrderCreate | None = None) -> None:
        """Allocation from `before`'s lines to `after`'s; `shipped` lines leave on-hand stock."""
        wanted: dict[str, list[int]] = {}
        for body, sign, column in ((before, -1, 0), (after, 1, 0), (shipped, 1, 1)):
            if body is None:
                continue
            skus, units = allocation_units(await conn.fetch(
                "SELECT item_id, item_type, components FROM items WHERE item_id = ANY($1)",
                [line.item_id for line in body.lines if line.kind == "item"]), body.lines)
            for sku, n in zip(skus, units, strict=True):
                wanted.setdefault(sku, [0, 0])[column] += sign * n
        changed = {sku: v for sku, v in wanted.items() if v != [0, 0]}
        if not changed:
            return
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_stock:' || current_schema()))")
        await conn.execute(ADJUST_ALLOCATION, list(changed), [v[0] for v in changed.values()],
                           [v[1] for v in changed.values()], self.warehouse)

    async def move(self, number: str, status: str) -> SalesOrder:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._sales_order(conn, number)
            if row["status"] in ("cancelled", "despatched") and row["status"] != status:
                raise ApiError("invalid_status", f"sales order {number} is {row['status']}")
            if row["status"] != status:
                body = SalesOrderCreate(**json.loads(row["body"]))
                if status == "despatched":  # the lines leave: allocation and on-hand stock fall together
                    await self._adjust(conn, body, None, shipped=body)
                row = await conn.fetchrow(
                    """UPDATE sales_orders SET status = $2, updated_at = now(),
                       released_at = CASE WHEN $2 = 'open' THEN NULL ELSE coalesce(released_at, now()) END
                       WHERE sales_order_number = $1 RETURNING *""", number, status)
            return _order(row)

    async def amend(self, key: str, number: str, amendment: Amendment) -> tuple[int, Any, bool]:
        digest = _hash(amendment, number)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_key(conn, key)
            if (replay := await self._claimed(conn, key, digest)) is not None:
                return (*replay, True)
            row = await self._sales_order(conn, number)
            if row["status"] not in amendment.amendable_statuses:
                raise ApiError("status_conflict", f"sales order {number} is {row['status']}: the amendment allows "
                                                  f"{', '.join(amendment.amendable_statuses)} only")
            new = amendment.sales_order
            if new.external_reference != row["external_reference"]:
                raise ApiError("validation_error", f"sales order {number} is for {row['external_reference']}, "
                                                   f"not {new.external_reference}", 422)
            await _check_items(conn, new)
            if mismatches := new.totals_mismatches():
                raise ApiError("totals_mismatch", "; ".join(mismatches), 422)
            await self._adjust(conn, SalesOrderCreate(**json.loads(row["body"])), new)
            row = await conn.fetchrow(
                """UPDATE sales_orders SET body = $2, version = version + 1, updated_at = now()
                   WHERE sales_order_number = $1 RETURNING *""", number, new.model_dump_json())
            answer = _order(row).model_dump(mode="json")
            await self._remember(conn, key, digest, 200, answer)
            return 200, answer, False

    async def cancel(self, key: str, number: str, cancellation: Cancellation) -> tuple[int, Any, bool]:
        digest = _hash(cancellation, number)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_key(conn, key)
            if (replay := await self._claimed(conn, key, digest)) is not None:
                return (*replay, True)
            row = await self._sales_order(conn, number)
            if row["status"] != "cancelled":
                if row["status"] not in cancellation.cancellable_statuses:
                    raise ApiError("status_conflict", f"sales order {number} is {row['status']}: the cancellation "
                                                      f"allows {', '.join(cancellation.cancellable_statuses)} only")
                await self._adjust(conn, SalesOrderCreate(**json.loads(row["body"])), None)
                row = await conn.fetchrow(
                    """UPDATE sales_orders SET status = 'cancelled', cancelled_at = now(), updated_at = now()
                       WHERE sales_order_number = $1 RETURNING *""", number)
            answer = _order(row).model_dump(mode="json")
            await self._remember(conn, key, digest, 200, answer)
            return 200, answer, False

    # -- credit memos -----------------------------------------------------------------------------

    async def create_memo(self, key: str, memo: CreditMemoCreate) -> tuple[int, Any, bool]:
        digest = _hash(memo)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_key(conn, key)
            if (replay := await self._claimed(conn, key, digest)) is not None:
                return (*replay, True)
            order = await conn.fetchrow("SELECT * FROM sales_orders WHERE sales_order_number = $1",
                                        memo.sales_order_number)
            if order is None:
                raise ApiError("unknown_sales_order", f"no sales order {memo.sales_order_number}", 422)
            if json.loads(order["body"])["currency"] != memo.currency:
                raise ApiError("currency_mismatch", f"sales order {memo.sales_order_number} is in "
                                                    f"{json.loads(order['body'])['currency']}, not {memo.currency}", 422)
            rows = await conn.fetch("SELECT item_id, sku, active FROM items WHERE item_id = ANY($1)",
                                    [line.item_id for line in memo.lines if line.kind == "item"])
            items = {r["item_id"]: r for r in rows}
            problems = [f"line {line.line_number}: item {line.item_id} is unknown or has another SKU"
                        for line in memo.lines if line.kind == "item"
                        and (line.item_id not in items or items[line.item_id]["sku"] != line.sku)]
            if problems:
                raise ApiError("unknown_item", "; ".join(problems), 422)
            if mismatches := memo.totals_mismatches():
                raise ApiError("totals_mismatch", "; ".join(mismatches), 422)
            if existing := await conn.fetchval("SELECT credit_memo_number FROM credit_memos "
                                               "WHERE external_reference = $1", memo.external_reference):
                raise ApiError("duplicate_external_reference", f"external_reference {memo.external_reference!r} "
                                                               f"already has credit memo {existing}")
            seq = await conn.fetchval("UPDATE counters SET value = value + 1 WHERE name = 'credit_memo' RETURNING value")
            row = await conn.fetchrow(
                """INSERT INTO credit_memos (credit_memo_number, external_reference, sales_order_number,
                   idempotency_key, body) VALUES ($1, $2, $3, $4, $5) RETURNING *""",
                f"CM-{seq:06d}", memo.external_reference, memo.sales_order_number, key, memo.model_dump_json())
            answer = _memo(row).model_dump(mode="json")
            await self._remember(conn, key, digest, 201, answer)
            return 201, answer, False

    async def find_memos(self, external_reference: str | None, sales_order_number: str | None) -> list[CreditMemo]:
        rows = await self.pool.fetch(
            """SELECT * FROM credit_memos WHERE ($1::text IS NULL OR external_reference = $1)
               AND ($2::text IS NULL OR sales_order_number = $2) ORDER BY credit_memo_number""",
            external_reference, sales_order_number)
        return [_memo(r) for r in rows]

    async def get_memo(self, number: str) -> CreditMemo | None:
        row = await self.pool.fetchrow("SELECT * FROM credit_memos WHERE credit_memo_number = $1", number)
        return _memo(row) if row else None


def _key(idempotency_key: str | None) -> str:
    if idempotency_key is None:
        raise ApiError("idempotency_key_missing", "the Idempotency-Key header is required", 400)
    if not 1 <= len(idempotency_key) <= 128:
        raise ApiError("idempotency_key_invalid", "Idempotency-Key must be 1 to 128 characters", 400)
    return idempotency_key


def _answer(status: int, body: Any, replayed: bool) -> JSONResponse:
    return JSONResponse(body, 200 if replayed else status, headers={"Idempotent-Replayed": "true"} if replayed else None)


def add_lifecycle_routes(router: FastAPI, auth: list[Any]) -> None:
    """The routes, on the app itself (so that app.routes lists each of them)."""

    async def lifecycle(request: Request) -> Lifecycle:
        return request.app.state.lifecycle

    @router.post("/v1/sales-orders/{sales_order_number}/amendments", dependencies=auth)
    async def amend_sales_order(sales_order_number: str, body: Amendment,
                                idempotency_key: str | None = Header(None),
                                db: Lifecycle = Depends(lifecycle)) -> JSONResponse:
        return _answer(*await db.amend(_key(idempotency_key), sales_order_number, body))

    @router.post("/v1/sales-orders/{sales_order_number}/cancellation", dependencies=auth)
    async def cancel_sales_order(sales_order_number: str, body: Cancellation,
                                 idempotency_key: str | None = Header(None),
                                 db: Lifecycle = Depends(lifecycle)) -> JSONResponse:
        return _answer(*await db.cancel(_key(idempotency_key), sales_order_number, body))

    @router.post("/v1/credit-memos", dependencies=auth)
    async def create_credit_memo(body: CreditMemoCreate, idempotency_key: str | None = Header(None),
                                 db: Lifecycle = Depends(lifecycle)) -> JSONResponse:
        status, answer, replayed = await db.create_memo(_key(idempotency_key), body)
        response = _answer(status, answer, replayed)
        if not replayed:
            response.headers["Location"] = f"/v1/credit-memos/{answer['credit_memo_number']}"
        return response

    @router.get("/v1/credit-memos", dependencies=auth)
    async def find_credit_memos(external_reference: str | None = Query(None, min_length=1),
                                sales_order_number: str | None = Query(None, min_length=1),
                                db: Lifecycle = Depends(lifecycle)) -> dict:
        if external_reference is None and sales_order_number is None:
            raise ApiError("validation_error", "give external_reference or sales_order_number", 422)
        return {"credit_memos": [m.model_dump(mode="json") for m in await db.find_memos(external_reference,
                                                                                           sales_order_number)]}

    @router.get("/v1/credit-memos/{credit_memo_number}", dependencies=auth)
    async def get_credit_memo(credit_memo_number: str, db: Lifecycle = Depends(lifecycle)) -> dict:
        if (memo := await db.get_memo(credit_memo_number)) is None:
            raise ApiError("not_found", f"no credit memo {credit_memo_number}", 404)
        return memo.model_dump(mode="json")

    @router.post("/_sandbox/sales-orders/{sales_order_number}/status")
    async def move_sales_order(sales_order_number: str, body: StatusChange,
                               db: Lifecycle = Depends(lifecycle)) -> dict:
        return (await db.move(sales_order_number, body.status)).model_dump(mode="json")
