"""The Shopify gateway: commands from Kafka to Shopify's Admin GraphQL, outcomes back to Kafka.

SetInventoryLevel commands are debounced and batched: the loop collects commands until no new
one has come for `inventory_debounce_seconds` (at most `inventory_debounce_max_seconds` after the
first), or until `inventory_batch_size` distinct inventory levels are pending. A window holding
only a full comparison's repairs waits longer (`inventory_full_sync_debounce_seconds`, at most
`inventory_full_sync_debounce_max_seconds`): the run's repairs go out in full batches; for one level (inventory item, location) only the newest
command (by issued_at) is sent, the older ones are superseded (counted, no outcome of their own:
the StockItem aggregate's pending command is always the newest, and it ignores the rest). Then
one `inventorySetQuantities` per <= 250 quantities:

- compare-and-set: each quantity carries `changeFromQuantity` from the command (the level last
  confirmed or observed). On CHANGE_FROM_QUANTITY_STALE nothing was applied (the mutation is
  atomic): the current levels of the stale quantities are read (InventoryLevels), their
  changeFromQuantity set to what Shopify has now, the quantity kept (Prima is the truth), and the
  mutation sent again; at most STALE_ROUNDS times. A level that already equals the quantity is
  confirmed without writing it again.
- idempotent: `@idempotent(key:)` is a UUID derived from everything the request carries (each
  command id, item, location, quantity and changeFromQuantity, the name and reason): a retry of
  the same request (timeout, 5xx, THROTTLED) reuses the key, so Shopify applies it once; the
  request after a re-read differs, and so does its key.
- referenceDocumentUri: a batch of one command carries the command's own URI (the Prima stock
  record). Shopify takes one URI per call, so a batch of many commands carries one naming the
  batch, `shopify-prima://inventory-batch/<uuid of its command ids>` (unless every command names
  the same record), and the batch is journalled in `gateway.shopify_inventory_batches` (URI,
  adjustment group, and each command with its Prima reference): from the URI in Shopify's
  history to the Prima stock records in one lookup.
- other userErrors name a quantity by index: that command is rejected (InventoryLevelRejected
  with Shopify's code and message) and the rest of the batch is sent again without it.
- Shopify unavailable after the client's retries, throttled beyond its bound, refusing the
  token, or still stale after STALE_ROUNDS: InventoryLevelFailed, and the command is parked in
  `gateway.parked_shopify_commands`.

SetProductStatus commands become one productUpdate each (ProductStatusSet / ProductStatusRejected;
a failure after retries is parked and reported as ProductStatusRejected, there being no failed
outcome for it in the contract).

Offsets are committed only after the outcome of every command consumed (superseded ones are
resolved by the newer command's) has been acknowledged by Kafka: nothing lost, at least once;
a redelivered command finds its level already set (compare-and-set) and is confirmed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from contracts.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    ProductStatusRejected,
    ProductStatusSet,
    SetInventoryLevel,
    SetProductStatus,
    ShopifyCommand,
    ShopifyOutcome,
    sku_key,
)
from contracts.topics import SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES
from services.config import Settings
from services.kafka import encode, headers_for
from services.metrics import COMMANDS_PARKED, UNDECODABLE
from services.runtime import start
from services.shopify_admin import ShopifyAdmin, ShopifyError

log = logging.getLogger("shopify_prima.shopify_gateway")
GROUP = "shopify-gateway"
STALE_ROUNDS = 3  # re-reads after CHANGE_FROM_QUANTITY_STALE before a command is parked
LEVEL_READ_CHUNK = 100  # inventory level ids per InventoryLevels query (cost well under 1000)
LEVEL_READ_COST_PER_ID = 4  # level + item + location + quantities, Shopify's object costs
PARALLEL_BATCHES = 4  # mutations in flight at once (the client's pacing still governs the rate)
APPLIED_MEMORY = 100_000  # levels whose newest applied issued_at is remembered
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
    "Quantities re-read and re-sent after CHANGE_FROM_QUANTITY_STALE",
)

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.parked_shopify_commands (
    command_id uuid PRIMARY KEY, sku text NOT NULL, message_type text NOT NULL, command jsonb NOT NULL,
    reason text NOT NULL, attempts integer NOT NULL, parked_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS parked_shopify_commands_sku ON gateway.parked_shopify_commands (sku);
CREATE TABLE IF NOT EXISTS gateway.shopify_inventory_batches (
    reference_document_uri text PRIMARY KEY, idempotency_key text NOT NULL,
    adjustment_group_id text, commands jsonb NOT NULL, confirmed_at timestamptz NOT NULL
);
"""

