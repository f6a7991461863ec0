"""The Prima poller (Prima ingest): polls Prima for stock and the item master and publishes them
as facts.

Two feeds, each with its cursor in `ingest.prima_cursors`:

- "stock": `GET /v1/stock?after=<cursor>` (available to sell per SKU and warehouse, changed
  since the cursor, with the latest sales order allocated on the record) -> one PrimaStockLevel
  per record.
- "items": `GET /v1/items?after=<change_id>` (the item master, bundle components included,
  changed after the cursor, in change_id order) -> one PrimaItemChanged per item.

A page is fetched, turned into facts, sent to `prima.inventory.v1` keyed by SKU (idempotent
producer, acks=all), and only when Kafka has acknowledged every message of the page is the
page's cursor stored. Pages follow one another while Prima has more; then the feed waits
`prima_poll_interval_seconds`. Any failure (Prima 5xx, timeout or unreachable, a 4xx, a record
that does not parse, a Kafka send error, the database) is logged and counted, leaves the cursor
where it was, and the feed is polled again after a capped exponential backoff. A page is then
published again whole: at least once, never skipped; consumers dedupe on `change_id`.

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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError

from contracts.prima.inventory import (
    BundleComponent,
    PrimaItemChanged,
    PrimaStockLevel,
    sku_key,
)
from contracts.topics import PRIMA_INVENTORY
from services.platform.kafka import Outgoing, make_broker, publish_all
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.prima.client import (
    ITEMS_PAGE_MAX,
    PrimaBadResponse,
    PrimaClient,
    PrimaRejected,
    PrimaUnavailable,
)

log = logging.getLogger("shopify_prima.prima_poller")

FEEDS = ("items", "stock")
BACKOFF_CAP_SECONDS = 30.0  # a failing feed is polled again after interval * 2^failures, at most this

FACTS_PUBLISHED = Counter(
    "shopify_prima_prima_ingest_facts_published", "Facts polled from Prima and acknowledged by Kafka", ["feed"]
)
POLLS = Counter(
    "shopify_prima_prima_ingest_polls",
    "Polls of a Prima feed, by outcome: ok, prima_unavailable (5xx, 429, timeout, unreachable), "
    "prima_rejected (other 4xx), bad_data, kafka_error, store_error, error",
    ["feed", "outcome"],
)
LAST_SUCCESS = Gauge(
    "shopify_prima_prima_ingest_last_success_timestamp_seconds",
    "When a poll of the feed last ended without error (unix time)", ["feed"],
)
STOCK_CHANGE_ID = Gauge(
    "shopify_prima_prima_ingest_stock_change_id", "Highest Prima stock change_id published and stored as cursor"
)
PAGE_SECONDS = Histogram(
    "shopify_prima_prima_ingest_page_seconds", "One page: fetch, publish until acknowledged, store the cursor",
    ["feed"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class PollFailed(Exception):
    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class FeedPoll:
    """What one poll of one feed did."""

    feed: str
    published: int = 0
    pages: int = 0
    outcome: str = "ok"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass
class Page:
    facts: list[PrimaStockLevel | PrimaItemChanged]
    cursor: str | None  # to store once the facts are acknowledged; None: nothing to store
    has_more: bool


Publish = Callable[[list[Outgoing]], Awaitable[Any]]


class PrimaIngest:
    """Polls the feeds. `poll_once` is one pass over each feed (every page Prima has ready);
    `run` repeats it until stopped. Tests give their own `topic`, `cursor_prefix` and `publish`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, client: PrimaClient, publish: Publish, *,
                 topic: str = PRIMA_INVENTORY.name, cursor_prefix: str = "") -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.publish = publish
        self.topic = topic
        self.cursor_prefix = cursor_prefix
        self._pages: dict[str, Callable[[str | None], Awaitable[Page]]] = {
            "items": self._items_page, "stock": self._stock_page,
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
        try:
            return await self.client.get(path, **params)
        except PrimaUnavailable as exc:
            raise PollFailed("prima_unavailable", str(exc)) from exc
        except PrimaRejected as exc:
            raise PollFailed("prima_rejected", str(exc)) from exc
        except PrimaBadResponse as exc:
            raise PollFailed("bad_data", str(exc)) from exc

    async def _stock_page(self, cursor: str | None) -> Page:
        params: dict[str, Any] = {"limit": self.settings.prima_poll_page_size}
        if cursor is not None:
            params["after"] = cursor
        body = await self._get("/v1/stock", params)
        polled_at = datetime.now(UTC)
        try:
            facts = [PrimaStockLevel(sku=r["sku"], warehouse=r["warehouse"], available=r["available"],
                                     change_id=r["change_id"], changed_at=r["changed_at"], polled_at=polled_at,
                                     allocated_for=r.get("allocated_for"),
                                     allocated_sales_order=r.get("allocated_sales_order"))
                     for r in body["stock"]]
            next_cursor, has_more = body["next_cursor"], bool(body["has_more"])
            if not isinstance(next_cursor, str):
                raise TypeError(f"next_cursor is {next_cursor!r}, not a string")
        except (KeyError, TypeError, ValidationError) as exc:
            raise PollFailed("bad_data", f"a stock page that does not parse: {type(exc).__name__}: {exc}") from exc
        if has_more and not facts:
            raise PollFailed("bad_data", "Prima said has_more but sent an empty stock page")
        return Page(facts, next_cursor if next_cursor != cursor else None, has_more)

    async def _items_page(self, cursor: str | None) -> Page:
        state = json.loads(cursor) if cursor else {}
        after = state.get("after")  # None: from the start (also for a cursor of the old form)
        params: dict[str, Any] = {"limit": min(self.settings.prima_poll_page_size, ITEMS_PAGE_MAX)}
        if after is not None:
            params["after"] = after
        body = await self._get("/v1/items", params)
        polled_at = datetime.now(UTC)
        try:
            rows, next_cursor = body["items"], body["next_cursor"]
            facts = [
                PrimaItemChanged(
                    sku=r["sku"], item_id=r["item_id"], description=r["description"], item_type=r["item_type"],
                    active=r["active"], updated_at=r["updated_at"], polled_at=polled_at, change_id=r["change_id"],
                    components=tuple(BundleComponent(sku=c["sku"], quantity=c["quantity"])
                                     for c in r.get("components") or ()),
                )
                for r in rows
            ]
            changes = [int(r["change_id"]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise PollFailed("bad_data", f"an item page that does not parse: {type(exc).__name__}: {exc}") from exc
        if changes != sorted(changes) or (after is not None and changes and changes[0] <= int(after)):
            raise PollFailed("bad_data", "Prima's item page is not in change_id order after the cursor")
        if next_cursor and not facts:
            raise PollFailed("bad_data", "Prima said there are more items but sent an empty page")
        new_state = {"after": str(changes[-1])} if changes else None
        return Page(facts, json.dumps(new_state) if new_state else None, bool(next_cursor))

    # ------------------------------------------------------------------ Kafka
    async def _publish(self, facts: list[BaseModel]) -> None:
        """Send every fact, then wait for every acknowledgement; raise if any failed."""
        if not facts:
            return
        try:
            await self.publish([Outgoing(self.topic, sku_key(fact.sku), fact) for fact in facts])  # type: ignore[attr-defined]
        except Exception as exc:
            raise PollFailed("kafka_error", f"sending to {self.topic}: {type(exc).__name__}: {exc}") from exc

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
                await self._publish(page.facts)
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
        async with worker.singleton(self.pool, f"prima-poller:{self.cursor_prefix}") as mine:
            if not mine:
                return
            failures = dict.fromkeys(FEEDS, 0)
            due = dict.fromkeys(FEEDS, 0.0)
            log.info("polling Prima at %s every %ss", self.settings.prima_base_url, interval)
            while not worker.stop.is_set():
                now = time.monotonic()
                results = await self.poll_once([f for f in FEEDS if due[f] <= now], worker.stop)
                for feed, result in results.items():
                    failures[feed] = 0 if result.ok else failures[feed] + 1
                    delay = interval if result.ok else min(interval * 2 ** failures[feed],
                                                           max(BACKOFF_CAP_SECONDS, interval))
                    due[feed] = time.monotonic() + delay
                await worker.sleep(max(0.0, min(due.values()) - time.monotonic()))


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, "prima-poller")
    async with worker.database(max_size=2) as pool, PrimaClient(settings) as client, worker.broker(broker):
        await PrimaIngest(settings, pool, client, lambda out: publish_all(broker, out)).run(worker)


if __name__ == "__main__":
    run_worker("prima-poller", main, lambda s: s.prima_ingest_metrics_port)
