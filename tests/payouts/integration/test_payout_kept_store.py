"""The Payouts the payout application keeps between batches, on the real PostgreSQL event store
(a throwaway database; the event tables created as `services.setup` creates them): a payout read
in many pages reads back no earlier page; two deciders on one store (a rebalance) see each
other's events; a save refused as a version conflict drops the kept Payout and the batch
delivered again decides from the store; the journal is the one a Payout loaded from the store
for every batch decides."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from services.platform.settings import Settings
from tests.payouts.builders import NOW, D, document, parts, payout, read, transfer, tx
from tests.support import scratch_database

pytestmark = pytest.mark.integration
POLICY = PayoutPolicy()
ORDERS = {n: document(n, parts("9.00", taxes=(("VAT", "0.20", "1.80"),)), sales_order=f"SO-{n:06d}")
          for n in range(1, 1001)}


def documents_for(ids: set[int]):
    return {i: ORDERS[i] for i in ids if i in ORDERS}


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    async with scratch_database(database_url, "payouts_kept", migrate=False) as url:
        yield url


@pytest.fixture
def store(scratch_url):
    """A fresh event-store schema; `make(kept)` opens a PayoutApplication on it (closed after)."""
    schema = f"es_payouts_{uuid.uuid4().hex[:8]}"
    env = Settings(database_url=scratch_url, event_store_schema=schema).eventsourcing_env(create_tables=True)
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    opened: list[PayoutApplication] = []

    def make(kept: int = 8) -> PayoutApplication:
        app = PayoutApplication(env=env, kept=kept)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()


def a_payout(payout_id: int, charges: int = 1000):
    transactions = [tx("CHARGE", "10.80", "0.35", order=n) for n in range(1, charges + 1)]
    header = payout(str(D("10.45") * charges), payout_id=payout_id)
    return header, [*transactions, transfer(header)]


def lines(app: PayoutApplication, payout_id: int) -> list[tuple]:
    return [(x.category, x.account, x.debit, x.credit) for x in app.find_payout(payout_id).command.journal.lines]


def test_a_payout_read_in_many_batches_reads_back_no_earlier_page_and_decides_as_one_loaded_each_time(store):
    kept, loading = store(), store(kept=0)
    for app, payout_id in ((kept, 800_001), (loading, 800_002)):
        header, transactions = a_payout(payout_id)
        for fact in read(header, transactions, page_size=100):  # 11 pages, then the payout: one batch each
            app.handle([fact], documents_for, POLICY, NOW)

    assert kept.load_stats.events == 0  # each batch found its Payout kept, up to date (one query, no event)
    assert kept.load_stats.queries == 12
    assert loading.load_stats.events == sum(range(2, 13))  # batch n read back the n events stored before it
    assert lines(kept, 800_001) == lines(loading, 800_002) == [
        ("bank", "1010", D("10450.00"), D("0.00")), ("sales", "4000", D("0.00"), D("9000.00")),
        ("tax", "2200", D("0.00"), D("1800.00")), ("processing_fees", "6100", D("350.00"), D("0.00"))]


def test_two_deciders_on_one_store_see_each_others_events_and_a_conflict_is_decided_again_from_the_store(store):
    first, second = store(), store()  # the same payout's partition moved between two deciders, and back
    header, transactions = a_payout(800_003, charges=300)
    *pages, observed = read(header, transactions, page_size=100)
    first.handle(pages[:2], documents_for, POLICY, NOW)
    second.handle(pages[2:], documents_for, POLICY, NOW)  # loaded from the store: pages 1-2 read back

    def second_writes_meanwhile(ids: set[int]):
        second.handle([observed], documents_for, POLICY, NOW)  # the same end of read, decided by the other
        return documents_for(ids)

    with pytest.raises(IntegrityError):  # first's save comes second: refused, nothing of it stored
        first.handle([observed], second_writes_meanwhile, POLICY, NOW)
    assert Payout.create_id(800_003) not in first.kept

    again = first.handle([observed], documents_for, POLICY, NOW)  # the consumer's retry
    assert again.saved == 0 and again.journals_requested == []  # decided already, by the other
    found = first.find_payout(800_003)
    assert found.state is PayoutState.JOURNAL_REQUESTED and found.commands_issued == 1
    assert len(found.read_ids) == 301  # both deciders' pages
    assert [type(e).__name__ for e in first.events.get(found.id)] == [
        "PayoutOpened", "TransactionsRead", "TransactionsRead", "TransactionsRead", "TransactionsRead",
        "PayoutObserved", "TransactionsMatched", "JournalRequested"]
