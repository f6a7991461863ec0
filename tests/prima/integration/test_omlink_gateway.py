"""The Prima gateway with its OM link adapter (PRIMA_ADAPTER=omlink), over HTTP against the Prima
sandbox's OM link served in-process on a scratch database, parking in a scratch database: a paid
order becomes one NewOrder with its payment; an answer lost is adopted through OrderStatus; an
order sent while Prima is down is parked, then re-driven by itself into one order; the commands
OM link has no request for are refused visibly and send nothing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import httpx
import pytest
from lxml import etree

from contracts.prima.credit_memos import CreateCreditMemo, CreditMemoDraft
from contracts.prima.sales_orders import (
    AmendSalesOrder,
    PrimaSalesOrderChangeRefused,
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
    PrimaSalesOrderRejected,
    SalesOrderLine,
    SalesOrderPayment,
)
from services.platform.kafka import Outgoing
from services.platform.parking import ParkedCommands, RedriveSchedule
from services.prima.gateway import (
    NO_CHANGE_REQUEST,
    NOT_SUPPORTED,
    OmLinkPort,
    PrimaGateway,
)
from services.prima.omlink.adapter import OmLinkAdapter
from tests.prima.omlink_orders import (
    SERVICE,
    config,
    faults,
    omlink_posts,
    paid_order,
    sales_orders,
)
from tests.support import scratch_database

pytestmark = pytest.mark.integration
order_ids = itertools.count(7_400_001)


@pytest.fixture(scope="module")
async def scratch_pool(database_url):
    """gateway.parked_commands of a migrated database of this module's own: never the stack's,
    whose Prima gateway re-drives every parked command it finds."""
    async with scratch_database(database_url, "omlink_parking") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        yield pool
        await pool.close()


@pytest.fixture
def published() -> list[Outgoing]:
    return []


@pytest.fixture
async def gateway(settings, sandbox_url, scratch_pool, published):
    s = settings.model_copy(update={"parked_redrive_initial_seconds": 0.2, "parked_redrive_max_seconds": 0.5,
                                    "prima_probe_interval_seconds": 0.1})

    async def publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}")) as adapter:
        yield PrimaGateway(s, OmLinkPort(adapter), ParkedCommands(scratch_pool, RedriveSchedule.from_settings(s)),
                           publish)


def with_card_payment(command):
    draft = command.sales_order
    payment = SalesOrderPayment(gateway="shopify_payments", amount=draft.totals.total, transaction_id="5501")
    return command.model_copy(update={"sales_order": draft.model_copy(update={"payments": (payment,)})})


async def new_order(sandbox: httpx.AsyncClient, number: str) -> etree._Element:
    stored = await sandbox.get(f"/_sandbox/omlink/orders/{number}")
    assert stored.status_code == 200, stored.text
    return etree.fromstring(stored.json()["request"].encode("ISO-8859-1")).find("Data")


async def test_given_a_paid_order_through_the_port_then_one_new_order_with_the_payment_on_it(sandbox, gateway):
    command = with_card_payment(paid_order(next(order_ids)))

    result = await gateway.execute(command)

    number = f"SHOP{command.shopify_order_id}"
    assert isinstance(result.outcome, PrimaSalesOrderCreated) and not result.parked
    assert (result.outcome.sales_order_number, result.outcome.adopted) == (number, False)
    data = await new_order(sandbox, number)
    payment = data.find("OrderPaymentData")
    assert (payment.get("PayMethod"), payment.get("SubPayMethod"), payment.get("TranAmount"),
            payment.get("TransactionID"), payment.get("PayProvider")) == (
        "CARD", "SHOPIFY", str(command.sales_order.totals.total), "5501", "shopify_payments")
    assert len(await sales_orders(sandbox, number)) == 1


async def test_given_the_answer_is_lost_then_the_gateway_adopts_the_order_prima_holds_and_sends_no_second(
        sandbox, gateway):
    command = with_card_payment(paid_order(next(order_ids)))
    await faults(sandbox, commit_then_drop_next=1, body_contains="NewOrder")  # it commits; its answer never arrives

    result = await gateway.execute(command)

    number = f"SHOP{command.shopify_order_id}"
    assert isinstance(result.outcome, PrimaSalesOrderCreated)
    assert (result.outcome.sales_order_number, result.outcome.adopted) == (number, True)
    assert len(await sales_orders(sandbox, number)) == 1


async def test_given_prima_down_then_parked_and_once_back_re_driven_by_itself_into_one_order(
        sandbox, gateway, published, scratch_pool):
    command = with_card_payment(paid_order(next(order_ids)))
    await faults(sandbox, fail_next=1000, fail_status=503)

    result = await gateway.execute(command)
    assert isinstance(result.outcome, PrimaSalesOrderParked) and result.parked
    assert await scratch_pool.fetchval("SELECT count(*) FROM gateway.parked_commands WHERE command_id = $1 "
                                       "AND resolved_at IS NULL", command.command_id) == 1

    await sandbox.delete("/_sandbox/faults")
    stop = asyncio.Event()
    redrives = asyncio.create_task(gateway.redriver().run(stop))
    try:
        async with asyncio.timeout(15):
            while not any(isinstance(o.message, PrimaSalesOrderCreated) and o.message.command_id == command.command_id
                          for o in published):
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await redrives
    number = f"SHOP{command.shopify_order_id}"
    assert len(await sales_orders(sandbox, number)) == 1


async def test_given_an_amendment_om_link_has_no_request_for_then_held_for_a_person_and_nothing_sent(
        sandbox, gateway):
    created = paid_order(next(order_ids))
    amend = AmendSalesOrder(command_id=created.command_id, idempotency_key="amend-1",
                            shopify_order_id=created.shopify_order_id, sales_order_number="SHOP1",
                            issued_at=created.issued_at, sales_order=created.sales_order,
                            amendable_statuses=("open",), changes=("a line's units",))
    before = await omlink_posts(sandbox)

    result = await gateway.execute(amend)

    assert isinstance(result.outcome, PrimaSalesOrderChangeRefused) and not result.parked
    assert result.outcome.status == NO_CHANGE_REQUEST  # past every cut-off: the Order holds the change
    assert "amend the sales order in Prima by hand, then shopify-prima orders resolve" in result.outcome.reason
    assert await omlink_posts(sandbox) == before


async def test_given_a_credit_memo_om_link_has_no_request_for_then_refused_visibly_and_nothing_sent(sandbox, gateway):
    memo = CreateCreditMemo(
        command_id=uuid.uuid4(), idempotency_key="memo-1", shopify_order_id=7_400_999, refund_id=1,
        issued_at=datetime.now(UTC), credit_memo=CreditMemoDraft.model_validate({
            "sales_order_number": "SHOP7400999", "external_reference": "1", "currency": "EUR",
            "taxes_included": True, "memo_date": datetime.now(UTC).isoformat(),
            "lines": [{"line_number": 1, "kind": "account", "account": "4000", "description": "Goodwill",
                       "quantity": 1, "amount": "5.00", "tax_amount": "0.00"}],
            "totals": {"lines": "5.00", "shipping": "0.00", "adjustments": "0.00", "tax": "0.00",
                       "total": "5.00"}}))
    before = await omlink_posts(sandbox)

    result = await gateway.execute(memo)

    assert isinstance(result.outcome, PrimaSalesOrderRejected) and not result.parked
    assert (result.outcome.code, result.outcome.operation) == (NOT_SUPPORTED, "create_credit_memo")
    assert "raise the credit memo in Prima by hand" in result.outcome.reason
    assert await omlink_posts(sandbox) == before


async def test_given_a_sku_the_matrix_cannot_map_then_rejected_naming_it_before_anything_is_sent(sandbox, gateway):
    line = SalesOrderLine(line_number=1, item_id="ITM-X", sku="NOSEPARATOR", description="Odd", quantity=1,
                          unit_price=Decimal("10.00"), discount_amount=Decimal("0.00"), tax_amount=Decimal("0.00"),
                          net_amount=Decimal("10.00"))
    command = paid_order(next(order_ids), lines=(line,))
    before = await omlink_posts(sandbox)

    result = await gateway.execute(command)

    assert isinstance(result.outcome, PrimaSalesOrderRejected)
    assert result.outcome.code == "unmapped_sku" and "NOSEPARATOR" in result.outcome.reason
    assert await omlink_posts(sandbox) == before
