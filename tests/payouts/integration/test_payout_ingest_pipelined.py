"""The payout ingest publishes a read as it reads it (services/payouts/ingest.py PublishedRead),
through the real pieces: a Shopify sandbox of its own over HTTP (its cost throttle, enterprise
plan) read with the Admin client, the tests' own Kafka (a topic of its own), a throwaway
PostgreSQL database (the ingest's table, the migrations).

- a payout of 600 transactions (4 queries of 160): page 1 (250) is sent once the second query
  is answered, before the third is; page 2 after the fourth; then the last 100 and the payout, and
  only then the payout's row (`published_at`); on Kafka in order, one read id, the payout's count
  and digest;
- the ingest fails mid-read (a query refused after page 1 was published): no row, page 1 of that
  read on Kafka without its end; the next poll reads the payout again whole; the payout decider,
  given every message as Kafka has them (each its own batch), requests one journal for the whole
  read and none of the abandoned read's transactions twice."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr, TypeAdapter

from contracts.shopify.payouts import (
    ShopifyPayoutFact,
    ShopifyPayoutObserved,
    ShopifyPayoutTransactionsRead,
)
from contracts.topics import SHOPIFY_PAYOUTS
from domain.payouts.application import PayoutApplication
from domain.payouts.checks import transactions_digest
from domain.payouts.domainmodel import PayoutPolicy, PayoutState
from sandboxes.shopify.app import create_app as create_shopify
from services.payouts.decider import PayoutDecider
from services.payouts.ingest import PayoutIngest
from services.platform.kafka import Delivery, Outgoing, make_broker, publish_all
from services.shopify.admin import ShopifyAdmin
from tests.inventory.integration.support import end_offsets, published_since
from tests.support import scratch_database, throwaway_topics

pytestmark = pytest.mark.integration
D = Decimal
TOKEN = "payout-ingest-test-token"
FACTS = TypeAdapter(ShopifyPayoutFact)


@pytest.fixture(scope="module")
async def scratch_pool(database_url):
    async with scratch_database(database_url, "payout_ingest") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield pool
        await pool.close()


@pytest.fixture(scope="module")
def shopify_url(serve_app):
    with serve_app(create_shopify("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN,
                                  plan="enterprise"), "the Shopify sandbox") as url:
        yield url


class CountingAdmin:
    """The real Admin client, its transaction queries counted as Shopify answers them; `fail_at`
    makes that query raise (the ingest stopped mid-read)."""

    def __init__(self, admin: ShopifyAdmin) -> None:
        self.admin = admin
        self.sent = 0
        self.queries = 0  # answered
        self.fail_at: int | None = None

    async def execute(self, operation: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        if operation != "PayoutBalanceTransactions":
            return await self.admin.execute(operation, variables, **kwargs)
        self.sent += 1
        if self.sent == self.fail_at:
            raise RuntimeError("the ingest stopped mid-read")
        answer = await self.admin.execute(operation, variables, **kwargs)
        self.queries += 1
        return answer


@pytest.fixture
async def ingest(settings, shopify_url, scratch_pool, kafka_bootstrap):
    """The ingest over the sandbox, publishing to a topic of its own; what it published, each
    publish with the transaction queries Shopify had answered when it was sent."""
    flow_settings = settings.model_copy(update={"shopify_admin_url": shopify_url,
                                                "shopify_access_token": SecretStr(TOKEN),
                                                "kafka_bootstrap": kafka_bootstrap})
    admin = ShopifyAdmin(flow_settings)
    counting = CountingAdmin(admin)
    broker = make_broker(flow_settings, "payout-ingest-test")
    async with throwaway_topics(kafka_bootstrap) as make:
        topic = await make("payouts", partitions=1)
        publishes: list[tuple[int, list[str]]] = []

        async def publish(messages: list[Outgoing]) -> int:
            publishes.append((counting.queries, [type(m.message).__name__ for m in messages]))
            return await publish_all(broker, [Outgoing(topic, m.key, m.message) for m in messages])

        await broker.start()
        made = PayoutIngest(flow_settings, counting, scratch_pool, publish)  # type: ignore[arg-type]
        made.counting, made.publishes, made.topic = counting, publishes, topic  # type: ignore[attr-defined]
        try:
            yield made
        finally:
            await broker.stop()
            await admin.aclose()


async def seed(shopify_url: str, payout_id: int, charges: int) -> Decimal:
    """A paid payout of `charges` charges of 10.80 (fee 0.35) and its transfer; its net."""
    net = D("10.45") * charges
    transactions = [{"id": payout_id + n, "type": "charge", "test": False, "payout_id": payout_id,
                     "payout_status": "paid", "currency": "USD", "amount": "10.80", "fee": "0.35", "net": "10.45",
                     "source_id": payout_id + 10_000 + n, "source_type": "charge",
                     "source_order_id": payout_id + 20_000 + n, "source_order_transaction_id": None,
                     "processed_at": "2026-11-27T10:00:00-05:00"} for n in range(1, charges + 1)]
    transactions.append({"id": payout_id + charges + 1, "type": "payout", "test": False, "payout_id": payout_id,
                         "payout_status": "paid", "currency": "USD", "amount": str(-net), "fee": "0.00",
                         "net": str(-net), "source_id": payout_id, "source_type": "payout", "source_order_id": None,
                         "source_order_transaction_id": None, "processed_at": "2026-11-27T10:00:00-05:00"})
    async with httpx.AsyncClient(base_url=shopify_url) as http:
        response = await http.post("/_sandbox/payouts", json={"payouts": [{"payout": {
            "id": payout_id, "status": "paid", "date": "2026-11-28", "currency": "USD", "amount": str(net)},
            "transactions": transactions}]})
        assert response.status_code == 200, response.text
    return net


async def test_given_a_payout_of_600_transactions_when_read_then_each_page_is_published_as_soon_as_it_is_read(
        ingest, shopify_url, scratch_pool, kafka_bootstrap):
    payout_id = time.time_ns() // 1000
    await seed(shopify_url, payout_id, 599)
    mark = await end_offsets(kafka_bootstrap, ingest.topic, partitions=1)

    assert (await ingest.poll(payout_id=payout_id)).payouts_read == [payout_id]

    # 4 queries of 160: page 1 (250) sent once the 2nd is answered (before the 3rd is), page 2 after
    # the 4th, then the last 100 and the payout
    assert ingest.publishes == [
        (2, ["ShopifyPayoutTransactionsRead"]), (4, ["ShopifyPayoutTransactionsRead"]),
        (4, ["ShopifyPayoutTransactionsRead", "ShopifyPayoutObserved"])]
    facts = [FACTS.validate_json(r.value) for r in await published_since(kafka_bootstrap, mark)]
    *pages, end = facts
    assert [(type(p), p.page, len(p.transactions)) for p in pages] == [
        (ShopifyPayoutTransactionsRead, 1, 250), (ShopifyPayoutTransactionsRead, 2, 250),
        (ShopifyPayoutTransactionsRead, 3, 100)]
    assert isinstance(end, ShopifyPayoutObserved) and end.pages == 3 and end.transaction_count == 600
    assert {f.read_id for f in facts} == {end.read_id}
    ids = [t.id for p in pages for t in p.transactions]
    assert sorted(ids) == list(range(payout_id + 1, payout_id + 601))
    assert end.transactions_digest == transactions_digest(ids)
    assert max(p.read_at for p in pages) <= end.observed_at
    row = await scratch_pool.fetchrow("SELECT transaction_count, read_id, published_at FROM ingest.shopify_payouts "
                                      "WHERE payout_id = $1", payout_id)
    assert (row["transaction_count"], row["read_id"]) == (600, end.read_id)
    assert row["published_at"] >= end.observed_at  # recorded once Kafka acknowledged the whole read


async def test_given_the_ingest_failing_mid_read_when_read_again_then_one_journal_without_the_abandoned_pages_twice(
        ingest, shopify_url, scratch_pool, kafka_bootstrap):
    payout_id = time.time_ns() // 1000
    net = await seed(shopify_url, payout_id, 599)
    mark = await end_offsets(kafka_bootstrap, ingest.topic, partitions=1)
    ingest.counting.fail_at = 3

    with pytest.raises(RuntimeError, match="mid-read"):
        await ingest.poll(payout_id=payout_id)
    assert await scratch_pool.fetchval("SELECT count(*) FROM ingest.shopify_payouts WHERE payout_id = $1",
                                       payout_id) == 0
    ingest.counting.fail_at = None
    assert (await ingest.poll(payout_id=payout_id)).payouts_read == [payout_id]

    facts = [FACTS.validate_json(r.value) for r in await published_since(kafka_bootstrap, mark)]
    abandoned, *read = facts
    assert isinstance(abandoned, ShopifyPayoutTransactionsRead) and abandoned.page == 1
    assert [type(f).__name__ for f in read] == ["ShopifyPayoutTransactionsRead"] * 3 + ["ShopifyPayoutObserved"]
    assert abandoned.read_id != read[0].read_id == read[-1].read_id

    payouts = PayoutApplication()
    try:
        async def no_documents(ids: Any) -> dict:
            return {}

        decider = PayoutDecider(payouts, no_documents, PayoutPolicy(documents_grace=timedelta(0)))
        for offset, fact in enumerate(facts):  # each as its own batch, as they arrive
            await decider.handle([Delivery(fact, SHOPIFY_PAYOUTS.name, 0, offset, None)])
        found = payouts.find_payout(payout_id)
        assert found.state is PayoutState.JOURNAL_REQUESTED and found.commands_issued == 1
        assert len(found.current_transactions()) == 600
        lines = {line.category: (line.debit, line.credit) for line in found.command.journal.lines}
        # orders unknown: the charges on the clearing account, every one once
        assert lines == {"bank": (net, D("0.00")), "unmatched_charges": (D("0.00"), D("10.80") * 599),
                         "processing_fees": (D("0.35") * 599, D("0.00"))}
    finally:
        payouts.close()


async def test_given_a_re_read_failing_midway_then_the_next_scheduled_poll_reads_the_payout_again_whole(
        ingest, shopify_url, scratch_pool, kafka_bootstrap):
    """An operator's re-read of a payout already published, failing after its first page went out,
    leaves a read the Payout waits on: the scheduled poll (which skips a payout whose status it
    published) must read it again, or it waits until someone asks."""
    payout_id = time.time_ns() // 1000
    await seed(shopify_url, payout_id, 599)
    assert (await ingest.poll(payout_id=payout_id)).payouts_read == [payout_id]
    ingest.counting.fail_at = ingest.counting.sent + 3  # the re-read's third query: after its page 1 went out
    mark = await end_offsets(kafka_bootstrap, ingest.topic, partitions=1)

    with pytest.raises(RuntimeError, match="mid-read"):
        await ingest.poll(payout_id=payout_id)
    ingest.counting.fail_at = None
    scheduled = await ingest.poll()

    assert payout_id in scheduled.payouts_read
    facts = [FACTS.validate_json(r.value) for r in await published_since(kafka_bootstrap, mark)]
    ends = [f for f in facts if isinstance(f, ShopifyPayoutObserved) and f.payout.id == payout_id]
    assert len(ends) == 1 and ends[0].transaction_count == 600
    assert await scratch_pool.fetchval("SELECT status FROM ingest.shopify_payouts WHERE payout_id = $1",
                                       payout_id) == "PAID"
