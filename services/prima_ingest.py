"""Prima ingest: polls Prima for stock and the item master and publishes them as facts.

Two feeds, each with its cursor in `ingest.prima_cursors`:

- "stock": `GET /v1/stock?after=<cursor>` (available to sell per SKU and warehouse, changed
  since the cursor) -> one PrimaStockLevel per record.
- "items": `GET /v1/items?changed_since=&cursor=` (the item master, bundle components
  included) -> one PrimaItemChanged per item.

A page is fetched, turned into facts, sent to `prima.inventory.v1` keyed by SKU (idempotent
producer, acks=all), and only when Kafka has acknowledged every message of the page is the
page's cursor stored. Pages follow one another while Prima has more; then the feed waits
`prima_poll_interval_seconds`. Any failure (Prima 5xx, timeout or unreachable, a 4xx, a record
that does not parse, a Kafka send error, the database) is logged and counted, leaves the cursor
where it was, and the feed is polled again after a capped exponential backoff. A page is then
published again whole: at least once, never skipped; consumers dedupe on `change_id` (stock)
and `updated_at` (items).

The items feed's cursor is the ingest's own: Prima's item cursor is null on the last page, so
the ingest keeps the greatest (updated_at, item_id) it has published and asks again with
`changed_since` = that updated_at (inclusive, as the contract says), skipping what it already
published; within one pass it follows Prima's `next_cursor`.

One ingest runs at a time (PostgreSQL advisory lock); `python -m services.prima_ingest`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError

from contracts.inventory import BundleComponent, PrimaItemChanged, PrimaStockLevel, sku_key
from contracts.topics import PRIMA_INVENTORY
from services.config import Settings
from services.prima_client import prima_http_client
from services.runtime import start, wait_or_stop

log = logging.getLogger("shopify_prima.prima_ingest")

FEEDS = ("items", "stock")
ITEMS_PAGE_MAX = 500  # Prima's limit on GET /v1/items
BACKOFF_CAP_SECONDS = 30.0  # a failing feed is polled again after interval * 2^failures, at most this

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS ingest;
CREATE TABLE IF NOT EXISTS ingest.prima_cursors (
    feed       text PRIMARY KEY,
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

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


async def create_tables(conn: asyncpg.Connection) -> None:
    """Called by services.setup only (the one place that creates tables)."""
    await conn.execute(SCHEMA_SQL)


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


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


class PrimaIngest:
    """Polls the feeds. `poll_once` is one pass over each feed (every page Prima has ready);
    `run` repeats it until stopped. Tests give their own `topic` and `cursor_prefix`."""

    def __init__(self, settings: Settings, *, topic: str = PRIMA_INVENTORY.name, cursor_prefix: str = "",
                 producer_factory: Callable[[], AIOKafkaProducer] | None = None) -> None:
        self.settings = settings
        self.topic = topic
        self.cursor_prefix = cursor_prefix
        self.producer_factory = producer_factory or self._new_producer
        self.producer: AIOKafkaProducer | None = None
        self.pool: asyncpg.Pool | None = None
        self.http: httpx.AsyncClient | None = None
        self._pages: dict[str, Callable[[str | None], Awaitable[Page]]] = {
            "items": self._items_page, "stock": self._stock_page,
        }
        for feed in FEEDS:  # every series exists from the start (0 until the first success)
            FACTS_PUBLISHED.labels(feed=feed)
            POLLS.labels(feed=feed, outcome="ok")
            LAST_SUCCESS.labels(feed=feed)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=2)
        self.http = prima_http_client(self.settings)

    async def close(self) -> None:
        await self._drop_producer()
        if self.http is not None:
            await self.http.aclose()
        if self.pool is not None:
            await self.pool.close()

    async def __aenter__(self) -> PrimaIngest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id="shopify-prima-prima-ingest",
            enable_idempotence=True,  # a retried send is never written twice
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,
            request_timeout_ms=30_000,
        )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = self.producer_factory()
            try:
                await producer.start()
            except Exception as exc:
                await _quietly(producer.stop())
                raise PollFailed("kafka_error", f"Kafka producer did not start: {type(exc).__name__}: {exc}") from exc
            self.producer = producer
        return self.producer

    async def _drop_producer(self) -> None:
        """After a send error the producer is replaced: a fresh one has a fresh idempotence state."""
        producer, self.producer = self.producer, None
        if producer is not None:
            await _quietly(producer.stop())

    # ------------------------------------------------------------------ cursors
    def _feed_key(self, feed: str) -> str:
        return f"{self.cursor_prefix}{feed}"

    async def cursor(self, feed: str) -> str | None:
        assert self.pool is not None, "start() first"
        try:
            return await self.pool.fetchval("SELECT cursor FROM ingest.prima_cursors WHERE feed = $1",
                                            self._feed_key(feed))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PollFailed("store_error", f"reading the {feed} cursor: {type(exc).__name__}: {exc}") from exc

    async def _store_cursor(self, feed: str, cursor: str) -> None:
        assert self.pool is not None
        try:
            await self.pool.execute(
                """INSERT INTO ingest.prima_cursors (feed, cursor, updated_at) VALUES ($1, $2, now())
                   ON CONFLICT (feed) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()""",
                self._feed_key(feed), cursor)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PollFailed("store_error", f"storing the {feed} cursor: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ Prima
    async def _get(self, path: str, params: dict[str, Any]) -> dict:
        assert self.http is not None, "start() first"
        try:
            response = await self.http.get(path, params=params)
        except httpx.HTTPError as exc:  # timeouts, refused or dropped connections
            raise PollFailed("prima_unavailable", f"GET {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise PollFailed("prima_unavailable", f"GET {path} answered {response.status_code}: {response.text[:300]}")
        if response.status_code != 200:
            raise PollFailed("prima_rejected", f"GET {path} answered {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise PollFailed("bad_data", f"GET {path}: the body is not JSON: {response.text[:300]!r}") from exc

    async def _stock_page(self, cursor: str | None) -> Page:
        params: dict[str, Any] = {"limit": self.settings.prima_poll_page_size}
        if cursor is not None:
            params["after"] = cursor
        body = await self._get("/v1/stock", params)
        polled_at = datetime.now(UTC)
        try:
            facts = [PrimaStockLevel(sku=r["sku"], warehouse=r["warehouse"], available=r["available"],
                                     change_id=r["change_id"], changed_at=r["changed_at"], polled_at=polled_at)
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
        last = (_dt(state["last"][0]), state["last"][1]) if state.get("last") else None
        params: dict[str, Any] = {"limit": min(self.settings.prima_poll_page_size, ITEMS_PAGE_MAX)}
        if state.get("changed_since"):
            params["changed_since"] = state["changed_since"]
        if state.get("cursor"):
            params["cursor"] = state["cursor"]
        body = await self._get("/v1/items", params)
        polled_at = datetime.now(UTC)
        try:
            rows, next_cursor = body["items"], body["next_cursor"]
            keys = [(_dt(r["updated_at"]), r["item_id"]) for r in rows]
            facts = [
                PrimaItemChanged(
                    sku=r["sku"], item_id=r["item_id"], description=r["description"], item_type=r["item_type"],
                    active=r["active"], updated_at=r["updated_at"], polled_at=polled_at,
                    components=tuple(BundleComponent(sku=c["sku"], quantity=c["quantity"])
                                     for c in r.get("components") or ()),
                )
                for r, key in zip(rows, keys, strict=True)
                if last is None or key > last  # changed_since is inclusive: skip what was published
            ]
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise PollFailed("bad_data", f"an item page that does not parse: {type(exc).__name__}: {exc}") from exc
        if keys and (last is None or max(keys) > last):
            last = max(keys)
        stored_last = [last[0].isoformat(), last[1]] if last else None
        if next_cursor:
            new_state = {"changed_since": state.get("changed_since"), "cursor": next_cursor, "last": stored_last}
        else:  # the end: next time, ask from the greatest updated_at published
            new_state = {"changed_since": stored_last[0] if stored_last else None, "cursor": None, "last": stored_last}
        unchanged = new_state == {k: state.get(k) for k in new_state}
        return Page(facts, None if unchanged else json.dumps(new_state, sort_keys=True), bool(next_cursor))

    # ------------------------------------------------------------------ Kafka
    async def _publish(self, facts: list[BaseModel]) -> None:
        """Send every fact, then wait for every acknowledgement; raise if any failed."""
        if not facts:
            return
        producer = await self._ensure_producer()
        try:
            futures = [
                await producer.send(self.topic, value=fact.model_dump_json().encode(), key=sku_key(fact.sku),
                                    headers=[("message_type", fact.message_type.encode())])
                for fact in facts
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
        except Exception as exc:
            await self._drop_producer()
            raise PollFailed("kafka_error", f"sending to {self.topic}: {type(exc).__name__}: {exc}") from exc
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self._drop_producer()
            raise PollFailed("kafka_error", f"{len(failed)} of {len(facts)} sends to {self.topic} failed: "
                                            f"{type(failed[0]).__name__}: {failed[0]}")

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

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop`: each feed every poll interval, a failing one after a capped
        exponential backoff. Waits for the advisory lock so that one ingest polls at a time."""
        assert self.pool is not None, "start() first"
        interval = self.settings.prima_poll_interval_seconds
        async with self.pool.acquire() as lock_conn:
            lock_name = f"shopify_prima.prima_ingest:{self.cursor_prefix}"
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_name):
                log.info("another Prima ingest holds the lock; standing by")
                if await wait_or_stop(stop, 5):
                    return
            try:
                failures = dict.fromkeys(FEEDS, 0)
                due = dict.fromkeys(FEEDS, 0.0)
                log.info("polling Prima at %s every %ss", self.settings.prima_base_url, interval)
                while not stop.is_set():
                    now = time.monotonic()
                    results = await self.poll_once([f for f in FEEDS if due[f] <= now], stop)
                    for feed, result in results.items():
                        failures[feed] = 0 if result.ok else failures[feed] + 1
                        delay = interval if result.ok else min(interval * 2 ** failures[feed],
                                                               max(BACKOFF_CAP_SECONDS, interval))
                        due[feed] = time.monotonic() + delay
                    await wait_or_stop(stop, max(0.0, min(due.values()) - time.monotonic()))
            finally:
                await _quietly(lock_conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_name))


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as exc:  # closing something already broken
        log.debug("ignored while closing: %s: %s", type(exc).__name__, exc)


async def amain(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with PrimaIngest(settings) as ingest:
        await ingest.run(stop)
    log.info("stopped")


def main() -> None:
    asyncio.run(amain(start(lambda s: s.prima_ingest_metrics_port)))


if __name__ == "__main__":
    main()
