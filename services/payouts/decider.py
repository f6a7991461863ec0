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

Beside the consumer, a sweep (every PAYOUT_REMATCH_INTERVAL_SECONDS) matches again the payouts
with unmatched transactions (from the payout read model), serialized with the batches: a sales
order or credit memo that arrives after the payout matches without an operator. A
RematchPayout without a payout id does the same at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from domain.payouts.values import OrderDocument, PayoutFact, RematchRequested
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

DocumentLookup = Callable[[Iterable[int]], Awaitable[Mapping[int, OrderDocument]]]
UnmatchedLookup = Callable[[], Awaitable[list[int]]]


def policy_of(settings: Settings) -> PayoutPolicy:
    return PayoutPolicy(accounts=settings.payout_accounts, journal_on=frozenset(settings.payout_journal_on),
                        documents_grace=timedelta(seconds=settings.payout_documents_grace_seconds),
                        clearing=settings.payout_clearing_accounts)


async def documents_for(db: asyncpg.Pool, order_ids: Iterable[int]) -> Mapping[int, OrderDocument]:
    """The orders' documents (the sales-documents read model) with the gateways that paid them
    (the payment-gateways read model): what the matching and the journal decide on."""
    wanted = set(order_ids)
    documents = await sales_documents.documents_for(db, wanted)
    gateways = await payouts_read_model.gateways_for(db, documents)
    return {i: replace(d, gateways=gateways[i]) if i in gateways else d for i, d in documents.items()}


class PayoutDecider:
    """The handler, without Kafka: a batch of messages -> one save (tests call it directly)."""

    def __init__(self, payouts: PayoutApplication, documents: DocumentLookup, policy: PayoutPolicy,
                 unmatched: UnmatchedLookup | None = None) -> None:
        self.payouts = payouts
        self.documents = documents
        self.policy = policy
        self.unmatched = unmatched
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

    async def decide(self, facts: list[PayoutFact]) -> None:
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
        decider = PayoutDecider(payouts, lambda ids: documents_for(pool, ids), policy_of(settings),
                                lambda: payouts_read_model.payouts_with_unmatched(pool))
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
