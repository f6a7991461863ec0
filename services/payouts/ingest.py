"""The payout ingest: Shopify Payments payouts and their balance transactions, from the Admin
GraphQL API to Kafka as facts (shopify.payouts.v1).

A poll reads the payouts issued in the last PAYOUT_INGEST_LOOKBACK_DAYS (the Payouts document,
page by page by cursor) and, for each payout whose status is not the one it last published
(ingest.shopify_payouts, the ingest's own table: its cursor over Shopify's payouts), reads the
payout's balance transactions (PayoutBalanceTransactions, "payments_transfer_id:<id>", page by
page by cursor) and publishes the read: the transactions in pages of at most 250
(ShopifyPayoutTransactionsRead), then the payout itself with how many transactions the read
listed and a digest of their ids (ShopifyPayoutObserved), all under the payout's key so they
arrive in order. The payout's row is recorded only after Kafka acknowledged the whole read: a
crash in between publishes the read again (at least once; the Payout aggregate takes a read it
has seen once). A payout that later fails or is cancelled changes status, so it is read again.

Polls run every PAYOUT_INGEST_INTERVAL_SECONDS (0: only on demand) under an advisory lock (one
ingest polls at a time), and on demand: RequestPayoutIngest (the ops API, `shopify-prima payouts
ingest`) reads one payout again whatever was published, or every payout issued since a date.
Shopify's cost throttle is the Admin client's (services/shopify/admin.py): a read of 10,000
transactions is about 63 queries of 963 points.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
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

    async def transactions(self, payout_id: int) -> list[ShopifyBalanceTransaction]:
        nodes = await self._all_pages("PayoutBalanceTransactions", {"query": f"payments_transfer_id:{payout_id}"},
                                      "balanceTransactions", TRANSACTIONS_FIRST, 3 + TRANSACTIONS_FIRST * 6,
                                      "no balance transactions")
        return [ShopifyBalanceTransaction.from_graphql(node) for node in nodes]

    async def _all_pages(self, operation: str, variables: dict[str, Any], connection: str, first: int,
                         expected_cost: int, nothing: str) -> list[dict[str, Any]]:
        """Every node of one shopifyPaymentsAccount connection, page after page."""
        found: list[dict[str, Any]] = []
        after = None
        while True:
            data = await self.admin.execute(operation, {**variables, "first": first, "after": after},
                                            expected_cost=expected_cost)
            account = data.get("shopifyPaymentsAccount")
            if account is None:
                raise NoPaymentsAccount(f"the shop has no Shopify Payments account: {nothing} to read")
            page = account[connection]
            found += page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    # -- what was published ----------------------------------------------------------------------

    async def published_statuses(self, payout_ids: list[int]) -> dict[int, str]:
        rows = await self.pool.fetch("SELECT payout_id, status FROM ingest.shopify_payouts WHERE payout_id = ANY($1)",
                                     payout_ids)
        return {r["payout_id"]: r["status"] for r in rows}

    # -- a read ----------------------------------------------------------------------------------

    def messages(self, payout: ShopifyPayout, transactions: list[ShopifyBalanceTransaction]) -> list[Outgoing]:
        """One read of a payout as messages: its pages of transactions, then the payout."""
        read_id, now = uuid4(), datetime.now(UTC)
        key = payout_key(payout.id)
        pages = [ShopifyPayoutTransactionsRead(read_id=read_id, payout_id=payout.id, page=n + 1,
                                               transactions=tuple(transactions[i:i + PAGE_MAX]), read_at=now)
                 for n, i in enumerate(range(0, len(transactions), PAGE_MAX))]
        observed = ShopifyPayoutObserved(
            read_id=read_id, payout=payout, transaction_count=len(transactions),
            transactions_digest=transactions_digest(t.id for t in transactions), pages=len(pages), observed_at=now)
        return [Outgoing(SHOPIFY_PAYOUTS.name, key, m) for m in (*pages, observed)]

    async def read(self, payout: ShopifyPayout) -> int:
        """Read a payout's transactions and publish the read; the number of transactions."""
        transactions = await self.transactions(payout.id)
        messages = self.messages(payout, transactions)
        await self.publish(messages)
        observed = messages[-1].message
        await self.pool.execute(
            """INSERT INTO ingest.shopify_payouts (payout_id, status, issued_at, currency, net, transaction_count,
                   read_id, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())
               ON CONFLICT (payout_id) DO UPDATE SET status = EXCLUDED.status, issued_at = EXCLUDED.issued_at,
                   currency = EXCLUDED.currency, net = EXCLUDED.net, transaction_count = EXCLUDED.transaction_count,
                   read_id = EXCLUDED.read_id, published_at = EXCLUDED.published_at""",
            payout.id, payout.status, payout.issued_at, payout.net.currency, payout.net.amount, len(transactions),
            observed.read_id)
        PAYOUT_READS.inc()
        PAYOUT_TRANSACTIONS_READ.inc(len(transactions))
        log.info("payout %s (%s, %s %s): %d transactions published", payout.id, payout.status, payout.net.amount,
                 payout.net.currency, len(transactions))
        return len(transactions)

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
