"""The payout ingest: Shopify Payments payouts and their balance transactions, from the Admin
GraphQL API to Kafka as facts (shopify.payouts.v1).

A poll reads the payouts issued in the last PAYOUT_INGEST_LOOKBACK_DAYS (the Payouts document,
page by page by cursor) and, for each payout whose status is not the one it last published
(ingest.shopify_payouts, the ingest's own table: its cursor over Shopify's payouts), reads the
payout's balance transactions (PayoutBalanceTransactions, "payments_transfer_id:<id>", page by
page by cursor) and publishes the read as it goes: each page of PAGE_MAX (250) transactions
(ShopifyPayoutTransactionsRead) as soon as that many are read, so the payout decider takes the
pages while Shopify's cost throttle paces the rest of the read; after the last query the rest of
the transactions, then the payout itself with how many transactions the read listed and a digest
of their ids (ShopifyPayoutObserved). All go under the payout's key, one after the other (a page
is sent once Kafka acknowledged the one before), so they arrive in order. The payout's row
(`published_at`) is recorded only after Kafka acknowledged every page and the payout: a crash
before that leaves a read without its end (an abandoned read, which the Payout aggregate never
decides on) and the payout is read again, whole, under a new read id (at least once; the Payout
aggregate takes a read it has seen once and ignores an earlier read's pages redelivered). A
payout that later fails or is cancelled changes status, so it is read again.

Polls run every PAYOUT_INGEST_INTERVAL_SECONDS (0: only on demand) under an advisory lock (one
ingest polls at a time), and on demand: RequestPayoutIngest (the ops API, `shopify-prima payouts
ingest`) reads one payout again whatever was published, or every payout issued since a date.
Shopify's cost throttle is the Admin client's (services/shopify/admin.py): a read of 10,000
transactions is about 63 queries of 963 points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import asyncpg

from contracts.platform import RequestPayoutIngest
from contracts.shopify.payouts import (
    PAGE_MAX,
    ShopifyBalanceTransaction,
    ShopifyPayout,
    ShopifyPayoutObserved,
    ShopifyPayoutTransactionsRead,
    payout_key,
)
from contracts.topics import SHOPIFY_PAYOUTS
from domain.payouts.checks import transactions_digest
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    make_broker,
    publish_all,
)
from services.platform.metrics import (
    PAYOUT_INGEST_LAST_SUCCESS,
    PAYOUT_POLL_FAILURES,
    PAYOUT_POLLS,
    PAYOUT_READS,
    PAYOUT_TRANSACTIONS_READ,
)
from services.platform.runner import Outage, Worker, run_worker
from services.platform.settings import Settings

if TYPE_CHECKING:
    from services.shopify.admin import ShopifyAdmin

log = logging.getLogger("shopify_prima.payout_ingest")
GROUP = "payout-ingest"
LOCK = "payout-ingest"
PAYOUTS_FIRST = 50  # 753 points a page (contracts/shopify_admin/operations/Payouts.graphql)
TRANSACTIONS_FIRST = 160  # 963 points a page, under Shopify's 1000 (PayoutBalanceTransactions.graphql)
RETRY_SECONDS = 30.0

Publish = Callable[[list[Outgoing]], Awaitable[Any]]


@dataclass
class PollResult:
    payouts_seen: int = 0
    payouts_read: list[int] = field(default_factory=list)
    transactions: int = 0


class NoPaymentsAccount(RuntimeError):
    """The shop has no Shopify Payments account (shopifyPaymentsAccount is null)."""


READING = "READING"  # ingest.shopify_payouts.status while a read is going out: no status of Shopify's


class PublishedRead:
    """One read of a payout, published as it is read: a page of PAGE_MAX transactions
    (ShopifyPayoutTransactionsRead) as soon as that many are read, then, at the end, the rest
    and the payout (ShopifyPayoutObserved: the count and digest of every transaction listed).

    One message (or the last batch) is in flight at a time: the next is sent only after Kafka
    acknowledged the one before, so the read's messages keep their order on the payout's key and
    a failed send stops the read (its error raised by the next `add` or by `end`) before a later
    page goes out. A send in flight is never cancelled (a produce cancelled midway breaks the
    idempotent producer's sequence: services/platform/kafka.py publish_within); `settled` waits
    for it after a failed read."""

    def __init__(self, payout: ShopifyPayout, publish: Publish) -> None:
        self.payout = payout
        self.publish = publish
        self.read_id = uuid4()
        self.key = payout_key(payout.id)
        self.waiting: list[ShopifyBalanceTransaction] = []  # read, not published yet
        self.ids: list[int] = []  # every transaction listed, for the count and the digest
        self.pages = 0
        self.sending: asyncio.Future[Any] | None = None

    async def add(self, transactions: list[ShopifyBalanceTransaction]) -> None:
        """A query's page of transactions: every full page of PAGE_MAX published."""
        self.waiting += transactions
        self.ids += (t.id for t in transactions)
        while len(self.waiting) >= PAGE_MAX:
            page, self.waiting = self.waiting[:PAGE_MAX], self.waiting[PAGE_MAX:]
            await self._send([self._page(page)])

    async def end(self) -> ShopifyPayoutObserved:
        """The last page (if any transactions are left) and the payout, once Kafka acknowledged
        every page before; returns when Kafka acknowledged them too."""
        last = [self._page(self.waiting)] if self.waiting else []
        self.waiting = []
        observed = ShopifyPayoutObserved(
            read_id=self.read_id, payout=self.payout, transaction_count=len(self.ids),
            transactions_digest=transactions_digest(self.ids), pages=self.pages, observed_at=datetime.now(UTC))
        await self._send([*last, Outgoing(SHOPIFY_PAYOUTS.name, self.key, observed)])
        await self._sent()
        return observed

    async def settled(self) -> None:
        """Wait for the send in flight, if any, to finish (its failure retrieved, not raised)."""
        if self.sending is not None:
            await asyncio.wait([self.sending])
            if not self.sending.cancelled():
                self.sending.exception()

    def _page(self, transactions: list[ShopifyBalanceTransaction]) -> Outgoing:
        self.pages += 1
        return Outgoing(SHOPIFY_PAYOUTS.name, self.key, ShopifyPayoutTransactionsRead(
            read_id=self.read_id, payout_id=self.payout.id, page=self.pages, transactions=tuple(transactions),
            read_at=datetime.now(UTC)))

    async def _sent(self) -> None:
        """The send in flight acknowledged (its error raised)."""
        if self.sending is not None:
            await asyncio.shield(self.sending)  # the caller cancelled: the send goes on (settled waits)
            self.sending = None

    async def _send(self, messages: list[Outgoing]) -> None:
        await self._sent()
        self.sending = asyncio.ensure_future(self.publish(messages))


class PayoutIngest:
    def __init__(self, settings: Settings, admin: ShopifyAdmin, pool: asyncpg.Pool, publish: Publish) -> None:
        self.settings = settings
        self.admin = admin
        self.pool = pool
        self.publish = publish
        self.lock = asyncio.Lock()  # the schedule and on-demand reads, one at a time

    # -- reading Shopify -------------------------------------------------------------------------

    async def payouts(self, query: str) -> list[ShopifyPayout]:
        nodes = await self._all_pages("Payouts", {"query": query}, "payouts", PAYOUTS_FIRST,
                                      2 + PAYOUTS_FIRST * 15 + 1, "no payouts")
        return [ShopifyPayout.from_graphql(node) for node in nodes]

    async def transactions(self, payout_id: int) -> AsyncIterator[list[ShopifyBalanceTransaction]]:
        """A payout's balance transactions, a query's page at a time."""
        async for nodes in self._pages("PayoutBalanceTransactions", {"query": f"payments_transfer_id:{payout_id}"},
                                       "balanceTransactions", TRANSACTIONS_FIRST, 3 + TRANSACTIONS_FIRST * 6,
                                       "no balance transactions"):
            yield [ShopifyBalanceTransaction.from_graphql(node) for node in nodes]

    async def _all_pages(self, operation: str, variables: dict[str, Any], connection: str, first: int,
                         expected_cost: int, nothing: str) -> list[dict[str, Any]]:
        """Every node of one shopifyPaymentsAccount connection."""
        return [node async for nodes in self._pages(operation, variables, connection, first, expected_cost, nothing)
                for node in nodes]

    async def _pages(self, operation: str, variables: dict[str, Any], connection: str, first: int,
                     expected_cost: int, nothing: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The nodes of one shopifyPaymentsAccount connection, page after page as each is read."""
        after = None
        while True:
            data = await self.admin.execute(operation, {**variables, "first": first, "after": after},
                                            expected_cost=expected_cost)
            account = data.get("shopifyPaymentsAccount")
            if account is None:
                raise NoPaymentsAccount(f"the shop has no Shopify Payments account: {nothing} to read")
            page = account[connection]
            yield page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    # -- what was published ----------------------------------------------------------------------

    async def published_statuses(self, payout_ids: list[int]) -> dict[int, str]:
        rows = await self.pool.fetch("SELECT payout_id, status FROM ingest.shopify_payouts WHERE payout_id = ANY($1)",
                                     payout_ids)
        return {r["payout_id"]: r["status"] for r in rows}

    # -- a read ----------------------------------------------------------------------------------

    async def publish_read(self, payout: ShopifyPayout) -> ShopifyPayoutObserved:
        """Read a payout's transactions and publish the read as it goes (PublishedRead); its end."""
        read = PublishedRead(payout, self.publish)
        try:
            async with contextlib.aclosing(self.transactions(payout.id)) as pages:
                async for transactions in pages:
                    await read.add(transactions)
            return await read.end()
        finally:
            await read.settled()

    async def read(self, payout: ShopifyPayout) -> int:
        """Read a payout's transactions, publish the read and record the payout as published (once
        Kafka acknowledged every message of the read); the number of transactions.

        Pages go out while the read goes on, so a read that fails midway has published a start
        the Payout waits on: the payout's row is first marked as being read (status READING, no
        status of Shopify's), so that the next scheduled poll reads it again, whole, even when its
        status did not change (a re-read asked for by an operator)."""
        await self.pool.execute("UPDATE ingest.shopify_payouts SET status = $2 WHERE payout_id = $1", payout.id,
                                READING)
        observed = await self.publish_read(payout)
        transactions = observed.transaction_count
        await self.pool.execute(
            """INSERT INTO ingest.shopify_payouts (payout_id, status, issued_at, currency, net, transaction_count,
                   read_id, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())
               ON CONFLICT (payout_id) DO UPDATE SET status = EXCLUDED.status, issued_at = EXCLUDED.issued_at,
                   currency = EXCLUDED.currency, net = EXCLUDED.net, transaction_count = EXCLUDED.transaction_count,
                   read_id = EXCLUDED.read_id, published_at = EXCLUDED.published_at""",
            payout.id, payout.status, payout.issued_at, payout.net.currency, payout.net.amount, transactions,
            observed.read_id)
        PAYOUT_READS.inc()
        PAYOUT_TRANSACTIONS_READ.inc(transactions)
        log.info("payout %s (%s, %s %s): %d transactions published", payout.id, payout.status, payout.net.amount,
                 payout.net.currency, transactions)
        return transactions

    async def poll(self, *, since: datetime | None = None, payout_id: int | None = None) -> PollResult:
        """Read the payouts issued since `since` (default: the lookback) whose status changed since
        published, or the one payout asked for (read again whatever was published)."""
        async with self.lock:
            PAYOUT_POLLS.inc()
            if payout_id is not None:
                query = f"id:{payout_id}"
            else:
                since = since or datetime.now(UTC) - timedelta(days=self.settings.payout_ingest_lookback_days)
                query = f"issued_at:>={since.astimezone(UTC).date().isoformat()}"
            payouts = await self.payouts(query)
            published = await self.published_statuses([p.id for p in payouts])
            result = PollResult(payouts_seen=len(payouts))
            for payout in payouts:
                if payout_id is None and published.get(payout.id) == payout.status:
                    continue
                result.transactions += await self.read(payout)
                result.payouts_read.append(payout.id)
            PAYOUT_INGEST_LAST_SUCCESS.set(time.time())
            return result

    # -- the process -----------------------------------------------------------------------------

    async def on_command(self, deliveries: list[Delivery[Any]]) -> None:
        for delivery in deliveries:
            command: RequestPayoutIngest = delivery.message
            result = await self.poll(since=command.since, payout_id=command.payout_id)
            log.info("payout ingest %s (asked by %s): %d payouts seen, %s read", command.run_id, command.requested_by,
                     result.payouts_seen, result.payouts_read or "none")

    async def schedule(self, worker: Worker) -> None:
        """Poll every interval (sooner again after a failure) until stopped; with an interval of 0
        only on demand."""
        interval = self.settings.payout_ingest_interval_seconds
        if not interval:
            await worker.stopped()
            return
        outage = Outage("the payout ingest (Shopify, Kafka or PostgreSQL)", log)
        while not worker.stop.is_set():
            wait = interval
            try:
                result = await self.poll()
            except NoPaymentsAccount as exc:
                log.warning("%s", exc)
            except Exception as exc:  # noqa: BLE001 - logged once per outage, tried again sooner
                PAYOUT_POLL_FAILURES.inc()
                outage.failed(exc)
                wait = min(interval, RETRY_SECONDS)
            else:
                outage.recovered()
                if result.payouts_read:
                    log.info("payout poll: %d payouts seen, %d read", result.payouts_seen, len(result.payouts_read))
            if await worker.sleep(wait):
                return


async def main(worker: Worker) -> None:
    from services.shopify.admin import ShopifyAdmin

    settings = worker.settings
    broker = make_broker(settings, GROUP)
    admin = ShopifyAdmin(settings)
    try:
        async with worker.database(max_size=3) as pool:
            ingest = PayoutIngest(settings, admin, pool, lambda out: publish_all(broker, out))
            # operator commands only: a new group starts at the end (an old request is not run again)
            Consumer(broker, settings, group=GROUP, topics=[], accepts=(RequestPayoutIngest,),
                     handler=ingest.on_command, start_from="latest")
            async with worker.broker(broker):
                await worker.exclusive(pool, LOCK, lambda: ingest.schedule(worker))
    finally:
        await admin.aclose()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.payout_ingest_metrics_port)
