"""What every Prima feed shares, whichever adapter polls it (services/prima/poller.py: the REST
feeds behind cursors; services/prima/omlink/: the OM link's availability snapshots and order
status): the outcome of one pass (`FeedPoll`, `PollFailed`), the ingest's metrics (labelled by
feed), and the loop that polls each feed on its interval with a capped backoff (`run_feeds`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from services.platform.kafka import Outgoing
from services.platform.runner import Worker
from services.prima.client import PrimaBadResponse, PrimaRejected, PrimaUnavailable

GROUP = "prima-ingest"  # the consumer group of its dead letters (refused records) and of their re-drives
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


Publish = Callable[[list[Outgoing]], Awaitable[Any]]


@contextlib.contextmanager
def prima_failures() -> Iterator[None]:
    """What Prima answered, as the pass's outcome: unavailable (5xx, 429, timeouts, unreachable),
    rejected (another refusal) or bad_data (an answer that does not read)."""
    try:
        yield
    except PrimaUnavailable as exc:
        raise PollFailed("prima_unavailable", str(exc)) from exc
    except PrimaRejected as exc:
        raise PollFailed("prima_rejected", str(exc)) from exc
    except PrimaBadResponse as exc:
        raise PollFailed("bad_data", str(exc)) from exc


async def publish_or_fail(publish: Publish, out: list[Outgoing]) -> None:
    """Send a page's messages and wait for every acknowledgement; a failure is the pass's
    `kafka_error` (nothing after it is stored, so the next pass sends them again)."""
    if not out:
        return
    try:
        await publish(out)
    except Exception as exc:
        topics = ", ".join(sorted({o.topic for o in out}))
        raise PollFailed("kafka_error", f"sending to {topics}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class ScheduledFeed:
    """A feed polled every `interval` seconds: `poll` is one pass (failures in its result)."""

    name: str
    poll: Callable[[asyncio.Event | None], Awaitable[FeedPoll]]
    interval: float


async def run_feeds(worker: Worker, pool: asyncpg.Pool, lock: str, feeds: list[ScheduledFeed], *,
                    side_by_side: bool = False) -> None:
    """Each feed every its interval, a failing one again after a capped exponential backoff,
    until stopped. One poller polls at a time (the advisory lock `lock`). The feeds take turns
    (the REST feeds: items before the stock that names them), or with `side_by_side` each runs on
    its own, so that a long pass of one (an OM link status pass paced by its request budget)
    never holds up another."""
    async with worker.singleton(pool, lock) as mine:
        if not mine:
            return
        if side_by_side:
            await asyncio.gather(*(_poll_until_stopped(worker, [feed]) for feed in feeds))
        else:
            await _poll_until_stopped(worker, feeds)


async def _poll_until_stopped(worker: Worker, feeds: list[ScheduledFeed]) -> None:
    failures = {f.name: 0 for f in feeds}
    due = {f.name: 0.0 for f in feeds}
    while not worker.stop.is_set():
        for feed in feeds:
            if due[feed.name] > time.monotonic() or worker.stop.is_set():
                continue
            result = await feed.poll(worker.stop)
            failures[feed.name] = 0 if result.ok else failures[feed.name] + 1
            delay = feed.interval if result.ok else min(feed.interval * 2 ** failures[feed.name],
                                                        max(BACKOFF_CAP_SECONDS, feed.interval))
            due[feed.name] = time.monotonic() + delay
        await worker.sleep(max(0.0, min(due.values()) - time.monotonic()))
