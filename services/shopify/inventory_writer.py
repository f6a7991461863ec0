"""Writing inventory to Shopify (no Kafka, no database): SetInventoryLevel commands become
`inventorySetQuantities` mutations, SetProductStatus commands `productUpdate` (the Shopify
gateway, services/shopify/gateway.py, runs this for each window of commands).

For one level (inventory item, location) only the newest command (by issued_at, which the
StockItem makes strictly increasing) is sent; the older ones are superseded (counted, no outcome
of their own: the StockItem aggregate's pending command is always the newest, and it ignores the
rest). Across windows, restarts and rebalances too: before a command is sent, the gateway takes
it up in its decision store (gateway.inventory_decisions: the newest decision taken up per level,
kept in PostgreSQL), and a command older than the one taken up there is superseded. No write
moves a level back to an older decision. Then one `inventorySetQuantities` per <= 250 quantities:

- compare-and-set: each quantity carries `changeFromQuantity` from the command (the level last
  confirmed or observed). On CHANGE_FROM_QUANTITY_STALE nothing was applied (the mutation is
  atomic): the current levels of the stale quantities are read (InventoryLevels). A level that
  already equals the quantity is confirmed without writing it again; any other is NOT forced to
  the command's quantity: the level moved (a sale Prima has not seen, say), so the gateway
  answers InventoryLevelStale with what Shopify has, and the StockItem decides again from it,
  accounting for the orders Prima has not allocated yet. The rest of the batch is sent again.
- idempotent: `@idempotent(key:)` is a UUID derived from everything the request carries (each
  command id, item, location, quantity and changeFromQuantity, the name and reason): a retry of
  the same request (timeout, 5xx, THROTTLED) reuses the key, so Shopify applies it once; the
  request after a re-read differs, and so does its key.
- referenceDocumentUri: a batch of one command carries the command's own URI (the Prima stock
  record). Shopify takes one URI per call, so a batch of many commands carries one naming the
  batch, `shopify-prima://inventory-batch/<uuid of its command ids>` (unless every command names
  the same record); the gateway journals the batch (URI, adjustment group, and each command with
  its Prima reference): from the URI in Shopify's history to the Prima stock records in one lookup.
- other userErrors name a quantity by index: that command is rejected (InventoryLevelRejected
  with Shopify's code and message) and the rest of the batch is sent again without it.
- Shopify unavailable after the client's retries, throttled beyond its bound, or refusing the
  token: InventoryLevelFailed (the gateway parks the command).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from prometheus_client import Counter, Histogram

from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    InventoryLevelStale,
    ProductStatusRejected,
    ProductStatusSet,
    SetInventoryLevel,
    SetProductStatus,
    ShopifyOutcome,
)
from services.platform.settings import Settings
from services.shopify.admin import ShopifyAdmin, ShopifyError

log = logging.getLogger("shopify_prima.shopify_gateway")
LEVEL_READ_CHUNK = 100  # inventory level ids per InventoryLevels query (cost well under 1000)
LEVEL_READ_COST_PER_ID = 4  # level + item + location + quantities, Shopify's object costs
PARALLEL_BATCHES = 4  # mutations in flight at once (the client's pacing still governs the rate)
DECISIONS_IN_MEMORY = 100_000  # levels whose newest decision the in-memory store remembers
NAMESPACE = uuid5(NAMESPACE_URL, "https://github.com/shopify-prima/shopify-gateway")
BATCH_URI_PREFIX = "shopify-prima://inventory-batch/"
STALE_CODE = "CHANGE_FROM_QUANTITY_STALE"

BATCHES_SENT = Counter(
    "shopify_prima_shopify_gateway_batches", "inventorySetQuantities mutations sent, by result", ["result"]
)
BATCH_QUANTITIES = Histogram(
    "shopify_prima_shopify_gateway_batch_quantities", "Quantities per inventorySetQuantities",
    buckets=(1, 2, 5, 10, 25, 50, 100, 150, 200, 250),
)
GATEWAY_COMMANDS = Counter(
    "shopify_prima_shopify_gateway_commands", "Commands handled by the Shopify gateway, by outcome",
    ["command", "outcome"],
)
SUPERSEDED = Counter(
    "shopify_prima_shopify_gateway_superseded", "SetInventoryLevel commands replaced by a newer one for the same level"
)
STALE_RETRIES = Counter(
    "shopify_prima_shopify_gateway_stale_retries",
    "Quantities re-read after CHANGE_FROM_QUANTITY_STALE (answered stale, or confirmed when already right)",
)

def now_utc() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------ pure rules

Pair = tuple[str, str]  # (inventory item GID, location GID)


def pair_of(command: SetInventoryLevel) -> Pair:
    return (command.inventory_item_id, command.location_id)


def newest_per_pair(commands: Iterable[SetInventoryLevel]) -> tuple[list[SetInventoryLevel], list[SetInventoryLevel]]:
    """(kept, superseded): one command per level, the newest by issued_at (on a tie the later
    one in arrival order). Kept in the order their levels first appeared."""
    newest: dict[Pair, SetInventoryLevel] = {}
    superseded: list[SetInventoryLevel] = []
    for command in commands:
        pair = pair_of(command)
        current = newest.get(pair)
        if current is None:
            newest[pair] = command
        elif command.command_id == current.command_id:
            continue  # the same command delivered twice in one window
        elif command.issued_at >= current.issued_at:
            superseded.append(current)
            newest[pair] = command
        else:
            superseded.append(command)
    return list(newest.values()), superseded


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def gid_number(gid: str) -> str:
    """The id at the end of a GID: gid://shopify/Location/42 -> "42" (a query string dropped)."""
    return gid.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def level_id(inventory_item_id: str, location_id: str) -> str:
    """The InventoryLevel GID Shopify gives the level of an item at a location."""
    return f"gid://shopify/InventoryLevel/{gid_number(location_id)}?inventory_item_id={gid_number(inventory_item_id)}"


