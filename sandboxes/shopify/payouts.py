"""Shopify Payments in the sandbox's shop: payouts and their balance transactions, and Admin
GraphQL's `shopifyPaymentsAccount { payouts, balanceTransactions }` over them.

Served (Shopify's shapes; the cost and the throttle are admin.py's, as for every query):
- `shopifyPaymentsAccount`: id, activated, country, defaultCurrency, balance, onboardable,
  accountOpenerName, payoutStatementDescriptor, and the two connections below.
- `payouts(first/last, after/before, reverse, query)`: ordered by id. Search terms (AND):
  `id` and `issued_at` with `>=`, `>`, `<=`, `<` or `=` (a date alone is midnight UTC),
  `status` (case-insensitive); a field the search does not know is ignored, as on Shopify.
- `balanceTransactions(first/last, after/before, reverse, query, hideTransfers)`: ordered by id.
  Terms: `payments_transfer_id` (the payout's id: what the integration asks), `id`,
  `transaction_type`, `payout_status`.
- ShopifyPaymentsPayout: id, legacyResourceId, status, issuedAt, net, gross, transactionType,
  summary (every gross/fee pair). ShopifyPaymentsBalanceTransaction: id, type, test, amount, fee,
  net, sourceType, sourceId, sourceOrderTransactionId (BigInt: strings), transactionDate,
  adjustmentReason, associatedOrder {id, name}, associatedPayout {id, status}, adjustmentsOrders.

Seeded through `POST /_sandbox/payouts` with payouts in the REST shape Shopify publishes
(../shared/reference/shopify-samples/payout.json and payouts_transactions.json, as they are), a
transaction's `type` either a REST type or a ShopifyPaymentsTransactionType value (checked
against the schema's enum). The REST types map to the enum as below; `dispute` and `reserve`
by their sign (money taken out of the balance: a withdrawal; put back: a reversal). A seeded
payout's transactions are taken as given, even when they do not add up to the payout (Shopify's
own sample does not): the integration must notice, not the sandbox.

Registered by `import sandboxes.shopify.payouts` (admin.py); the controls by `control_router`
(app.py); the book is `ShopState.payouts` (state.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError

from contracts.shopify_admin import admin_schema
from sandboxes.shopify.resolvers import Ctx, connection
from sandboxes.shopify.resolvers import field as resolver

GID_PAYOUT = "gid://shopify/ShopifyPaymentsPayout/"
GID_TRANSACTION = "gid://shopify/ShopifyPaymentsBalanceTransaction/"
GID_ORDER = "gid://shopify/Order/"
ACCOUNT_ID = "gid://shopify/ShopifyPaymentsAccount/1"

REST_TYPES = {
    "charge": "CHARGE", "refund": "REFUND", "adjustment": "ADJUSTMENT", "payout": "TRANSFER",
    "payout_failure": "TRANSFER_FAILURE", "payout_cancellation": "TRANSFER_CANCEL",
    "credit": "ADJUSTMENT", "debit": "ADJUSTMENT",  # balance adjustments Shopify applied
}
SIGNED_REST_TYPES = {"dispute": ("DISPUTE_WITHDRAWAL", "DISPUTE_REVERSAL"),
                     "reserve": ("RESERVED_FUNDS_WITHDRAWAL", "RESERVED_FUNDS_REVERSAL")}
REST_SOURCE_TYPES = {
    "charge": "CHARGE", "refund": "REFUND", "payments::refund": "REFUND", "payments::dispute": "DISPUTE",
    "dispute": "DISPUTE", "adjustment": "ADJUSTMENT", "payments::balance::adjustmentreversal": "ADJUSTMENT_REVERSAL",
    "adjustment_reversal": "ADJUSTMENT_REVERSAL", "payout": "TRANSFER", "transfer": "TRANSFER",
    "system_adjustment": "SYSTEM_ADJUSTMENT",
}
PAYOUT_STATUSES = ("SCHEDULED", "IN_TRANSIT", "PAID", "FAILED", "CANCELED")
SUMMARY_FIELDS = {  # GraphQL field: REST summary key
    "chargesGross": "charges_gross_amount", "chargesFee": "charges_fee_amount",
    "refundsFeeGross": "refunds_gross_amount", "refundsFee": "refunds_fee_amount",
    "adjustmentsGross": "adjustments_gross_amount", "adjustmentsFee": "adjustments_fee_amount",
    "reservedFundsGross": "reserved_funds_gross_amount", "reservedFundsFee": "reserved_funds_fee_amount",
    "retriedPayoutsGross": "retried_payouts_gross_amount", "retriedPayoutsFee": "retried_payouts_fee_amount",
    "advanceGross": "advance_gross_amount", "advanceFees": "advance_fee_amount",
}


def transaction_types() -> frozenset[str]:
    return frozenset(admin_schema().get_type("ShopifyPaymentsTransactionType").values)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} is not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{what} is not a decimal amount: {value!r}")
    return amount


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is not a time")
    text = value.replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text if "T" in text or " " in text else f"{text}T00:00:00+00:00")
    except ValueError:
        raise ValueError(f"{what} is not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount_text(amount: Decimal) -> str:
    return format(amount, "f")


def _int(value: Any, what: str, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ValueError(f"{what} is not a positive whole number: {value!r}")
    return int(value)


@dataclass
class Payout:
    num: int
    status: str
    issued_at: datetime
    currency: str
    net: Decimal
    transaction_type: str = "DEPOSIT"
    summary: dict[str, Decimal] = field(default_factory=dict)  # GraphQL summary field -> amount

    @property
    def gid(self) -> str:
        return f"{GID_PAYOUT}{self.num}"


@dataclass
class Transaction:
    num: int
    payout: Payout
    type: str
    currency: str
    amount: Decimal
    fee: Decimal
    net: Decimal
    processed_at: datetime
    test: bool = False
    source_type: str | None = None
    source_id: int | None = None
    source_order_transaction_id: int | None = None
    order_num: int | None = None
    order_name: str | None = None
    adjustment_reason: str | None = None

    @property
    def gid(self) -> str:
        return f"{GID_TRANSACTION}{self.num}"


class PayoutBook:
    """The shop's payouts and balance transactions (in memory, like the rest of the shop)."""

    def __init__(self) -> None:
        self.payouts: dict[int, Payout] = {}
        self.transactions: dict[int, Transaction] = {}
        self.currency = "USD"

    def reset(self) -> None:
        self.payouts.clear()
        self.transactions.clear()

    def payout_order(self) -> list[Payout]:
        return [self.payouts[k] for k in sorted(self.payouts)]

    def transaction_order(self) -> list[Transaction]:
        return [self.transactions[k] for k in sorted(self.transactions)]

    def add(self, spec: dict[str, Any]) -> Payout:
        """Add (or replace) a payout and its transactions from a REST-shaped spec:
        {"payout": {...}, "transactions": [...]}. Raises ValueError naming what is wrong; then
        nothing is added."""
        if not isinstance(spec, dict) or not isinstance(spec.get("payout"), dict):
            raise ValueError('each payout is {"payout": {<REST payout>}, "transactions": [<REST transactions>]}')
        rest = spec["payout"]
        num = _int(rest.get("id"), "payout.id", optional=False)
        status = str(rest.get("status", "")).upper()
        if status not in PAYOUT_STATUSES:
            raise ValueError(f"payout {num}: status {rest.get('status')!r} is not one of "
                             f"{', '.join(s.lower() for s in PAYOUT_STATUSES)}")
        currency = str(rest.get("currency") or self.currency)
        summary = rest.get("summary") or {}
        if not isinstance(summary, dict):
            raise ValueError(f"payout {num}: summary must be an object")
        payout = Payout(
            num=num, status=status, issued_at=_time(rest.get("issued_at") or rest.get("date"), f"payout {num} date"),
            currency=currency, net=_decimal(rest.get("amount"), f"payout {num} amount"),
            transaction_type=str(rest.get("transaction_type", "deposit")).upper(),
            summary={gql: _decimal(summary.get(key, "0.00"), f"payout {num} summary.{key}")
                     for gql, key in SUMMARY_FIELDS.items()})
        listed = spec.get("transactions") or []
        if not isinstance(listed, list):
            raise ValueError(f"payout {num}: transactions must be a list")
        known = transaction_types()
        transactions = [self._transaction(payout, t, known, i) for i, t in enumerate(listed)]
        ids = [t.num for t in transactions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"payout {num}: a transaction id appears twice")
        taken = {t.num for t in self.transactions.values() if t.payout.num != num}
        if taken & set(ids):
            raise ValueError(f"payout {num}: transaction(s) {sorted(taken & set(ids))[:5]} belong to another payout")
        for old in [k for k, t in self.transactions.items() if t.payout.num == num]:
            del self.transactions[old]
        self.payouts[num] = payout
        for t in transactions:
            self.transactions[t.num] = t
        return payout

    def _transaction(self, payout: Payout, rest: Any, known: frozenset[str], index: int) -> Transaction:
        what = f"payout {payout.num} transaction {index}"
        if not isinstance(rest, dict):
            raise ValueError(f"{what} must be an object")
        amount = _decimal(rest.get("amount"), f"{what} amount")
        fee = _decimal(rest.get("fee", "0.00"), f"{what} fee")
        net = _decimal(rest.get("net", amount - fee), f"{what} net")  # as given: it may not add up
        given = str(rest.get("type", ""))
        if given in known:
            kind = given
        elif given.lower() in REST_TYPES:
            kind = REST_TYPES[given.lower()]
        elif given.lower() in SIGNED_REST_TYPES:
            withdrawal, reversal = SIGNED_REST_TYPES[given.lower()]
            kind = withdrawal if amount < 0 else reversal
        else:
            raise ValueError(f"{what}: type {given!r} is neither a REST balance transaction type "
                             f"({', '.join(sorted([*REST_TYPES, *SIGNED_REST_TYPES]))}) nor a ShopifyPaymentsTransactionType")
        source = rest.get("source_type")
        source_type = None if source is None else REST_SOURCE_TYPES.get(str(source).lower(), str(source).upper())
        order = _int(rest.get("source_order_id"), f"{what} source_order_id")
        return Transaction(
            num=_int(rest.get("id"), f"{what} id", optional=False), payout=payout, type=kind,
            currency=str(rest.get("currency") or payout.currency), amount=amount, fee=fee, net=net,
            processed_at=_time(rest.get("processed_at") or _iso(payout.issued_at), f"{what} processed_at"),
            test=bool(rest.get("test", False)), source_type=source_type,
            source_id=_int(rest.get("source_id"), f"{what} source_id"),
            source_order_transaction_id=_int(rest.get("source_order_transaction_id"),
                                             f"{what} source_order_transaction_id"),
            order_num=order, order_name=rest.get("order_name") or (f"#{order}" if order is not None else None),
            adjustment_reason=rest.get("adjustment_reason"))