_COMMAND = TypeAdapter(ShopifyCommand)
Decoded = tuple[ConsumerRecord, "ShopifyCommand | None"]  # a consumed record and its command


async def create_tables(conn: asyncpg.Connection) -> None:
    """The gateway's tables (schema `gateway`): parked commands and the batch journal."""
    await conn.execute(SCHEMA_SQL)


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

    def __init__(self, admin: ShopifyAdmin, settings: Settings, *, stale_rounds: int = STALE_ROUNDS,
                 parallel_batches: int = PARALLEL_BATCHES):
        self.admin = admin
        self.settings = settings
        self.stale_rounds = stale_rounds
        self._parallel = asyncio.Semaphore(parallel_batches)
        # newest issued_at applied per level: a command older than that, arriving later (say a
        # redelivery), would put an older Prima level back, so it is superseded too.
        self._applied: OrderedDict[Pair, datetime] = OrderedDict()

    async def apply(self, commands: Sequence[SetInventoryLevel]) -> list[ShopifyOutcome]:
        return (await self.write(commands)).outcomes

    async def write(self, commands: Sequence[SetInventoryLevel]) -> WriteReport:
        report = WriteReport()
        kept, report.superseded = newest_per_pair(commands)
        fresh = []
        for command in kept:
            applied = self._applied.get(pair_of(command))
            if applied is not None and command.issued_at < applied:
                report.superseded.append(command)
            else:
                fresh.append(command)
        if report.superseded:
            SUPERSEDED.inc(len(report.superseded))
            GATEWAY_COMMANDS.labels("SetInventoryLevel", "superseded").inc(len(report.superseded))
        batches = chunks(fresh, self.settings.inventory_batch_size)
        results = await asyncio.gather(*(self._write_batch(batch) for batch in batches))
        for outcomes, records, mutations in results:
            report.outcomes.extend(outcomes)
            report.batches.extend(records)
            report.mutations += mutations
        by_id = {c.command_id: c for c in fresh}
        for outcome in report.outcomes:
            kind = {"InventoryLevelConfirmed": "confirmed", "InventoryLevelRejected": "rejected",
                    "InventoryLevelFailed": "failed"}[outcome.message_type]
            GATEWAY_COMMANDS.labels("SetInventoryLevel", kind).inc()
            if isinstance(outcome, InventoryLevelConfirmed):
                self._remember(pair_of(by_id[outcome.command_id]), by_id[outcome.command_id].issued_at)
        return report

    def _remember(self, pair: Pair, issued_at: datetime) -> None:
        previous = self._applied.get(pair)
        if previous is None or issued_at > previous:
            self._applied[pair] = issued_at
        self._applied.move_to_end(pair)
        while len(self._applied) > APPLIED_MEMORY:
            self._applied.popitem(last=False)

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
        stale_rounds = 0

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
            stale = [pending[i] for i in sorted(split.stale)]
            rest = [p for i, p in enumerate(pending) if i not in split.rejected and i not in split.stale]
            if not stale:
                pending = rest
                continue
            stale_rounds += 1
            for p in stale:
                p.stale_retries += 1
            STALE_RETRIES.inc(len(stale))
            if stale_rounds > self.stale_rounds:
                fail(stale, f"changeFromQuantity still stale after {self.stale_rounds} re-reads of the level")
                pending = rest
                continue
            try:
                levels = await self.read_levels([p.pair for p in stale])
            except ShopifyError as exc:
                fail(stale + rest, f"re-reading stale levels failed: {type(exc).__name__}: {exc}")
                break
            retry = []
            for p in stale:
                current = levels.get(p.pair)
                if current is None:
                    reject(p, "INVENTORY_LEVEL_NOT_FOUND",
                           f"no inventory level for {p.command.inventory_item_id} at {p.command.location_id}")
                elif current == p.command.quantity:
                    confirm(p, current, None)  # already what Prima says: nothing to write
                else:
                    p.change_from = current
                    retry.append(p)
            pending = sorted(rest + retry, key=lambda p: p.pair)
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


# ---------------------------------------------------------------------------- the gateway