@dataclass
class Pending:
    """One quantity of a batch: the command, the changeFromQuantity to send, and how many times
    Shopify said it was stale."""

    command: SetInventoryLevel
    change_from: int | None
    stale_retries: int = 0

    @property
    def pair(self) -> Pair:
        return pair_of(self.command)


def idempotency_key(items: Sequence[Pending], name: str = "available", reason: str = "", reference: str = "") -> str:
    """A UUID derived from everything the request says: the same request (a retry after a
    timeout) gets the same key, any difference (a changeFromQuantity after a re-read, a command
    dropped after a rejection) a different one. Independent of the order of `items`."""
    canonical = json.dumps(
        {
            "name": name,
            "reason": reason,
            "reference": reference,
            "quantities": sorted(
                [str(p.command.command_id), p.command.inventory_item_id, p.command.location_id,
                 p.command.quantity, p.change_from]
                for p in items
            ),
        },
        sort_keys=True, separators=(",", ":"),
    )
    return str(uuid5(NAMESPACE, "inventorySetQuantities:" + canonical))


def batch_id(commands: Iterable[SetInventoryLevel]) -> UUID:
    """The identity of a batch: its command ids. It stays the same through stale re-reads and
    rejections, so every mutation of one batch carries the same referenceDocumentUri."""
    return uuid5(NAMESPACE, "inventory-batch:" + ",".join(sorted(str(c.command_id) for c in commands)))


def reference_document_uri(commands: Sequence[SetInventoryLevel]) -> str:
    """One command: its own Prima reference. Many naming the same record: that record. Else the
    batch's URI (journalled with every command's reference)."""
    references = {c.reference_document_uri for c in commands}
    if len(references) == 1:
        return next(iter(references))
    return f"{BATCH_URI_PREFIX}{batch_id(commands)}"


def set_quantities_input(items: Sequence[Pending], reason: str, reference: str) -> dict[str, Any]:
    return {
        "name": "available",
        "reason": reason,
        "referenceDocumentUri": reference,
        "quantities": [
            {
                "inventoryItemId": p.command.inventory_item_id,
                "locationId": p.command.location_id,
                "quantity": p.command.quantity,
                "changeFromQuantity": p.change_from,
            }
            for p in items
        ],
    }


def quantity_index(field_path: Sequence[Any] | None) -> int | None:
    """The index a userError's field names: ["input", "quantities", "3", ...] -> 3."""
    if not field_path:
        return None
    parts = [str(part) for part in field_path]
    for position, part in enumerate(parts[:-1]):
        if part == "quantities" and parts[position + 1].isdigit():
            return int(parts[position + 1])
    return None


def is_stale(error: dict[str, Any]) -> bool:
    if error.get("code") == STALE_CODE:
        return True
    field_path = [str(part) for part in error.get("field") or []]
    return error.get("code") is None and bool(field_path) and field_path[-1] == "changeFromQuantity"


