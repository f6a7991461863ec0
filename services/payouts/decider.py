"""The payout decider: hosts the Payout aggregates.

In: the payout ingest's facts (shopify.payouts.v1: pages of balance transactions, then the payout
observed), Prima's answers to the journals (prima.outcomes.v1) and the operator's RematchPayout
and ReleasePayout (shopify-prima.operations.v1), in batches. Each batch is decided by the payout
application (domain/payouts/application.py): the documents of the orders behind the batch's
transactions are read once from the sales-documents read model (projections/sales_documents.py),
with the gateways that paid each order (projections/payouts.py, the payment-gateways read model),
each Payout decides (journal, hold, matches), and every changed Payout is saved in one
transaction with the notification log (the outbox: PostJournal goes out through the relay). The
offsets are committed after the save (services/platform/kafka.py): a redelivered batch changes
nothing.

The ingest publishes a read's pages as it reads them (about one every 0.25 s for a large payout,
under Shopify's cost throttle), and a Payout decides only once its read has ended. So that the
end of a 10,000-transaction read does not wait for 10,000 documents, the documents of each
page's orders are read as the page arrives (ReadAhead), and the decision's look-up then reads
only the orders whose rows changed since (or were not there): what it returns is exactly what
one read of every document at that moment returns.

Beside the consumer, a sweep (every PAYOUT_REMATCH_INTERVAL_SECONDS) matches again the payouts
with unmatched transactions (from the payout read model), serialized with the batches: a sales
order or credit memo that arrives after the payout matches without an operator. A
RematchPayout without a payout id does the same at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from contracts.platform import ReleasePayout, RematchPayout
from contracts.prima.journals import (
    PrimaJournalParked,
    PrimaJournalPosted,
    PrimaJournalRejected,
)
from contracts.shopify.payouts import (
    ShopifyPayoutObserved,
    ShopifyPayoutTransactionsRead,
)
from contracts.topics import PRIMA_OUTCOMES, SHOPIFY_PAYOUTS
from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import PayoutPolicy
from domain.payouts.matching import order_ids as orders_of
from domain.payouts.values import (
    OrderDocument,
    PayoutFact,
    PayoutObserved,
    RematchRequested,
    TransactionsRead,
)
from projections import payouts as payouts_read_model
from projections import sales_documents
from services.payouts import translate
from services.platform.kafka import Consumer, Delivery, make_broker
from services.platform.metrics import (
    PAYOUT_JOURNALS_REQUESTED,
    PAYOUT_MATCHES_CHANGED,
    PAYOUT_PAID_TO_JOURNAL,
    PAYOUTS_HELD,
)
from services.platform.runner import Worker, every, run_worker
from services.platform.settings import Settings

log = logging.getLogger("shopify_prima.payout_decider")
GROUP = "payout-decider"
ACCEPTS = (ShopifyPayoutTransactionsRead, ShopifyPayoutObserved, PrimaJournalPosted, PrimaJournalRejected,
           PrimaJournalParked, RematchPayout, ReleasePayout)
SWEEP_REQUESTER = "auto: a document may have arrived"

READ_AHEAD_MAX = 20_000  # orders' documents kept between a page and its read's end (two payouts of 10,000)

DocumentLookup = Callable[[Iterable[int]], Awaitable[Mapping[int, OrderDocument]]]
UnmatchedLookup = Callable[[], Awaitable[list[int]]]
ReadAheadHook = Callable[[set[int]], Awaitable[None]]


def policy_of(settings: Settings) -> PayoutPolicy:
    return PayoutPolicy(accounts=settings.payout_accounts, journal_on=frozenset(settings.payout_journal_on),
                        documents_grace=timedelta(seconds=settings.payout_documents_grace_seconds),
                        clearing=settings.payout_clearing_accounts)


async def documents_for(db: asyncpg.Pool | asyncpg.Connection, order_ids: Iterable[int]) -> Mapping[int, OrderDocument]:
    """The orders' documents (the sales-documents read model) with the gateways that paid them
    (the payment-gateways read model): what the matching and the journal decide on."""
    wanted = set(order_ids)
    documents = await sales_documents.documents_for(db, wanted)
    gateways = await payouts_read_model.gateways_for(db, documents)
    return {i: replace(d, gateways=gateways[i]) if i in gateways else d for i, d in documents.items()}


# Each row's version: PostgreSQL's xmin, the transaction that wrote the row as it is now (an
# update writes a new row version with a new xmin), for the sales document and the order's
# payment gateways; an order without a sales document (or without its name yet) is absent, as in
# documents_for.
VERSIONS = """SELECT s.shopify_order_id, s.xmin::text AS document, g.xmin::text AS gateways
    FROM readmodel.sales_documents s LEFT JOIN readmodel.order_payment_gateways g USING (shopify_order_id)
    WHERE s.shopify_order_id = ANY($1::bigint[]) AND s.order_name IS NOT NULL"""

Version = tuple[str, str | None] | None  # (sales document, gateways) row versions; None: absent


class ReadAhead:
    """The orders' documents (documents_for), read ahead as a read's pages arrive.

    `ahead(order ids)` reads the documents of a page's orders with their rows' versions and keeps
    them (at most READ_AHEAD_MAX orders, the oldest dropped first). Called as the look-up, it
    returns what documents_for would return at that moment: in one REPEATABLE READ snapshot it
    reads the versions of the orders asked and, in full, only those not kept, or whose sales
    document or gateways row changed (or came, or went) since they were kept; the rest are the
    kept ones, the same rows. The orders asked are then forgotten (decided on; a later look-up
    reads them afresh). A look-up of orders none of which are kept is one plain read.

    Each read plans its queries for the orders it asks (plan_cache_mode force_custom_plan): after
    a few pages of 250, PostgreSQL would otherwise keep a generic plan made for few orders, two
    to five times slower for the 10,000 at the end of a read."""

    def __init__(self, pool: asyncpg.Pool, limit: int = READ_AHEAD_MAX) -> None:
        self.pool = pool
        self.limit = limit
        self.kept: OrderedDict[int, tuple[Version, OrderDocument | None]] = OrderedDict()

    async def ahead(self, order_ids: set[int]) -> None:
        async with self._snapshot() as conn:
            versions = await self._versions(conn, order_ids)
            documents = await documents_for(conn, order_ids)
        for order_id in order_ids:
            self.kept[order_id] = (versions.get(order_id), documents.get(order_id))
            self.kept.move_to_end(order_id)
        while len(self.kept) > self.limit:
            self.kept.popitem(last=False)

    async def __call__(self, order_ids: Iterable[int]) -> Mapping[int, OrderDocument]:
        wanted = set(order_ids)
        held = {i: self.kept.pop(i) for i in wanted if i in self.kept}  # decided on now: forgotten
        async with self._snapshot() as conn:
            if not held:
                return await documents_for(conn, wanted)
            versions = await self._versions(conn, wanted)
            stale = {i for i in wanted if i not in held or held[i][0] != versions.get(i)}
            found = dict(await documents_for(conn, stale)) if stale else {}
        for order_id in wanted - stale:
            document = held[order_id][1]
            if document is not None:
                found[order_id] = document
        return found

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            yield conn

    @staticmethod
    async def _versions(conn: asyncpg.Connection, order_ids: set[int]) -> dict[int, Version]:
        rows = await conn.fetch(VERSIONS, sorted(order_ids))
        return {r["shopify_order_id"]: (r["document"], r["gateways"]) for r in rows}


class PayoutDecider:
    """The handler, without Kafka: a batch of messages -> one save (tests call it directly).
    `ahead`: called with the orders of a batch's pages before the batch is decided (ReadAhead)."""

    def __init__(self, payouts: PayoutApplication, documents: DocumentLookup, policy: PayoutPolicy,
                 unmatched: UnmatchedLookup | None = None, ahead: ReadAheadHook | None = None) -> None:
        self.payouts = payouts
        self.documents = documents
        self.policy = policy
        self.unmatched = unmatched
        self.ahead = ahead
        self.lock = asyncio.Lock()  # the consumer's batches and the sweep decide one at a time

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        facts: list[PayoutFact] = []
        for delivery in deliveries:
            facts += await self.to_facts(delivery.message)
        if facts:
            await self.decide(facts)

    async def to_facts(self, message: Any) -> list[PayoutFact]:
        if isinstance(message, ShopifyPayoutTransactionsRead):
            return [translate.transactions_read(message)]
        if isinstance(message, ShopifyPayoutObserved):
            return [translate.observed(message)]
        if isinstance(message, ReleasePayout):
            return [translate.release(message)]
        if isinstance(message, RematchPayout):
            ids = [message.payout_id] if message.payout_id is not None else (
                await self.unmatched() if self.unmatched is not None else [])
            return [translate.rematch(message, payout_id) for payout_id in ids]
        return [translate.outcome(message)]

    async def read_ahead(self, facts: list[PayoutFact]) -> None:
        """The documents of the pages' orders, read ahead; a failure only loses the head start
        (the decision's look-up reads whatever is missing), so it is logged, not raised."""
        if self.ahead is None:
            return
        ending = {f.payout_id for f in facts if isinstance(f, PayoutObserved)}  # decided now: read below anyway
        wanted = {i for f in facts if isinstance(f, TransactionsRead) and f.payout_id not in ending
                  for i in orders_of(f.transactions)}
        if not wanted:
            return
        try:
            await self.ahead(wanted)
        except Exception as exc:  # noqa: BLE001 - a speed-up only
            log.warning("reading the documents of %d orders ahead failed (read at the decision instead): %s",
                        len(wanted), exc)

    async def decide(self, facts: list[PayoutFact]) -> None:
        await self.read_ahead(facts)
        loop = asyncio.get_running_loop()

        def documents_for(order_ids: set[int]) -> Mapping[int, OrderDocument]:
            # called by the application in its thread: the read runs on the event loop
            return asyncio.run_coroutine_threadsafe(self.documents(order_ids), loop).result()

        async with self.lock:
            result = await asyncio.to_thread(self.payouts.handle, facts, documents_for, self.policy,
                                             datetime.now(UTC))
        PAYOUT_JOURNALS_REQUESTED.inc(len(result.journals_requested))
        PAYOUTS_HELD.inc(len(result.held))
        PAYOUT_MATCHES_CHANGED.inc(result.matches_changed)
        for seconds in result.posted_after:
            PAYOUT_PAID_TO_JOURNAL.observe(seconds)
        for payout_id in result.journals_requested:
            log.info("payout %s: journal requested", payout_id)
        for payout_id, reason in result.held:
            log.warning("payout %s held: %s", payout_id, reason)
        for payout_id, state in result.releases:
            log.info("payout %s released: now %s", payout_id, state)
        for payout_id in result.refused_releases:
            log.info("payout %s: release asked, but it is neither held nor failed", payout_id)

    async def rematch_unmatched(self) -> list[int]:
        """The sweep: payouts with unmatched transactions are matched again; the ones asked."""
        if self.unmatched is None:
            return []
        ids = await self.unmatched()
        if ids:
            now = datetime.now(UTC)
            await self.decide([RematchRequested(payout_id=i, requested_by=SWEEP_REQUESTER, requested_at=now)
                               for i in ids])
        return ids

    async def sweep(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """rematch_unmatched every `interval_seconds` until `stop` (runner.every)."""
        await every(stop, interval_seconds, "the payout decider's re-match sweep (PostgreSQL)", self.rematch_unmatched,
                    log)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    payouts = PayoutApplication(env=settings.eventsourcing_env())
    async with worker.database(max_size=3) as pool:
        documents = ReadAhead(pool)
        decider = PayoutDecider(payouts, documents, policy_of(settings),
                                lambda: payouts_read_model.payouts_with_unmatched(pool), ahead=documents.ahead)
        Consumer(broker, settings, group=GROUP, topics=[SHOPIFY_PAYOUTS, PRIMA_OUTCOMES], accepts=ACCEPTS,
                 handler=decider.handle)
        try:
            async with worker.broker(broker):
                sweep = asyncio.create_task(decider.sweep(worker.stop, settings.payout_rematch_interval_seconds),
                                            name="payout-rematch")
                try:
                    await worker.stopped()
                finally:
                    if not worker.stop.is_set():
                        sweep.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweep
        finally:
            payouts.close()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.payout_decider_metrics_port)
