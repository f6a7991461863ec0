"""Stock from snapshots: the Prima poller's availability feed when Prima is reached through OM link
(PRIMA_ADAPTER=omlink; issue 15, item 4).

OM link has no change feed: ProductAvailableToSell answers the whole available-to-sell of a
product range (`OmLinkAdapter.availability()`, a page per configured range). One pass
(`poll_once`) reads every range and, per page:

1. compares the page with the last snapshot stored of its range (`ingest.omlink_availability`,
   one range in memory at a time: 100,000 SKUs in ranges of a few thousand) by `compare`:
   a SKU whose level or warehouse differs, or that is new, is a change; a SKU gone from the range
   since the last snapshot is a change to 0 (Prima no longer has it to sell);
2. publishes one PrimaStockLevel per changed SKU-location, the same stock fact the REST feed
   publishes (`allocated_for` unknown: the snapshot names no sales order), keyed by SKU on
   prima.inventory.v1, preceded by a PrimaItemChanged for each SKU seen for the first time (see
   "Item master") and followed by the dead letters of items that make no fact (see "Unmapped");
3. only once Kafka acknowledged every message of the page, stores the page's snapshot in one
   transaction (upsert what changed, delete what is gone, remember the items and unmapped rows).

Any failure (Prima unavailable, refusing or answering nonsense, a Kafka send, the database) ends
the pass with the outcome poller.py uses (prima_unavailable, prima_rejected, bad_data,
kafka_error, store_error, error) and leaves the failing range's snapshot as it was, so the next
pass compares against the old snapshot and publishes the same differences again: at least once,
never skipped. Ranges done before the failure keep what they stored.

change_id. The stock aggregate (StockItem.record_prima_stock), the catalogue aggregate and the
item master ignore a fact whose change_id is not above the last they applied for its
SKU(-location). OM link gives no change sequence, so the feed draws one from the PostgreSQL
sequence `ingest.omlink_change_id` (migration 0011), which starts at 10^18: above any change_id
Prima's REST feed (Prima's own stock and item sequences) gave a shop that switches adapters, and
strictly increasing whatever the wall clock does (a time-based id could step back with the
clock and be ignored). It lives in the same database as the aggregates it feeds, so a restore
brings both back together. A difference published again after a failure gets a new, higher
change_id: applied again with the same level, which changes nothing downstream. (Consequence: a
shop that switches back to the REST feed would need its stock aggregates' change_ids reset.)
`changed_at` is when the feed saw the difference.

Item master. With OM link there is no item feed, yet the order decider quarantines a line whose
SKU the item master lacks (projections/item_master.py, domain/catalog/items.py `is_sellable`).
So each mapped SKU the snapshot shows for the first time becomes one PrimaItemChanged: item_id
Prima's item code ("TEE/BLK/M": Product and matrix codes), item_type "stock" (a snapshot row is
stock Prima can sell; OM link does not say which are kits), active, description the item code.
Once per SKU ever (`ingest.omlink_items`). A SKU the item master already has (from Prima's REST
item feed, before a switch) is remembered without a fact: its type, description and components
came from Prima and are not overwritten with less.

Allocations. An accepted order holds its units back from Shopify until Prima's stock is known to
include its allocation (the StockItem clears it on a record naming the order, `allocated_for`).
The REST feed names that on each record; a snapshot does not. So each pass notes when it began,
and once the whole pass is published, each OM link order Prima confirmed before then (the order
read model's `in_prima_at`; domain/inventory/snapshot_allocations.py `included`) and not named
yet gets one stock fact per SKU of its lines (readmodel.order_fulfilment; a bundle's components),
at the level just stored, naming it: its hold is released, exactly, by a snapshot that includes
it. Orders are named once (`ingest.omlink_settled_orders`, written after Kafka acknowledged); an
order whose lines the read model does not have yet is named at a later pass.

Unmapped. A row the SKU matrix cannot name (`page.unmapped`), or whose level makes no stock fact
(contracts/validation.py), becomes a dead letter of the group "prima-ingest" naming the item and
the reason, published with the page. Its id is stable (uuid5 of the range and the item code), and
it is published again only when its reason changes (`ingest.omlink_unmapped`), so the same item
on every pass is one open exception, not a flood. The fix is the SKU matrix (configuration):
once the item is named, or leaves Prima's snapshot, the feed publishes DeadLetterRedriven for it
(the exception is resolved) and the SKU is published as any new SKU.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

import asyncpg
from pydantic import ValidationError

from contracts.platform import DeadLetterRedriven
from contracts.prima.inventory import PrimaItemChanged, PrimaStockLevel, sku_key
from contracts.topics import DEAD_LETTERS, PRIMA_INVENTORY
from domain.catalog.matrix import SkuNotMapped
from domain.inventory.snapshot_allocations import ConfirmedOrder, included
from services.platform.kafka import (
    DEAD_LETTER_NAMESPACE,
    Outgoing,
    Record,
    dead_letter,
)
from services.platform.settings import Settings
from services.prima.feeds import (
    FACTS_PUBLISHED,
    GROUP,
    LAST_SUCCESS,
    PAGE_SECONDS,
    POLLS,
    FeedPoll,
    PollFailed,
    Publish,
    prima_failures,
    publish_or_fail,
)
from services.prima.omlink.adapter import AvailabilityPage, OmLinkAdapter

log = logging.getLogger("shopify_prima.prima_poller.omlink")

FEED = "availability"
SOURCE = "prima-omlink:ProductAvailableToSell"  # the "topic" an unmapped row's dead letter names
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# how far back a pass looks for confirmed orders not named yet (a poller stopped longer than this
# leaves those orders' holds to a person: `shopify-prima inventory release`)
SETTLE_LOOKBACK = timedelta(days=7)


# ---------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Level:
    """One SKU-location's available to sell, as the snapshot says now."""

    sku: str
    warehouse: str
    available: int