@dataclass
class ErrorSplit:
    stale: dict[int, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[int, dict[str, Any]] = field(default_factory=dict)
    whole: list[dict[str, Any]] = field(default_factory=list)  # errors naming no quantity


def split_user_errors(errors: Sequence[dict[str, Any]], size: int) -> ErrorSplit:
    split = ErrorSplit()
    for error in errors:
        index = quantity_index(error.get("field"))
        if index is None or index >= size:
            split.whole.append(error)
        elif is_stale(error):
            split.stale.setdefault(index, error)
        else:
            split.rejected.setdefault(index, error)
    for index in split.rejected:
        split.stale.pop(index, None)  # a quantity refused for another reason is not retried
    return split


def available_of(node: dict[str, Any]) -> int | None:
    for quantity in node.get("quantities") or []:
        if quantity.get("name") == "available":
            return int(quantity["quantity"])
    return None


# ------------------------------------------------------------------------- decisions taken up


class DecisionStore(Protocol):
    """The newest decision taken up per level (inventory item, location)."""

    async def take_up(self, commands: Sequence[SetInventoryLevel]) -> set[UUID]:
        """Record each command as its level's newest decision, unless one newer (a later
        issued_at) was taken up already: those commands' ids are returned (superseded). One
        command per level (the caller keeps the newest of a window). A command taken up again
        (a redelivery) is not superseded by itself."""
        ...


class MemoryDecisions:
    """Decisions in this process's memory (the writer without a database: tests, tools)."""

    def __init__(self, size: int = DECISIONS_IN_MEMORY) -> None:
        self.size = size
        self.newest: OrderedDict[Pair, tuple[datetime, UUID, int]] = OrderedDict()

    async def take_up(self, commands: Sequence[SetInventoryLevel]) -> set[UUID]:
        superseded = set()
        for command in commands:
            pair = pair_of(command)
            known = self.newest.get(pair)
            if known is not None and command.issued_at < known[0] and command.command_id != known[1]:
                superseded.add(command.command_id)
                continue
            self.newest[pair] = (command.issued_at, command.command_id, command.quantity)
            self.newest.move_to_end(pair)
            while len(self.newest) > self.size:
                self.newest.popitem(last=False)
        return superseded


# ---------------------------------------------------------------------- the inventory writer


@dataclass
class BatchRecord:
    """A multi-command mutation Shopify applied: what its referenceDocumentUri stands for."""

    reference_document_uri: str
    idempotency_key: str
    adjustment_group_id: str | None
    commands: list[dict[str, Any]]
    confirmed_at: datetime


@dataclass
class WriteReport:
    outcomes: list[ShopifyOutcome] = field(default_factory=list)
    superseded: list[SetInventoryLevel] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)
    mutations: int = 0

    def failed(self) -> list[InventoryLevelFailed]:
        return [o for o in self.outcomes if isinstance(o, InventoryLevelFailed)]


