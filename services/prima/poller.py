"""The Prima poller (Prima ingest): polls Prima for stock, the item master and despatch notes and
publishes them as facts.

With PRIMA_ADAPTER=omlink (Prima's own SOAP interface) there are no change feeds to follow:
`omlink_main` runs the availability feed (snapshots compared per product range,
services/prima/omlink/availability_feed.py) and the order-status feed (OrderStatus per open order
within a request budget, services/prima/omlink/status_feed.py) side by side instead, publishing
the same facts. What follows describes the REST feeds.

Three feeds, each with its cursor in `ingest.prima_cursors`:

- "stock": `GET /v1/stock?after=<cursor>` (available to sell per SKU and warehouse, changed
  since the cursor, with the latest sales order allocated on the record) -> one PrimaStockLevel
  per record.
- "items": `GET /v1/items?after=<change_id>` (the item master, bundle components included,
  changed after the cursor, in change_id order) -> one PrimaItemChanged per item.
- "despatches": `GET /v1/despatches?after=<cursor>` (the warehouse's despatch notes, one entry per
  change: despatched, then tracking_updated when a parcel gets its tracking later) -> one
  PrimaDespatchRecorded per change, to `prima.despatches.v1` keyed by the Shopify order id (the
  sales order's external reference), so one order's despatches keep their order.

A page is fetched, turned into facts, sent to `prima.inventory.v1` keyed by SKU (the despatches
to their topic; idempotent producer, acks=all), and only when Kafka has acknowledged every
message of the page is the page's cursor stored. Pages follow one another while Prima has more;
then the feed waits `prima_poll_interval_seconds`. Any failure (Prima 5xx, timeout or unreachable, a 4xx, a record
that does not parse, a Kafka send error, the database) is logged and counted, leaves the cursor
where it was, and the feed is polled again after a capped exponential backoff. A page is then
published again whole: at least once, never skipped; consumers dedupe on `change_id`.

A record that breaks the rules every fact meets (contracts/validation.py: a NUL in a SKU, a
change_id beyond int64, a component quantity of zero; a despatch note whose external reference is
no Shopify order id or whose parcels do not add up to its lines, contracts/prima/despatches.py) or
misses a field is not published as a fact: it becomes a dead letter of the group "prima-ingest"
(the record as Prima sent it, with the error: an exception record, counted by
shopify_prima_dead_lettered_total), published with the page, and the feed goes on behind it.
Fix the record in Prima (its next change comes through as usual), or fix the rule and `shopify-prima dead-letters redrive <id>`: this process's
"prima-ingest" consumer validates the record again and publishes its fact.

The items feed's cursor is the greatest item `change_id` published. (It was the greatest
(updated_at, item_id): updated_at is when Prima's writing transaction began, so an item
committed after others with a later updated_at had been published was skipped for good. A
cursor stored in that old form is dropped: the feed starts again from the beginning, once, and
the CatalogItems ignore what they already have.)

One poller runs at a time (PostgreSQL advisory lock); `python -m services.prima.poller`. Prima is
called through the one client (services/prima/client.py), Kafka through FastStream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid5

import asyncpg
from pydantic import BaseModel

from contracts.platform import DeadLetter
from contracts.prima.despatches import PrimaDespatchRecorded
from contracts.prima.inventory import (
    BundleComponent,
    PrimaItemChanged,
    PrimaStockLevel,
    sku_key,
)
from contracts.topics import DEAD_LETTERS, PRIMA_DESPATCHES, PRIMA_INVENTORY
from services.platform.kafka import (
    DEAD_LETTER_NAMESPACE,
    Consumer,
    Delivery,
    Outgoing,
    Record,
    dead_letter,
    error_text,
    make_broker,
    publish_all,
)
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.prima.client import (
    ITEMS_PAGE_MAX,
    PrimaClient,
)
from services.prima.feeds import (
    FACTS_PUBLISHED,
    GROUP,
    LAST_SUCCESS,
    PAGE_SECONDS,
    POLLS,
    STOCK_CHANGE_ID,
    FeedPoll,
    PollFailed,
    Publish,
    ScheduledFeed,
    prima_failures,
    publish_or_fail,
    run_feeds,
)
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.availability_feed import AvailabilityFeed
from services.prima.omlink.status_feed import OrderStatusFeed

log = logging.getLogger("shopify_prima.prima_poller")

FEEDS = ("items", "stock", "despatches")
DESPATCHES_PAGE_MAX = 1000  # Prima's limit on GET /v1/despatches
Fact = PrimaStockLevel | PrimaItemChanged | PrimaDespatchRecorded


@dataclass
class Page:
    facts: list[Fact]
    cursor: str | None  # to store once the facts are acknowledged; None: nothing to store
    has_more: bool
    refused: list[DeadLetter] = field(default_factory=list)  # records that are no fact: dead letters


def refused_record(path: str, model: type[BaseModel], record: Any, polled_at: datetime,
                   error: BaseException, key_field: str = "sku") -> DeadLetter:
    """The dead letter of a Prima record that does not make a `model` fact: the record as the fact
    it should have been (so that a re-drive decodes it with the model), keyed by its `key_field`,
    its id stable for the record (polled again, it is the same letter: the digest is of the
    record as Prima sent it, not of the poll)."""
    message_type = model.model_fields["message_type"].default
    candidate = {**record, "message_type": message_type, "polled_at": polled_at.isoformat()} \
        if isinstance(record, dict) else record
    value = json.dumps(candidate, default=str).encode()
    key = record.get(key_field) if isinstance(record, dict) else None
    letter = dead_letter(GROUP, Record(f"prima-api:{path}", -1, -1, str(key).encode("utf-8", "replace") if key
                                       is not None else None, value, [("message_type", message_type.encode())]),
                         "undecodable", f"a Prima record that is no {message_type}: {error_text(error)}", 0)
    digest = hashlib.sha256(json.dumps(record, default=str, sort_keys=True).encode()).hexdigest()
    return letter.model_copy(update={"dead_letter_id": uuid5(DEAD_LETTER_NAMESPACE, f"{GROUP}/{path}/{digest}")})


class PrimaIngest:
    """Polls the feeds. `poll_once` is one pass over each feed (every page Prima has ready);
    `run` repeats it until stopped. Tests give their own `topic`, `cursor_prefix` and `publish`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, client: PrimaClient, publish: Publish, *,
                 topic: str = PRIMA_INVENTORY.name, cursor_prefix: str = "",
                 dead_letter_topic: str = DEAD_LETTERS.name, despatch_topic: str = PRIMA_DESPATCHES.name) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.publish = publish
        self.topic = topic
        self.despatch_topic = despatch_topic
        self.dead_letter_topic = dead_letter_topic
        self.cursor_prefix = cursor_prefix
        self._pages: dict[str, Callable[[str | None], Awaitable[Page]]] = {
            "items": self._items_page, "stock": self._stock_page, "despatches": self._despatches_page,
        }
        for feed in FEEDS:  # every series exists from the start (0 until the first success)
            FACTS_PUBLISHED.labels(feed=feed)
            POLLS.labels(feed=feed, outcome="ok")
            LAST_SUCCESS.labels(feed=feed)

    # ------------------------------------------------------------------ cursors
    def _feed_key(self, feed: str) -> str:
        return f"{self.cursor_prefix}{feed}"

    async def cursor(self, feed: str) -> str | None:
        try:
            return await self.pool.fetchval("SELECT cursor FROM ingest.prima_cursors WHERE feed = $1",
                                            self._feed_key(feed))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PollFailed("store_error", f"reading the {feed} cursor: {type(exc).__name__}: {exc}") from exc

    async def _store_cursor(self, feed: str, cursor: str) -> None:
        try:
            await self.pool.execute(
                """INSERT INTO ingest.prima_cursors (feed, cursor, updated_at) VALUES ($1, $2, now())
                   ON CONFLICT (feed) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()""",
                self._feed_key(feed), cursor)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PollFailed("store_error", f"storing the {feed} cursor: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ Prima
    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        with prima_failures():
            return await self.client.get(path, **params)

    async def _stock_page(self, cursor: str | None) -> Page:
        params: dict[str, Any] = {"limit": self.settings.prima_poll_page_size}
        if cursor is not None:
            params["after"] = cursor
        body = await self._get("/v1/stock", params)
        polled_at = datetime.now(UTC)
        facts: list[Fact] = []
        refused: list[DeadLetter] = []
        try:
            records, next_cursor, has_more = body["stock"], body["next_cursor"], bool(body["has_more"])
            if not isinstance(next_cursor, str) or not isinstance(records, list):
                raise TypeError("next_cursor is not a string or stock is not a list")
        except (KeyError, TypeError) as exc:
            raise PollFailed("bad_data", f"a stock page that does not parse: {type(exc).__name__}: {exc}") from exc
        for r in records:
            try:
                facts.append(PrimaStockLevel(
                    sku=r["sku"], warehouse=r["warehouse"], available=r["available"], change_id=r["change_id"],
                    changed_at=r["changed_at"], polled_at=polled_at, allocated_for=r.get("allocated_for"),
                    allocated_sales_order=r.get("allocated_sales_order")))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # ValidationError is a ValueError
                refused.append(refused_record("/v1/stock", PrimaStockLevel, r, polled_at, exc))
        if has_more and not records:
            raise PollFailed("bad_data", "Prima said has_more but sent an empty stock page")
        return Page(facts, next_cursor if next_cursor != cursor else None, has_more, refused)

    async def _items_page(self, cursor: str | None) -> Page:
        state = json.loads(cursor) if cursor else {}
        # None: from the start (also for a cursor of the old form), asked as after change 0: only
        # `after` pages in change_id order (without it Prima orders by updated_at, item_id)
        after = state.get("after")
        params: dict[str, Any] = {"limit": min(self.settings.prima_poll_page_size, ITEMS_PAGE_MAX),
                                  "after": after if after is not None else "0"}
        body = await self._get("/v1/items", params)
        polled_at = datetime.now(UTC)
        try:
            rows, next_cursor = body["items"], body["next_cursor"]
            if not isinstance(rows, list):
                raise TypeError("items is not a list")
        except (KeyError, TypeError) as exc:
            raise PollFailed("bad_data", f"an item page that does not parse: {type(exc).__name__}: {exc}") from exc
        facts: list[Fact] = []
        refused: list[DeadLetter] = []
        changes: list[int] = []  # the page's change_ids, a refused record's too where it has one
        for r in rows:
            try:
                fact = PrimaItemChanged(
                    sku=r["sku"], item_id=r["item_id"], description=r["description"], item_type=r["item_type"],
                    active=r["active"], updated_at=r["updated_at"], polled_at=polled_at, change_id=r["change_id"],
                    components=tuple(BundleComponent(sku=c["sku"], quantity=c["quantity"])
                                     for c in r.get("components") or ()),
                )
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # ValidationError is a ValueError
                refused.append(refused_record("/v1/items", PrimaItemChanged, r, polled_at, exc))
                change = r.get("change_id") if isinstance(r, dict) else None
                if type(change) is int and 0 < change <= 2**63 - 1:
                    changes.append(change)
            else:
                facts.append(fact)
                changes.append(fact.change_id or 0)
        if rows and not changes:
            raise PollFailed("bad_data", "none of Prima's item records on the page has a change_id: the cursor "
                                         "cannot move past them")
        if changes != sorted(changes) or (after is not None and changes and changes[0] <= int(after)):
            raise PollFailed("bad_data", "Prima's item page is not in change_id order after the cursor")
        if next_cursor and not rows:
            raise PollFailed("bad_data", "Prima said there are more items but sent an empty page")
        new_state = {"after": str(changes[-1])} if changes else None
        return Page(facts, json.dumps(new_state) if new_state else None, bool(next_cursor), refused)

    async def _despatches_page(self, cursor: str | None) -> Page:
        """Despatch notes as they changed after the cursor: one fact per change, keyed by order."""
        params: dict[str, Any] = {"limit": min(self.settings.prima_poll_page_size, DESPATCHES_PAGE_MAX)}
        if cursor is not None:
            params["after"] = cursor
        body = await self._get("/v1/despatches", params)
        polled_at = datetime.now(UTC)
        try:
            records, next_cursor, has_more = body["despatches"], body["next_cursor"], bool(body["has_more"])
            if not isinstance(next_cursor, str) or not next_cursor or not isinstance(records, list):
                raise TypeError("next_cursor is not a string or despatches is not a list")
        except (KeyError, TypeError) as exc:
            raise PollFailed("bad_data", f"a despatch page that does not parse: {type(exc).__name__}: {exc}") \
                from exc
        facts: list[Fact] = []
        refused: list[DeadLetter] = []
        for r in records:
            try:
                facts.append(PrimaDespatchRecorded.from_note(r, polled_at))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # ValidationError is a ValueError
                refused.append(refused_record("/v1/despatches", PrimaDespatchRecorded, r, polled_at, exc,
                                              key_field="external_reference"))
        if has_more and not records:
            raise PollFailed("bad_data", "Prima said has_more but sent an empty despatch page")
        return Page(facts, next_cursor if next_cursor != cursor else None, has_more, refused)

    # ------------------------------------------------------------------ Kafka
    def _outgoing(self, fact: Fact) -> Outgoing:
        """A despatch goes to its topic keyed by the Shopify order id; stock and items keyed by SKU."""
        if isinstance(fact, PrimaDespatchRecorded):
            return Outgoing(self.despatch_topic, fact.key, fact)
        return Outgoing(self.topic, sku_key(fact.sku), fact)

    async def _publish(self, facts: list[Fact], refused: Iterable[DeadLetter] = ()) -> None:
        """Send every fact (and the dead letter of every refused record), then wait for every
        acknowledgement; raise if any failed."""
        out = [self._outgoing(fact) for fact in facts]
        out += [Outgoing(self.dead_letter_topic, str(letter.dead_letter_id).encode(), letter) for letter in refused]
        await publish_or_fail(self.publish, out)

    # ------------------------------------------------------------------ polling
    async def poll_once(self, feeds: Iterable[str] = FEEDS, stop: asyncio.Event | None = None) -> dict[str, FeedPoll]:
        """One pass over each feed: every page Prima has ready (until has_more is false, a
        failure, or `stop`). Returns what each feed published; failures are in the result
        (logged and counted), never raised."""
        return {feed: await self._poll_feed(feed, stop) for feed in feeds}

    async def _poll_feed(self, feed: str, stop: asyncio.Event | None) -> FeedPoll:
        result = FeedPoll(feed)
        try:
            cursor = await self.cursor(feed)
            while True:
                started = time.perf_counter()
                page = await self._pages[feed](cursor)
                await self._publish(page.facts, page.refused)
                if page.cursor is not None:
                    await self._store_cursor(feed, page.cursor)
                    cursor = page.cursor
                PAGE_SECONDS.labels(feed=feed).observe(time.perf_counter() - started)
                result.published += len(page.facts)
                result.pages += 1
                FACTS_PUBLISHED.labels(feed=feed).inc(len(page.facts))
                if feed == "stock" and page.facts:
                    STOCK_CHANGE_ID.set(max(f.change_id for f in page.facts))
                if not page.has_more or (stop is not None and stop.is_set()):
                    break
        except PollFailed as exc:
            result.outcome, result.error = exc.outcome, str(exc)
            log.warning("polling Prima %s failed (%s), cursor kept, %d facts published before: %s",
                        feed, exc.outcome, result.published, exc)
        except Exception as exc:
            result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
            log.exception("polling Prima %s failed unexpectedly; cursor kept", feed)
        POLLS.labels(feed=feed, outcome=result.outcome).inc()
        if result.ok:
            LAST_SUCCESS.labels(feed=feed).set_to_current_time()
            if result.published:
                log.info("Prima %s: %d facts published in %d pages", feed, result.published, result.pages)
        return result

    async def run(self, worker: Worker) -> None:
        """Poll until stopped: each feed every poll interval, a failing one after a capped
        exponential backoff. One poller polls at a time (advisory lock)."""
        interval = self.settings.prima_poll_interval_seconds
        log.info("polling Prima at %s every %ss", self.settings.prima_base_url, interval)
        await run_feeds(worker, self.pool, f"prima-poller:{self.cursor_prefix}", [
            ScheduledFeed(feed, lambda stop, f=feed: self._poll_feed(f, stop), interval) for feed in FEEDS])


def redrives(broker: Any, settings: Settings, *, topic: str = PRIMA_INVENTORY.name,
             despatch_topic: str = PRIMA_DESPATCHES.name, **consumer: Any) -> Consumer:
    """The consumer group "prima-ingest": a re-driven dead letter of a refused record is decoded
    with its fact's model again (contracts/validation.py, contracts/prima/despatches.py) and, if
    it now is a fact, published (a despatch to its topic keyed by order, the others by SKU)."""
    def outgoing(fact: Any) -> Outgoing:
        if isinstance(fact, PrimaDespatchRecorded):
            return Outgoing(despatch_topic, fact.key, fact)
        return Outgoing(topic, sku_key(fact.sku), fact)

    async def publish(deliveries: list[Delivery[Any]]) -> None:
        await publish_all(broker, [outgoing(d.message) for d in deliveries])

    return Consumer(broker, settings, group=GROUP, topics=[],
                    accepts=(PrimaStockLevel, PrimaItemChanged, PrimaDespatchRecorded), handler=publish, **consumer)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, "prima-poller")
    redrives(broker, settings)
    if settings.prima_adapter == "omlink":
        await omlink_main(worker, broker)
        return
    async with worker.database(max_size=2) as pool, PrimaClient(settings) as client, worker.broker(broker):
        await PrimaIngest(settings, pool, client, lambda out: publish_all(broker, out)).run(worker)