@dataclass(frozen=True)
class Difference:
    """What changed in one range since its last snapshot: the levels to publish, and what to store."""

    levels: tuple[Level, ...] = ()  # to publish, one per changed SKU-location
    upserts: tuple[Level, ...] = ()  # the snapshot rows that are new or changed
    gone: tuple[str, ...] = ()  # SKUs no longer in the range


def compare(previous: Mapping[str, tuple[str, int]], warehouse: str, levels: Mapping[str, int]) -> Difference:
    """The rule: `previous` (SKU -> (warehouse, available), the last snapshot stored of the range)
    against the page (`levels` of `warehouse`). A SKU new or with another level is published; a
    SKU that moved warehouse is published at its new one and as 0 at the old one; a SKU gone from
    the range is published as 0 (Prima no longer has it to sell there). No previous snapshot:
    everything is published."""
    out: list[Level] = []
    upserts: list[Level] = []
    for sku, available in levels.items():
        before = previous.get(sku)
        if before == (warehouse, available):
            continue
        level = Level(sku, warehouse, available)
        out.append(level)
        upserts.append(level)
        if before is not None and before[0] != warehouse:
            out.append(Level(sku, before[0], 0))
    gone = tuple(sorted(sku for sku in previous if sku not in levels))
    out += [Level(sku, previous[sku][0], 0) for sku in gone]
    return Difference(tuple(out), tuple(upserts), gone)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def unmapped_letter_id(range_key: str, item_code: str) -> UUID:
    """The dead letter of one unmapped Prima item: the same on every pass."""
    return uuid5(DEAD_LETTER_NAMESPACE, f"{GROUP}/{SOURCE}/{range_key}/{item_code}")


# ---------------------------------------------------------------------------------- the feed