class InventoryWriter:
    """SetInventoryLevel commands -> inventorySetQuantities, without Kafka or a database."""

    def __init__(self, admin: ShopifyAdmin, settings: Settings, *, decisions: DecisionStore | None = None,
                 parallel_batches: int = PARALLEL_BATCHES):
        self.admin = admin
        self.settings = settings
        # the newest decision taken up per level: a command older than that, arriving later (a
        # redelivery, after a restart or a rebalance too), would put an older level back, so it
        # is superseded. The gateway gives the durable store (gateway.inventory_decisions).
        self.decisions: DecisionStore = decisions if decisions is not None else MemoryDecisions()
        self._parallel = asyncio.Semaphore(parallel_batches)

    async def apply(self, commands: Sequence[SetInventoryLevel]) -> list[ShopifyOutcome]:
        return (await self.write(commands)).outcomes

    async def write(self, commands: Sequence[SetInventoryLevel]) -> WriteReport:
        report = WriteReport()
        kept, report.superseded = newest_per_pair(commands)
        older = await self.decisions.take_up(kept) if kept else set()
        fresh = [c for c in kept if c.command_id not in older]
        report.superseded += [c for c in kept if c.command_id in older]
        if report.superseded:
            SUPERSEDED.inc(len(report.superseded))
            GATEWAY_COMMANDS.labels("SetInventoryLevel", "superseded").inc(len(report.superseded))
        batches = chunks(fresh, self.settings.inventory_batch_size)
        results = await asyncio.gather(*(self._write_batch(batch) for batch in batches))
        for outcomes, records, mutations in results:
            report.outcomes.extend(outcomes)
            report.batches.extend(records)
            report.mutations += mutations
        for outcome in report.outcomes:
            kind = {"InventoryLevelConfirmed": "confirmed", "InventoryLevelRejected": "rejected",
                    "InventoryLevelFailed": "failed", "InventoryLevelStale": "stale"}[outcome.message_type]
            GATEWAY_COMMANDS.labels("SetInventoryLevel", kind).inc()
        return report

    async def _write_batch(self, commands: list[SetInventoryLevel]) -> tuple[list[ShopifyOutcome], list[BatchRecord], int]:
        async with self._parallel:
            return await self._write_batch_now(commands)

    async def _write_batch_now(self, commands: list[SetInventoryLevel]) -> tuple[list[ShopifyOutcome], list[BatchRecord], int]:
        reason = self.settings.inventory_reason
        reference = reference_document_uri(commands)
        pending: list[Pending] = sorted((Pending(c, c.change_from_quantity) for c in commands), key=lambda p: p.pair)
        outcomes: list[ShopifyOutcome] = []
        records: list[BatchRecord] = []
        mutations = 0
        attempts = 0  # HTTP requests spent on this batch's mutations

        def fail(items: Iterable[Pending], why: str) -> None:
            at = now_utc()
            for p in items:
                outcomes.append(InventoryLevelFailed(
                    command_id=p.command.command_id, sku=p.command.sku, location_id=p.command.location_id,
                    attempts=max(attempts, 1), reason=why, occurred_at=at))

        def reject(p: Pending, code: str, message: str) -> None:
            outcomes.append(InventoryLevelRejected(
                command_id=p.command.command_id, sku=p.command.sku, location_id=p.command.location_id,
                code=code, reason=message, occurred_at=now_utc()))

        def stale(p: Pending, available: int) -> None:
            outcomes.append(InventoryLevelStale(
                command_id=p.command.command_id, sku=p.command.sku, inventory_item_id=p.command.inventory_item_id,
                location_id=p.command.location_id, quantity=p.command.quantity,
                change_from_quantity=p.change_from, available=available, occurred_at=now_utc()))

        def confirm(p: Pending, previous: int | None, group: str | None) -> None:
            outcomes.append(InventoryLevelConfirmed(
                command_id=p.command.command_id, sku=p.command.sku, inventory_item_id=p.command.inventory_item_id,
                location_id=p.command.location_id, quantity=p.command.quantity, previous_quantity=previous,
                stale_retries=p.stale_retries, adjustment_group_id=group, occurred_at=now_utc()))

        while pending:
            key = idempotency_key(pending, "available", reason, reference)
            variables = {"input": set_quantities_input(pending, reason, reference), "idempotencyKey": key}
            BATCH_QUANTITIES.observe(len(pending))
            mutations += 1
            try:
                response = await self.admin.request("InventorySetQuantities", variables)
            except ShopifyError as exc:
                attempts += exc.attempts or 1
                BATCHES_SENT.labels("failed").inc()
                log.warning("inventorySetQuantities of %d quantities failed: %s", len(pending), exc)
                fail(pending, f"{type(exc).__name__}: {exc}")
                break
            attempts += response.attempts
            payload = response.data.get("inventorySetQuantities") or {}
            errors = payload.get("userErrors") or []
            if not errors:
                BATCHES_SENT.labels("applied").inc()
                group = (payload.get("inventoryAdjustmentGroup") or {}).get("id")
                for p in pending:
                    confirm(p, p.change_from, group)
                if len(commands) > 1:
                    records.append(BatchRecord(
                        reference_document_uri=reference, idempotency_key=key, adjustment_group_id=group,
                        commands=[{"command_id": str(p.command.command_id), "sku": p.command.sku,
                                   "inventory_item_id": p.command.inventory_item_id,
                                   "location_id": p.command.location_id, "quantity": p.command.quantity,
                                   "change_from_quantity": p.change_from,
                                   "reference_document_uri": p.command.reference_document_uri}
                                  for p in pending],
                        confirmed_at=now_utc()))
                break
            BATCHES_SENT.labels("user_errors").inc()
            split = split_user_errors(errors, len(pending))
            if split.whole:
                # an error about the request as a whole (reason, referenceDocumentUri, ...): no
                # quantity can be sent until it is fixed, and retrying will not fix it.
                message = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in split.whole)
                codes = [str(e.get("code") or "USER_ERROR") for e in split.whole]
                if "IDEMPOTENCY_KEY_PARAMETER_MISMATCH" in codes:
                    fail(pending, f"Shopify refused the idempotency key {key}: {message}")  # our bug: park
                else:
                    for p in pending:
                        reject(p, codes[0], message)
                break
            for index, error in sorted(split.rejected.items()):
                reject(pending[index], str(error.get("code") or "USER_ERROR"), str(error.get("message") or error))
            stale_items = [pending[i] for i in sorted(split.stale)]
            rest = [p for i, p in enumerate(pending) if i not in split.rejected and i not in split.stale]
            if not stale_items:
                pending = rest
                continue
            for p in stale_items:
                p.stale_retries += 1
            STALE_RETRIES.inc(len(stale_items))
            try:
                levels = await self.read_levels([p.pair for p in stale_items])
            except ShopifyError as exc:
                fail(stale_items + rest, f"re-reading stale levels failed: {type(exc).__name__}: {exc}")
                break
            for p in stale_items:
                current = levels.get(p.pair)
                if current is None:
                    reject(p, "INVENTORY_LEVEL_NOT_FOUND",
                           f"no inventory level for {p.command.inventory_item_id} at {p.command.location_id}")
                elif current == p.command.quantity:
                    confirm(p, current, None)  # already what the StockItem wants: nothing to write
                else:
                    stale(p, current)  # moved since the StockItem decided: it decides again
            pending = rest
        return outcomes, records, mutations

    async def read_levels(self, pairs: Sequence[Pair]) -> dict[Pair, int | None]:
        """Shopify's current "available" of these levels (None: no such level)."""
        found: dict[Pair, int | None] = dict.fromkeys(pairs)
        for chunk in chunks(list(pairs), LEVEL_READ_CHUNK):
            ids = [level_id(item, location) for item, location in chunk]
            data = await self.admin.execute("InventoryLevels", {"ids": ids},
                                            expected_cost=1 + LEVEL_READ_COST_PER_ID * len(ids))
            nodes = data.get("nodes") or []
            for position, node in enumerate(nodes):
                if not node:
                    continue
                item = (node.get("item") or {}).get("id")
                location = (node.get("location") or {}).get("id")
                pair = (item, location) if item and location else chunk[position] if position < len(chunk) else None
                if pair in found:
                    found[pair] = available_of(node)
        return found