class ShopifyGateway:
    """Commands -> outcomes (with parking and the batch journal), and the Kafka loop around it."""

    def __init__(self, settings: Settings, admin: ShopifyAdmin, pool: asyncpg.Pool, *, group_id: str = GROUP,
                 auto_offset_reset: str = "earliest", commands_topic: str = SHOPIFY_COMMANDS.name,
                 outcomes_topic: str = SHOPIFY_OUTCOMES.name):
        self.settings = settings
        self.admin = admin
        self.pool = pool
        self.writer = InventoryWriter(admin, settings)
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.commands_topic = commands_topic
        self.outcomes_topic = outcomes_topic
        self.ready = asyncio.Event()  # set once partitions are assigned and positioned

    # -- commands to outcomes (no Kafka)

    async def handle(self, commands: Sequence[ShopifyCommand]) -> list[ShopifyOutcome]:
        inventory = [c for c in commands if isinstance(c, SetInventoryLevel)]
        statuses = [c for c in commands if isinstance(c, SetProductStatus)]
        outcomes: list[ShopifyOutcome] = []
        parked: list[tuple[ShopifyCommand, str, int]] = []
        if inventory:
            report = await self.writer.write(inventory)
            outcomes.extend(report.outcomes)
            by_id = {c.command_id: c for c in inventory}
            parked.extend((by_id[o.command_id], o.reason, o.attempts) for o in report.failed())
            await self._journal(report.batches)
        for command in _newest_status_per_product(statuses):
            outcome, park_reason, attempts = await set_product_status(self.admin, command)
            outcomes.append(outcome)
            if park_reason is not None:
                parked.append((command, park_reason, attempts))
        await self._park(parked)
        return outcomes

    async def _park(self, parked: Sequence[tuple[ShopifyCommand, str, int]]) -> None:
        if not parked:
            return
        at = now_utc()
        await self.pool.executemany(
            """INSERT INTO gateway.parked_shopify_commands VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
               ON CONFLICT (command_id) DO UPDATE SET reason = EXCLUDED.reason,
               attempts = gateway.parked_shopify_commands.attempts + EXCLUDED.attempts, parked_at = EXCLUDED.parked_at""",
            [(c.command_id, c.sku, c.message_type, c.model_dump_json(), reason, attempts, at)
             for c, reason, attempts in parked],
        )
        for command, reason, _ in parked:
            COMMANDS_PARKED.labels(command=command.message_type).inc()
            log.warning("parked %s %s (%s): %s", command.message_type, command.command_id, command.sku, reason)

    async def _journal(self, batches: Sequence[BatchRecord]) -> None:
        if not batches:
            return
        await self.pool.executemany(
            """INSERT INTO gateway.shopify_inventory_batches VALUES ($1, $2, $3, $4::jsonb, $5)
               ON CONFLICT (reference_document_uri) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key,
               adjustment_group_id = EXCLUDED.adjustment_group_id, commands = EXCLUDED.commands,
               confirmed_at = EXCLUDED.confirmed_at""",
            [(b.reference_document_uri, b.idempotency_key, b.adjustment_group_id, json.dumps(b.commands),
              b.confirmed_at) for b in batches],
        )

    # -- the Kafka loop

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.commands_topic, bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group_id,
            client_id="shopify-prima-shopify-gateway", enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset, max_poll_interval_ms=900_000,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id="shopify-prima-shopify-gateway",
            enable_idempotence=True, acks="all",
        )
        await producer.start()
        await consumer.start()
        try:
            while not stop.is_set():
                await self._mark_ready(consumer)
                window = await self._collect(consumer, stop)
                if not window:
                    continue
                records = [record for record, _ in window]
                try:
                    await self._process([command for _, command in window if command is not None], producer)
                except Exception:  # noqa: BLE001 - e.g. the database or Kafka is down: redeliver
                    log.exception("processing %d commands failed; they will be consumed again", len(records))
                    self._rewind(consumer, records)
                    await _sleep_unless(stop, 1.0)
                    continue
                await self._commit(consumer, records)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _mark_ready(self, consumer: AIOKafkaConsumer) -> None:
        if self.ready.is_set():
            return
        assignment = consumer.assignment()
        if assignment:
            for tp in assignment:
                await consumer.position(tp)  # resolves auto_offset_reset now
            self.ready.set()

    async def _collect(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> list[Decoded]:
        """Records of one debounce window. It opens at the first command and closes when
        inventory_batch_size distinct levels are pending, or when no command has come for
        inventory_debounce_seconds (changes to a level in quick succession collapse into the
        newest), or at the latest inventory_debounce_max_seconds after it opened. A burst
        (a full comparison) therefore goes out in full batches: N levels, ceil(N/250) calls."""
        size = self.settings.inventory_batch_size
        first = await consumer.getmany(timeout_ms=500, max_records=size)
        records = _decode_all(first)
        if not records:
            return []
        loop = asyncio.get_running_loop()
        opened = loop.time()
        last_arrival = opened
        pairs = _pairs_of(records)
        urgent = _any_urgent(records)
        while True:
            quiet, cap = self._window(urgent)
            remaining = min(last_arrival + quiet, opened + cap) - loop.time()
            if len(pairs) >= size or remaining <= 0 or stop.is_set():
                log.debug("window of %d commands (%d levels, urgent %s) closed after %.2fs: %s", len(records),
                          len(pairs), urgent, loop.time() - opened, "full" if len(pairs) >= size else "quiet or cap")
                return records
            more = await consumer.getmany(timeout_ms=max(1, int(remaining * 1000)),
                                          max_records=max(1, size - len(pairs)))
            fetched = _decode_all(more)
            if fetched:
                last_arrival = loop.time()
                urgent = urgent or _any_urgent(fetched)
            records.extend(fetched)
            pairs |= _pairs_of(fetched)

    def _window(self, urgent: bool) -> tuple[float, float]:
        """(quiet time, longest wait) of a debounce window: a Prima change or an operator's
        release goes after the short debounce; a window of only full-comparison repairs waits
        for the whole run's repairs, so they go out in full batches."""
        s = self.settings
        if urgent:
            return s.inventory_debounce_seconds, max(s.inventory_debounce_seconds, s.inventory_debounce_max_seconds)
        return (s.inventory_full_sync_debounce_seconds,
                max(s.inventory_full_sync_debounce_seconds, s.inventory_full_sync_debounce_max_seconds))

    async def _process(self, commands: Sequence[ShopifyCommand], producer: AIOKafkaProducer) -> None:
        if not commands:
            return
        outcomes = await self.handle(commands)
        sends = []
        for outcome in outcomes:
            headers = [(k, v.encode()) for k, v in headers_for(outcome, gateway=self.group_id).items()]
            sends.append(await producer.send(self.outcomes_topic, encode(outcome), key=sku_key(outcome.sku),
                                             headers=headers))
        await asyncio.gather(*sends)  # every outcome acknowledged (acks=all) before the commit

    async def _commit(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # partitions moved to another consumer meanwhile: it gets these commands again, and
            # compare-and-set makes the second write a confirmation.
            log.warning("offset commit failed (%s); the commands will be redelivered", exc)

    def _rewind(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        for tp, offset in first.items():
            if tp in consumer.assignment():
                consumer.seek(tp, offset)


def _newest_status_per_product(commands: Sequence[SetProductStatus]) -> list[SetProductStatus]:
    newest: dict[str, SetProductStatus] = {}
    for command in commands:
        current = newest.get(command.product_id)
        if current is None or command.issued_at >= current.issued_at:
            newest[command.product_id] = command
    superseded = len(commands) - len(newest)
    if superseded:
        GATEWAY_COMMANDS.labels("SetProductStatus", "superseded").inc(superseded)
    return list(newest.values())


def _decode(record: ConsumerRecord) -> ShopifyCommand | None:
    try:
        return _COMMAND.validate_json(record.value)
    except ValidationError as exc:
        log.error("undecodable message on %s[%s] at offset %s: %s; body %r",
                  record.topic, record.partition, record.offset, exc, (record.value or b"")[:500])
        UNDECODABLE.labels(topic=record.topic).inc()
        return None


def _decode_all(fetched: dict[TopicPartition, list[ConsumerRecord]]) -> list[Decoded]:
    """Each record with its command, decoded once (None: undecodable, logged and counted)."""
    return [(record, _decode(record)) for batch in fetched.values() for record in batch]


def _any_urgent(window: Sequence[Decoded]) -> bool:
    """Whether any of these commands is not a full comparison's repair (those can wait)."""
    return any(not isinstance(command, SetInventoryLevel) or command.origin != "full_comparison"
               for _, command in window)


def _pairs_of(window: Sequence[Decoded]) -> set[Pair]:
    return {pair_of(command) for _, command in window if isinstance(command, SetInventoryLevel)}


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


# ---------------------------------------------------------------------------- entry point


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    admin = ShopifyAdmin(settings)
    try:  # its tables come from services.setup (services starting together would race on DDL)
        log.info("Shopify gateway consuming %s (batches of %d, debounce %.2fs)", SHOPIFY_COMMANDS.name,
                 settings.inventory_batch_size, settings.inventory_debounce_seconds)
        await ShopifyGateway(settings, admin, pool).run(stop)
    finally:
        await admin.aclose()
        await pool.close()
        log.info("Shopify gateway stopped")


def main() -> None:
    settings = start(lambda s: s.shopify_gateway_metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