async def omlink_main(worker: Worker, broker: Any) -> None:
    """With Prima's OM link there is no change feed: stock comes from comparing availability
    snapshots (a full pass every availability_interval_seconds; services/prima/omlink/
    availability_feed.py, which also tells the item master of the SKUs it finds), and despatch and
    cancellation from polling OrderStatus per open order within the request budget
    (services/prima/omlink/status_feed.py)."""
    settings = worker.settings
    config = settings.prima_omlink
    assert config is not None  # the settings refuse omlink without it

    def publish(out: list[Outgoing]) -> Awaitable[Any]:
        return publish_all(broker, out)

    async with worker.database(max_size=3) as pool, OmLinkAdapter(config) as adapter, worker.broker(broker):
        log.info("polling Prima's OM link at %s: availability every %ss, order status within %s requests/s",
                 config.service_url, config.availability_interval_seconds, config.status_requests_per_second)
        await run_feeds(worker, pool, "prima-poller:omlink", [
            ScheduledFeed("availability", AvailabilityFeed(settings, pool, adapter, publish).poll_once,
                          config.availability_interval_seconds),
            # a pass asks only the orders due; looking for them every quarter of the interval (at
            # least every second, at most every 30 s) is often enough, and spares the read model
            ScheduledFeed("order_status", OrderStatusFeed(settings, pool, adapter, publish).poll_once,
                          max(1.0, min(30.0, config.status_interval_seconds / 4))),
        ], side_by_side=True)


if __name__ == "__main__":
    run_worker("prima-poller", main, lambda s: s.prima_ingest_metrics_port)