@dataclass
class _Work:
    """One page's facts and letters, and what to store once Kafka has them."""

    difference: Difference
    out: list[Outgoing] = field(default_factory=list)
    facts: int = 0
    items: list[tuple[str, str, int | None]] = field(default_factory=list)  # sku, item_id, change_id
    unmapped: dict[str, tuple[str, UUID]] = field(default_factory=dict)  # item code -> reason, letter id
    resolved: list[str] = field(default_factory=list)  # item codes no longer unmapped


class AvailabilityFeed:
    """One full ProductAvailableToSell pass per `poll_once`. Tests give their own `topic`,
    `dead_letter_topic`, `snapshot_prefix` (isolates their snapshots) and `publish`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, adapter: OmLinkAdapter, publish: Publish, *,
                 topic: str = PRIMA_INVENTORY.name, dead_letter_topic: str = DEAD_LETTERS.name,
                 snapshot_prefix: str = "") -> None:
        self.settings = settings
        self.pool = pool
        self.adapter = adapter
        self.publish = publish
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.prefix = snapshot_prefix
        FACTS_PUBLISHED.labels(feed=FEED)
        POLLS.labels(feed=FEED, outcome="ok")
        LAST_SUCCESS.labels(feed=FEED)

    async def poll_once(self, stop: asyncio.Event | None = None) -> FeedPoll:
        """Every range once (or until `stop`). Failures are in the result (logged and counted),
        never raised."""
        result = FeedPoll(FEED)
        try:
            taken_at = datetime.now(UTC)
            pages = self.adapter.availability()
            complete = False
            try:
                while True:
                    started = time.perf_counter()
                    page = await self._next(pages)
                    if page is None:
                        complete = True
                        break
                    result.published += await self._page(page)
                    result.pages += 1
                    PAGE_SECONDS.labels(feed=FEED).observe(time.perf_counter() - started)
                    if stop is not None and stop.is_set():
                        break
            finally:
                await pages.aclose()
            if complete:
                result.published += await self._settle(taken_at)
        except PollFailed as exc:
            result.outcome, result.error = exc.outcome, str(exc)
            log.warning("OM link availability pass failed (%s) after %d pages, that range's snapshot kept: %s",
                        exc.outcome, result.pages, exc)
        except Exception as exc:
            result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
            log.exception("OM link availability pass failed unexpectedly; that range's snapshot kept")
        POLLS.labels(feed=FEED, outcome=result.outcome).inc()
        if result.ok:
            LAST_SUCCESS.labels(feed=FEED).set_to_current_time()
            if result.published:
                log.info("OM link availability: %d facts published in %d pages", result.published, result.pages)
        return result

    @staticmethod
    async def _next(pages) -> AvailabilityPage | None:
        with prima_failures():
            try:
                return await anext(pages)
            except StopAsyncIteration:
                return None

    # ------------------------------------------------------------------ one page

    def _range_key(self, page: AvailabilityPage) -> str:
        return f"{self.prefix}{page.product_range}"

    async def _page(self, page: AvailabilityPage) -> int:
        range_key = self._range_key(page)
        seen_at = datetime.now(UTC)
        previous, unmapped_before = await self._stored(range_key)
        difference = compare(previous, page.warehouse, page.levels)
        first_seen = [level.sku for level in difference.upserts if level.sku not in previous]
        new_items, known = await self._new_items(first_seen)
        # each fact made (and so checked against the contracts) before any change_id is drawn: a
        # row that makes none is an exception like an unmapped one, neither published nor stored
        invalid: dict[str, str] = {}
        items: list[PrimaItemChanged] = []
        for sku in new_items:
            item_id = self._item_code(sku)
            try:
                items.append(PrimaItemChanged(sku=sku, item_id=item_id, description=item_id, item_type="stock",
                                              active=True, updated_at=seen_at, polled_at=seen_at, change_id=1))
            except ValidationError as exc:
                invalid[item_id] = f"SKU {sku!r}: no item fact: {_errors(exc)}"
        stock: list[PrimaStockLevel] = []
        for level in difference.levels:
            if invalid and self._item_code(level.sku) in invalid:
                continue
            try:
                stock.append(PrimaStockLevel(sku=level.sku, warehouse=level.warehouse, available=level.available,
                                             change_id=1, changed_at=seen_at, polled_at=seen_at))
            except ValidationError as exc:
                invalid[self._item_code(level.sku)] = f"SKU {level.sku!r}: no stock fact: {_errors(exc)}"
        if invalid:
            bad = {sku for sku in page.levels if self._item_code(sku) in invalid}
            items = [f for f in items if f.sku not in bad]
            stock = [f for f in stock if f.sku not in bad]
            difference = Difference(difference.levels, tuple(v for v in difference.upserts if v.sku not in bad),
                                    difference.gone)
            known = [sku for sku in known if sku not in bad]
        ids = iter(await self._change_ids(len(items) + len(stock)))
        # the item before its stock: one key, one partition, in order
        items = [f.model_copy(update={"change_id": next(ids)}) for f in items]
        stock = [f.model_copy(update={"change_id": next(ids)}) for f in stock]
        work = _Work(difference, facts=len(items) + len(stock))
        work.out = [Outgoing(self.topic, sku_key(f.sku), f) for f in [*items, *stock]]
        work.items = [(f.sku, f.item_id, f.change_id) for f in items] + [(sku, self._item_code(sku), None)
                                                                          for sku in known]
        self._letters(page, range_key, invalid, unmapped_before, seen_at, work)
        await self._send(work.out)
        await self._store(range_key, page.warehouse, seen_at, work)
        FACTS_PUBLISHED.labels(feed=FEED).inc(work.facts)
        return work.facts

    # ------------------------------------------------------------------ allocations

    async def _settle(self, taken_at: datetime) -> int:
        """Once a whole pass is published: each OM link order Prima confirmed before the pass began
        and not named yet, named on a fact of each of its SKUs at the level just stored (its hold
        released); then remembered as named. See "Allocations"."""
        prefix = self.adapter.config.order_codes.order_number_prefix
        try:
            async with self.pool.acquire() as conn:
                confirmed = await conn.fetch(
                    """SELECT o.shopify_order_id, o.in_prima_at FROM readmodel.order_sync o
                        WHERE o.in_prima_at >= $2 AND o.last_event_at >= $2 AND o.in_prima_at < $3
                          AND o.prima_sales_order_number = $1 || o.shopify_order_id::text
                          AND NOT EXISTS (SELECT 1 FROM ingest.omlink_settled_orders s
                                           WHERE s.scope = $4 AND s.shopify_order_id = o.shopify_order_id)""",
                    prefix, taken_at - SETTLE_LOOKBACK, taken_at, self.prefix)
                orders = included([ConfirmedOrder(r["shopify_order_id"], r["in_prima_at"]) for r in confirmed],
                                  taken_at)
                rows = await conn.fetch(
                    """WITH skus AS (
                           SELECT DISTINCT f.shopify_order_id, coalesce(c ->> 'sku', l ->> 'sku') AS sku
                             FROM readmodel.order_fulfilment f,
                                  jsonb_array_elements(f.lines) l
                                  LEFT JOIN LATERAL jsonb_array_elements(coalesce(l -> 'components', '[]')) c ON true
                            WHERE f.shopify_order_id = ANY($2::bigint[]))
                       SELECT skus.shopify_order_id, a.sku, a.warehouse, a.available
                         FROM skus LEFT JOIN LATERAL (
                              SELECT sku, warehouse, available FROM ingest.omlink_availability
                               WHERE range_key LIKE $1 || '%' AND sku = skus.sku
                               ORDER BY seen_at DESC LIMIT 1) a ON true
                        ORDER BY skus.shopify_order_id, a.sku""",
                    self.prefix, orders) if orders else []
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"reading the orders Prima confirmed: {type(exc).__name__}: {exc}") \
                from exc
        named = sorted({r["shopify_order_id"] for r in rows})  # an order without lines yet: a later pass
        levels = [r for r in rows if r["sku"] is not None]
        ids = iter(await self._change_ids(len(levels)))
        facts = [PrimaStockLevel(sku=r["sku"], warehouse=r["warehouse"], available=r["available"],
                                 change_id=next(ids), changed_at=taken_at, polled_at=taken_at,
                                 allocated_for=str(r["shopify_order_id"])) for r in levels]
        await self._send([Outgoing(self.topic, sku_key(f.sku), f) for f in facts])
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """INSERT INTO ingest.omlink_settled_orders (scope, shopify_order_id, settled_at)
                       SELECT $1, id, $3 FROM unnest($2::bigint[]) AS t(id) ON CONFLICT DO NOTHING""",
                    self.prefix, named, taken_at)
                await conn.execute("DELETE FROM ingest.omlink_settled_orders WHERE scope = $1 AND settled_at < $2",
                                   self.prefix, taken_at - 2 * SETTLE_LOOKBACK)
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"storing the orders named: {type(exc).__name__}: {exc}") from exc
        FACTS_PUBLISHED.labels(feed=FEED).inc(len(facts))
        if named:
            log.info("OM link availability: %d orders Prima confirmed before the snapshot named on %d stock facts "
                     "(their held units released)", len(named), len(facts))
        return len(facts)

    def _item_code(self, sku: str) -> str:
        try:
            return str(self.adapter.config.sku_matrix.item_code(sku))
        except SkuNotMapped:
            return sku

    def _letters(self, page: AvailabilityPage, range_key: str, invalid: dict[str, str],
                 before: dict[str, str], seen_at: datetime, work: _Work) -> None:
        """A dead letter for each unmapped item that is new or has a new reason; DeadLetterRedriven
        for each one that no longer is."""
        now = {str(code): f"Prima item {code} cannot be named by the SKU matrix: {reason}"
               for code, reason in page.unmapped}
        now.update(invalid)
        for code, reason in now.items():
            letter_id = unmapped_letter_id(range_key, code)
            work.unmapped[code] = (reason, letter_id)
            if before.get(code) == reason:
                continue
            value = json.dumps({"message_type": PrimaStockLevel.model_fields["message_type"].default,
                                "prima_item": code, "warehouse": page.warehouse, "product_range": range_key,
                                "polled_at": seen_at.isoformat()}).encode()
            letter = dead_letter(GROUP, Record(SOURCE, -1, -1, code.encode("utf-8", "replace"), value,
                                               [("message_type", b"PrimaStockLevel")]), "undecodable",
                                 f"{reason}. Fix the SKU matrix (OM link configuration): the next availability "
                                 "pass publishes the item and resolves this letter", 0)
            letter = letter.model_copy(update={"dead_letter_id": letter_id})
            work.out.append(Outgoing(self.dead_letter_topic, str(letter_id).encode(), letter))
        for code in before:
            if code not in now:
                letter_id = unmapped_letter_id(range_key, code)
                work.resolved.append(code)
                work.out.append(Outgoing(self.dead_letter_topic, str(letter_id).encode(), DeadLetterRedriven(
                    dead_letter_id=letter_id, group=GROUP, redriven_at=seen_at)))

    async def _send(self, out: list[Outgoing]) -> None:
        await publish_or_fail(self.publish, out)

    # ------------------------------------------------------------------ the database

    async def _stored(self, range_key: str) -> tuple[dict[str, tuple[str, int]], dict[str, str]]:
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch("SELECT sku, warehouse, available FROM ingest.omlink_availability "
                                        "WHERE range_key = $1", range_key)
                unmapped = await conn.fetch("SELECT item_code, reason FROM ingest.omlink_unmapped "
                                            "WHERE range_key = $1", range_key)
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"reading the snapshot of {range_key}: {type(exc).__name__}: {exc}") \
                from exc
        return ({r["sku"]: (r["warehouse"], r["available"]) for r in rows},
                {r["item_code"]: r["reason"] for r in unmapped})

    async def _new_items(self, skus: list[str]) -> tuple[list[str], list[str]]:
        """Of SKUs new to a range's snapshot: those the item master is to be told of (in the
        page's order), and those it already has from Prima's item feed."""
        if not skus:
            return [], []
        try:
            async with self.pool.acquire() as conn:
                told = {r["sku"] for r in await conn.fetch(
                    "SELECT sku FROM ingest.omlink_items WHERE scope = $1 AND sku = ANY($2::text[])",
                    self.prefix, skus)}
                fresh = [sku for sku in skus if sku not in told]
                known = {r["sku"] for r in await conn.fetch(
                    "SELECT sku FROM readmodel.item_master WHERE sku = ANY($1::text[])", fresh)} if fresh else set()
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"reading the items told: {type(exc).__name__}: {exc}") from exc
        return [sku for sku in fresh if sku not in known], [sku for sku in fresh if sku in known]

    async def _change_ids(self, n: int) -> list[int]:
        if not n:
            return []
        try:
            rows = await self.pool.fetch("SELECT nextval('ingest.omlink_change_id') AS id FROM generate_series(1, $1)",
                                         n)
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"drawing change ids: {type(exc).__name__}: {exc}") from exc
        return sorted(r["id"] for r in rows)

    async def _store(self, range_key: str, warehouse: str, seen_at: datetime, work: _Work) -> None:
        d = work.difference
        levels = {level.sku: level for level in d.upserts}
        change_of = {o.message.sku: o.message.change_id for o in work.out
                     if isinstance(o.message, PrimaStockLevel) and o.message.warehouse == warehouse}
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if levels:
                    await conn.execute(
                        """INSERT INTO ingest.omlink_availability AS s (range_key, sku, warehouse, available,
                                                                      change_id, seen_at)
                           SELECT $1, sku, warehouse, available, change_id, $6
                             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[])
                                  AS t(sku, warehouse, available, change_id)
                           ON CONFLICT (range_key, sku) DO UPDATE SET warehouse = EXCLUDED.warehouse,
                               available = EXCLUDED.available, change_id = EXCLUDED.change_id,
                               seen_at = EXCLUDED.seen_at""",
                        range_key, list(levels), [v.warehouse for v in levels.values()],
                        [v.available for v in levels.values()], [change_of[sku] for sku in levels], seen_at)
                if d.gone:
                    await conn.execute("DELETE FROM ingest.omlink_availability WHERE range_key = $1 "
                                       "AND sku = ANY($2::text[])", range_key, list(d.gone))
                if work.items:
                    await conn.execute(
                        """INSERT INTO ingest.omlink_items (scope, sku, item_id, change_id, recorded_at)
                           SELECT $1, sku, item_id, change_id, $5
                             FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(sku, item_id, change_id)
                           ON CONFLICT (scope, sku) DO NOTHING""",
                        self.prefix, [i[0] for i in work.items], [i[1] for i in work.items],
                        [i[2] for i in work.items], seen_at)
                if work.unmapped:
                    await conn.executemany(
                        """INSERT INTO ingest.omlink_unmapped (range_key, item_code, reason, dead_letter_id, seen_at)
                           VALUES ($1, $2, $3, $4, $5)
                           ON CONFLICT (range_key, item_code) DO UPDATE SET reason = EXCLUDED.reason,
                               seen_at = EXCLUDED.seen_at""",
                        [(range_key, code, reason, letter_id, seen_at)
                         for code, (reason, letter_id) in work.unmapped.items()])
                if work.resolved:
                    await conn.execute("DELETE FROM ingest.omlink_unmapped WHERE range_key = $1 "
                                       "AND item_code = ANY($2::text[])", range_key, work.resolved)
        except DB_ERRORS as exc:
            raise PollFailed("store_error", f"storing the snapshot of {range_key}: {type(exc).__name__}: {exc}") \
                from exc