# ---------------------------------------------------------------------- search

_TERM = re.compile(r"^(-?)([a-z_]+):(>=|<=|>|<|=)?\"?([^\"]*)\"?$")


def _terms(query: str | None) -> list[tuple[bool, str, str, str]]:
    """(negated, field, comparator, value) of each whitespace-separated term (AND)."""
    found = []
    for token in (query or "").split():
        if token.upper() == "AND":
            continue
        match = _TERM.match(token)
        if match is None:
            raise GraphQLError(f"Invalid search term {token!r} for the sandbox's payout search",
                               extensions={"code": "BAD_REQUEST"})
        negated, name, op, value = match.groups()
        found.append((negated == "-", name, op or "=", value))
    return found


def _compare(have: Any, op: str, want: Any) -> bool:
    return {"=": have == want, ">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want}[op]


def _number(value: str) -> int:
    tail = value.rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise GraphQLError(f"Invalid id {value!r} in the search", extensions={"code": "BAD_REQUEST"})
    return int(tail)


def _search(items: list[Any], query: str | None, fields: dict[str, Any]) -> list[Any]:
    terms = _terms(query)
    if not terms:
        return items
    checks = []
    for negated, name, op, value in terms:
        getter = fields.get(name)
        if getter is None:
            continue  # Shopify ignores a field its search does not know
        kind, read = getter
        if kind == "id":
            want: Any = _number(value)
        elif kind == "time":
            try:
                want = _time(value, name)
            except ValueError as exc:
                raise GraphQLError(str(exc), extensions={"code": "BAD_REQUEST"}) from None
        else:
            want, op = value.lower(), "="
        checks.append((negated, read, op, want, kind))

    def keep(item: Any) -> bool:
        for negated, read, op, want, kind in checks:
            have = read(item)
            hit = have is not None and _compare(have.lower() if kind == "text" else have, op, want)
            if hit == negated:
                return False
        return True

    return [item for item in items if keep(item)]


PAYOUT_SEARCH = {
    "id": ("id", lambda p: p.num),
    "issued_at": ("time", lambda p: p.issued_at),
    "status": ("text", lambda p: p.status),
}
TRANSACTION_SEARCH = {
    "payments_transfer_id": ("id", lambda t: t.payout.num),
    "id": ("id", lambda t: t.num),
    "transaction_type": ("text", lambda t: t.type),
    "payout_status": ("text", lambda t: t.payout.status),
    "processed_at": ("time", lambda t: t.processed_at),
}


# ---------------------------------------------------------------------- resolvers


class Account:
    typename = "ShopifyPaymentsAccount"


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": _amount_text(amount), "currencyCode": currency}


def _book(ctx: Ctx) -> PayoutBook:
    return ctx.state.payouts


resolver("QueryRoot", "shopifyPaymentsAccount")(lambda _o, _a, _c: Account())
resolver("ShopifyPaymentsAccount", "id")(lambda _o, _a, _c: ACCOUNT_ID)
resolver("ShopifyPaymentsAccount", "activated")(lambda _o, _a, _c: True)
resolver("ShopifyPaymentsAccount", "onboardable")(lambda _o, _a, _c: False)
resolver("ShopifyPaymentsAccount", "country")(lambda _o, _a, _c: "US")
resolver("ShopifyPaymentsAccount", "accountOpenerName")(lambda _o, _a, _c: "Sandbox Shop")
resolver("ShopifyPaymentsAccount", "payoutStatementDescriptor")(lambda _o, _a, _c: "SANDBOX SHOP")
resolver("ShopifyPaymentsAccount", "defaultCurrency")(lambda _o, _a, ctx: _book(ctx).currency)
resolver("ShopifyPaymentsAccount", "balance")(lambda _o, _a, ctx: [_money(Decimal("0.00"), _book(ctx).currency)])


@connection("ShopifyPaymentsAccount", "payouts")
def _payouts(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[Payout]:
    return _search(_book(ctx).payout_order(), args.get("query"), PAYOUT_SEARCH)


@connection("ShopifyPaymentsAccount", "balanceTransactions")
def _transactions(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[Transaction]:
    found = _search(_book(ctx).transaction_order(), args.get("query"), TRANSACTION_SEARCH)
    if args.get("hideTransfers"):
        found = [t for t in found if t.type != "TRANSFER"]
    return found


resolver("ShopifyPaymentsPayout", "id")(lambda o, _a, _c: o.gid)
resolver("ShopifyPaymentsPayout", "legacyResourceId")(lambda o, _a, _c: str(o.num))
resolver("ShopifyPaymentsPayout", "status")(lambda o, _a, _c: o.status)
resolver("ShopifyPaymentsPayout", "issuedAt")(lambda o, _a, _c: _iso(o.issued_at))
resolver("ShopifyPaymentsPayout", "transactionType")(lambda o, _a, _c: o.transaction_type)
resolver("ShopifyPaymentsPayout", "net")(lambda o, _a, _c: _money(o.net, o.currency))
resolver("ShopifyPaymentsPayout", "gross")(
    lambda o, _a, _c: _money(sum((v for k, v in o.summary.items() if k.endswith("Gross")), Decimal("0.00")),
                             o.currency))
resolver("ShopifyPaymentsPayout", "summary")(
    lambda o, _a, _c: {name: _money(amount, o.currency) for name, amount in o.summary.items()})
resolver("ShopifyPaymentsPayout", "bankAccount")(lambda _o, _a, _c: None)

resolver("ShopifyPaymentsBalanceTransaction", "id")(lambda o, _a, _c: o.gid)
resolver("ShopifyPaymentsBalanceTransaction", "type")(lambda o, _a, _c: o.type)
resolver("ShopifyPaymentsBalanceTransaction", "test")(lambda o, _a, _c: o.test)
resolver("ShopifyPaymentsBalanceTransaction", "amount")(lambda o, _a, _c: _money(o.amount, o.currency))
resolver("ShopifyPaymentsBalanceTransaction", "fee")(lambda o, _a, _c: _money(o.fee, o.currency))
resolver("ShopifyPaymentsBalanceTransaction", "net")(lambda o, _a, _c: _money(o.net, o.currency))
resolver("ShopifyPaymentsBalanceTransaction", "sourceType")(lambda o, _a, _c: o.source_type)
resolver("ShopifyPaymentsBalanceTransaction", "sourceId")(
    lambda o, _a, _c: None if o.source_id is None else str(o.source_id))
resolver("ShopifyPaymentsBalanceTransaction", "sourceOrderTransactionId")(
    lambda o, _a, _c: None if o.source_order_transaction_id is None else str(o.source_order_transaction_id))
resolver("ShopifyPaymentsBalanceTransaction", "transactionDate")(lambda o, _a, _c: _iso(o.processed_at))
resolver("ShopifyPaymentsBalanceTransaction", "adjustmentReason")(lambda o, _a, _c: o.adjustment_reason)
resolver("ShopifyPaymentsBalanceTransaction", "adjustmentsOrders")(lambda _o, _a, _c: [])
resolver("ShopifyPaymentsBalanceTransaction", "associatedOrder")(
    lambda o, _a, _c: None if o.order_num is None else {"id": f"{GID_ORDER}{o.order_num}", "name": o.order_name})
resolver("ShopifyPaymentsBalanceTransaction", "associatedPayout")(
    lambda o, _a, _c: {"id": o.payout.gid, "status": o.payout.status})


# ---------------------------------------------------------------------- controls


def _summary(payout: Payout, book: PayoutBook) -> dict[str, Any]:
    transactions = [t for t in book.transactions.values() if t.payout is payout]
    return {"id": payout.num, "gid": payout.gid, "status": payout.status, "issued_at": _iso(payout.issued_at),
            "currency": payout.currency, "net": _amount_text(payout.net), "transactions": len(transactions)}


def control_router(state: Any) -> APIRouter:
    """/_sandbox/payouts (no auth, like every control)."""
    router = APIRouter()

    async def body_of(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    @router.post("/_sandbox/payouts")
    async def add_payouts(request: Request) -> JSONResponse:
        """Add payouts with their balance transactions (REST shape, as Shopify's samples): a
        payout given again is replaced. Nothing is added when one of them is wrong (422 naming it)."""
        body = await body_of(request)
        specs = body.get("payouts") if isinstance(body, dict) else None
        if not isinstance(specs, list) or not specs:
            return JSONResponse({"detail": 'body: {"payouts": [{"payout": {<REST payout>}, '
                                           '"transactions": [<REST balance transactions>]}, ...]}'}, status_code=422)
        trial = PayoutBook()
        trial.payouts, trial.transactions = dict(state.payouts.payouts), dict(state.payouts.transactions)
        try:
            added = [trial.add(spec) for spec in specs]
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        state.payouts.payouts, state.payouts.transactions = trial.payouts, trial.transactions
        return JSONResponse({"payouts": [_summary(p, state.payouts) for p in added]})

    @router.get("/_sandbox/payouts")
    async def list_payouts() -> JSONResponse:
        return JSONResponse([_summary(p, state.payouts) for p in state.payouts.payout_order()])

    @router.post("/_sandbox/payouts/{payout_id}/status")
    async def set_status(payout_id: int, request: Request) -> JSONResponse:
        """Move a payout on (scheduled -> in_transit -> paid), or fail or cancel it."""
        body = await body_of(request)
        status = str(body.get("status", "")).upper() if isinstance(body, dict) else ""
        if status not in PAYOUT_STATUSES:
            return JSONResponse({"detail": f'body: {{"status": one of {", ".join(s.lower() for s in PAYOUT_STATUSES)}}}'},
                                status_code=422)
        payout = state.payouts.payouts.get(payout_id)
        if payout is None:
            return JSONResponse({"detail": f"no payout {payout_id}"}, status_code=404)
        payout.status = status
        return JSONResponse(_summary(payout, state.payouts))

    @router.delete("/_sandbox/payouts")
    async def clear_payouts() -> JSONResponse:
        state.payouts.reset()
        return JSONResponse({"payouts": 0})

    return router