# ------------------------------------------------------------------------- product status


async def set_product_status(admin: ShopifyAdmin, command: SetProductStatus) -> tuple[ShopifyOutcome, str | None, int]:
    """(outcome, park reason or None, attempts)."""
    try:
        response = await admin.request("ProductSetStatus", {"product": {"id": command.product_id, "status": command.status}})
    except ShopifyError as exc:
        GATEWAY_COMMANDS.labels("SetProductStatus", "failed").inc()
        reason = f"{type(exc).__name__}: {exc}"
        return (ProductStatusRejected(command_id=command.command_id, sku=command.sku, product_id=command.product_id,
                                      reason=f"gateway gave up (parked): {reason}", occurred_at=now_utc()),
                reason, exc.attempts or 1)
    payload = response.data.get("productUpdate") or {}
    errors = payload.get("userErrors") or []
    if errors or not payload.get("product"):
        GATEWAY_COMMANDS.labels("SetProductStatus", "rejected").inc()
        reason = "; ".join(str(e.get("message")) for e in errors) or "product not found"
        return (ProductStatusRejected(command_id=command.command_id, sku=command.sku, product_id=command.product_id,
                                      reason=reason, occurred_at=now_utc()), None, response.attempts)
    GATEWAY_COMMANDS.labels("SetProductStatus", "set").inc()
    return (ProductStatusSet(command_id=command.command_id, sku=command.sku, product_id=command.product_id,
                             status=str(payload["product"].get("status") or command.status), occurred_at=now_utc()),
            None, response.attempts)


def newest_status_per_product(commands: Sequence[SetProductStatus]) -> list[SetProductStatus]:
    newest: dict[str, SetProductStatus] = {}
    for command in commands:
        current = newest.get(command.product_id)
        if current is None or command.issued_at >= current.issued_at:
            newest[command.product_id] = command
    superseded = len(commands) - len(newest)
    if superseded:
        GATEWAY_COMMANDS.labels("SetProductStatus", "superseded").inc(superseded)
    return list(newest.values())


