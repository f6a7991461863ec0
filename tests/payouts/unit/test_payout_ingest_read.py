"""Given-when-then on a read the payout ingest publishes as it reads it (services/payouts/ingest.py
PublishedRead), with a publish that stands for Kafka's acknowledgement (a future per send):
pages go out as soon as they are full, one send in flight at a time and in order; the end waits
for every page; a failed send stops the read before any later page or the end goes out, and a
send in flight is waited for, never cancelled. (Through the Shopify sandbox, the Admin client and
the real Kafka: tests/payouts/integration/test_payout_ingest_pipelined.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.shopify.payouts import ShopifyBalanceTransaction, ShopifyPayout
from domain.payouts.checks import transactions_digest
from services.payouts.ingest import PublishedRead
from services.platform.kafka import Outgoing

PAYOUT_ID = 71_234
PAYOUT = ShopifyPayout(id=PAYOUT_ID, gid=f"gid://shopify/ShopifyPaymentsPayout/{PAYOUT_ID}", status="PAID",
                       issued_at=datetime(2026, 11, 28, tzinfo=UTC), net={"amount": Decimal("1.00"), "currency": "USD"})


def charges(first: int, count: int) -> list[ShopifyBalanceTransaction]:
    return [ShopifyBalanceTransaction(
        id=n, gid=f"gid://shopify/ShopifyPaymentsBalanceTransaction/{n}", type="CHARGE",
        amount={"amount": Decimal("1.00"), "currency": "USD"}, fee={"amount": Decimal("0.00"), "currency": "USD"},
        net={"amount": Decimal("1.00"), "currency": "USD"}, source_type="CHARGE", source_id=n + 1_000_000,
        order_id=n + 2_000_000, transaction_date=datetime(2026, 11, 27, tzinfo=UTC), payout_id=PAYOUT_ID,
        payout_status="PAID") for n in range(first, first + count)]


class Kafka:
    """Each publish is a send Kafka acknowledges when the test says (`ack`), or refuses (`refuse`)."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, messages: list[Outgoing]) -> int:
        self.sent.append([f"{type(m.message).__name__}:{getattr(m.message, 'page', '-')}" for m in messages])
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await ack
        finally:
            self.in_flight -= 1
        return len(messages)

    async def ack(self, n: int) -> None:
        await settle()
        self.acks[n].set_result(None)
        await settle()

    async def refuse(self, n: int) -> None:
        await settle()
        self.acks[n].set_exception(ConnectionError("Kafka refused the send"))
        await settle()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_given_queries_of_160_when_added_then_each_full_page_is_sent_at_once_and_one_at_a_time():
    kafka = Kafka()
    read = PublishedRead(PAYOUT, kafka.publish)

    await read.add(charges(1, 160))
    await settle()
    assert kafka.sent == []  # 160 read: not a page yet
    await read.add(charges(161, 160))
    await settle()
    assert kafka.sent == [["ShopifyPayoutTransactionsRead:1"]]  # 320 read: page 1 (250) out at once

    adding = asyncio.ensure_future(read.add(charges(321, 200)))  # 520 read: page 2 full, page 1 not acknowledged
    await settle()
    assert kafka.sent == [["ShopifyPayoutTransactionsRead:1"]] and not adding.done()
    await kafka.ack(0)
    await adding
    assert kafka.sent[1] == ["ShopifyPayoutTransactionsRead:2"]

    ending = asyncio.ensure_future(read.end())
    await kafka.ack(1)
    await settle()
    assert kafka.sent[2] == ["ShopifyPayoutTransactionsRead:3", "ShopifyPayoutObserved:-"]
    assert not ending.done()  # the end returns once Kafka acknowledged it
    await kafka.ack(2)
    observed = await ending

    assert kafka.most_in_flight == 1
    assert (observed.transaction_count, observed.pages) == (520, 3)
    assert observed.transactions_digest == transactions_digest(range(1, 521))


async def test_given_a_page_kafka_refuses_then_no_later_page_nor_the_end_is_sent_and_the_error_is_raised():
    kafka = Kafka()
    read = PublishedRead(PAYOUT, kafka.publish)
    await read.add(charges(1, 250))
    await kafka.refuse(0)

    with pytest.raises(ConnectionError, match="refused"):
        await read.add(charges(251, 250))
    await read.settled()

    assert kafka.sent == [["ShopifyPayoutTransactionsRead:1"]]


async def test_given_a_read_that_fails_with_a_page_in_flight_then_the_send_is_waited_for_not_cancelled():
    kafka = Kafka()
    read = PublishedRead(PAYOUT, kafka.publish)
    await read.add(charges(1, 250))  # page 1 in flight; then Shopify fails the next query

    settling = asyncio.ensure_future(read.settled())
    await settle()
    assert not settling.done()
    await kafka.ack(0)
    await settling

    assert read.sending is not None and read.sending.done() and not read.sending.cancelled()
    assert kafka.sent == [["ShopifyPayoutTransactionsRead:1"]]
