"""Issue 8, defect 8: every validly signed delivery is kept. A body that does not normalize is
stored quarantined and raised as an exception (a DeadLetter of the ingest's group, shown by the
dead-letters read model and the ops API), and its re-drive publishes it once the normalizer takes
it. A body stored but never published (the publish failed, or the process died in between) is
published by the sweeper even if Shopify never sends it again.

Before the fix: such a body was answered 400 before anything was stored (gone once Shopify stops
retrying), some even 500 (a non-numeric amount, JSON nested 10,000 levels deep), there was no
re-drive, and nothing published a stored row whose publish had failed."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from contracts.platform import DeadLetter, DeadLetterRedriven
from contracts.shopify.orders import ShopifyOrderReceived
from projections.dead_letters import DeadLettersProjection
from services.ops import api as ops_api
from services.shopify import ingest as ingest_module
from services.shopify.ingest import DEAD_LETTER_BODY_LIMIT, Unparseable
from tests.orders.integration.test_ingest_support import (
    about,
    ingest_of,
    new_order_id,
    order_body,
    read_topic,
    redriven,
    running,
    signed,
    stored_row,
)

pytestmark = pytest.mark.integration



ORDER = json.loads(order_body(1))
CUSTOMER_EMAIL = "jane.doe@example.com"


def _with(**changes) -> bytes:
    return json.dumps({**ORDER, "id": new_order_id(), **changes}).encode()


def _amount(value: str) -> bytes:
    return _with(total_price_set={"shop_money": {"amount": value, "currency_code": ORDER["currency"]}})


def _huge_currency_with_email() -> bytes:
    """A value of 1 MB (with a customer's e-mail in it) that the normalizer's error used to echo."""
    line = {**ORDER["line_items"][0], "discount_allocations": [
        {"amount_set": {"shop_money": {"amount": "1.00", "currency_code": CUSTOMER_EMAIL + "x" * 1_000_000}}}]}
    return _with(line_items=[line], email=CUSTOMER_EMAIL)


UNPARSEABLE = {
    "not JSON": (lambda: b"{not json", "malformed_json"),
    "not an order": (lambda: b'{"id": 1, "currency": "USD"}', "invalid_order"),
    "a non-numeric amount (was 500)": (lambda: _amount("abc"), "invalid_order"),
    "JSON nested 10,000 levels (was 500)": (lambda: b"[" * 10_000 + b"]" * 10_000, "malformed_json"),
    "a 1 MB value with an e-mail": (_huge_currency_with_email, "invalid_order"),
}


async def _dead_letters(ingest_env, webhook_id: str, expect: int = 1) -> list[DeadLetter]:
    found = await read_topic(ingest_env.kafka_bootstrap, ingest_env.dead_letters, about(webhook_id), expect=expect)
    return [DeadLetter.model_validate_json(m.value) for m in found]


async def _apply_to_read_model(database_url: str, messages) -> None:
    """What the projector does with the dead-letter topic (projections/dead_letters.py)."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await DeadLettersProjection(None).apply(conn, messages)  # type: ignore[arg-type]
    finally:
        await conn.close()


@pytest.mark.parametrize("case", list(UNPARSEABLE))
async def test_signed_body_that_does_not_normalize_is_kept_quarantined_and_raised_as_an_exception(
        ingest_env, case, caplog):
    make_body, code = UNPARSEABLE[case]
    body = make_body()
    headers = signed(body)
    webhook_id = headers["X-Shopify-Webhook-Id"]
    app = ingest_env.app()
    async with running(app) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
        again = await client.post("/webhooks/shopify", content=body, headers=headers)  # Shopify's retry

    # 200: Shopify must not retry what will never parse; short, and no echo of the input
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"status": "quarantined", "webhook_id": webhook_id, "reason": code}
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    row = await stored_row(ingest_env.database_url, webhook_id)
    assert row is not None and bytes(row["body"]) == body  # kept byte for byte
    assert row["quarantined_at"] is not None and row["quarantine_reason"].startswith(code)
    assert row["published_at"] is not None  # its exception record is on Kafka
    assert len(row["quarantine_reason"]) < 400 and CUSTOMER_EMAIL not in row["quarantine_reason"]

    (letter,) = await _dead_letters(ingest_env, webhook_id)
    assert (letter.dead_letter_id, letter.group, letter.reason) == (row["id"], ingest_of(app).group, "undecodable")
    assert letter.topic == "shopify-webhook:orders/paid"
    if len(body) <= DEAD_LETTER_BODY_LIMIT:  # the raw body, for a person (the re-drive reads the table)
        assert base64.b64decode(letter.value_base64) == body
    else:  # too large for a Kafka message: kept in the table only, and the letter says so
        assert letter.value_base64 == "" and f"kept in ingest.raw_webhooks, id {row['id']}" in letter.error
    assert letter.headers["x-shopify-webhook-id"] == webhook_id and letter.headers["x-shopify-topic"] == "orders/paid"
    assert letter.error.startswith(code) and CUSTOMER_EMAIL not in letter.error
    assert not await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, about(webhook_id), timeout=1.0)
    assert not [r for r in caplog.records if CUSTOMER_EMAIL in r.getMessage()]  # issue 8: no e-mail in the logs

    await _apply_to_read_model(ingest_env.database_url, [letter])  # the exception an operator sees
    conn = await asyncpg.connect(ingest_env.database_url)
    try:
        listed = await conn.fetchrow("SELECT * FROM readmodel.dead_letters WHERE dead_letter_id = $1", row["id"])
    finally:
        await conn.close()
    assert (listed["status"], listed["consumer_group"], listed["reason"]) == ("open", letter.group, "undecodable")


@pytest.fixture
async def ops(ingest_env, ops_headers):
    """The ops API on the same scratch database, sending its commands to the ingest's operations topic."""
    app = ops_api.create_app(ingest_env.settings, operations_topic=ingest_env.operations)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops",
                                  headers=ops_headers) as client):
        yield client


async def test_redrive_of_a_quarantined_delivery_publishes_it_once_the_normalizer_takes_it(
        ingest_env, ops, monkeypatch):
    order_id = new_order_id()
    body = order_body(order_id)
    headers = signed(body)
    webhook_id = headers["X-Shopify-Webhook-Id"]

    def broken(_: bytes, topic: str = "orders/paid"):
        raise Unparseable("invalid_order", "the body is not an order: (the normalizer's bug of the day)")

    app = ingest_env.app()
    async with running(app) as client:
        with monkeypatch.context() as patch:  # a normalizer that refuses a good order ...
            patch.setattr(ingest_module, "normalize", broken)
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
        assert response.json()["status"] == "quarantined"
        (letter,) = await _dead_letters(ingest_env, webhook_id)
        await _apply_to_read_model(ingest_env.database_url, [letter])

        # ... fixed and deployed; the operator sees the exception and re-drives it, as the CLI does
        listed = (await ops.get("/dead-letters")).json()["dead_letters"]
        assert [d["consumer_group"] for d in listed if d["dead_letter_id"] == str(letter.dead_letter_id)] == [
            ingest_of(app).group]
        assert (await ops.post(f"/dead-letters/{letter.dead_letter_id}/redrive")).status_code == 202

        (published,) = await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, about(webhook_id), timeout=30)
        (done,) = await read_topic(ingest_env.kafka_bootstrap, ingest_env.dead_letters, redriven(letter.dead_letter_id))
    fact = ShopifyOrderReceived.model_validate_json(published.value)
    assert (fact.webhook_id, fact.order.id, fact.raw_payload_id) == (webhook_id, order_id, letter.dead_letter_id)
    row = await stored_row(ingest_env.database_url, webhook_id)
    assert row["quarantined_at"] is None and row["published_at"] is not None
    assert row["quarantine_reason"].startswith("invalid_order")  # kept as history

    await _apply_to_read_model(ingest_env.database_url, [DeadLetterRedriven.model_validate_json(done.value)])
    assert [d["status"] for d in (await ops.get("/dead-letters", params={"status": "all"})).json()["dead_letters"]
            if d["dead_letter_id"] == str(letter.dead_letter_id)] == ["resolved"]


async def _store_unpublished(database_url: str, bodies: list[bytes], age: timedelta = timedelta(hours=1)) -> list[str]:
    """Rows as an ingest leaves them when it dies (or Kafka fails) between storing and publishing."""
    webhook_ids = []
    conn = await asyncpg.connect(database_url)
    try:
        for body in bodies:
            webhook_id = str(uuid.uuid4())
            headers = {k.lower(): v for k, v in signed(body, webhook_id=webhook_id).items() if k.startswith("X-Shopify-")}
            await conn.execute(
                "INSERT INTO ingest.raw_webhooks (id, webhook_id, topic, shop_domain, event_id, headers, body, received_at) "
                "VALUES ($1, $2, 'orders/paid', $3, $4, $5::jsonb, $6, $7)",
                uuid.uuid4(), webhook_id, headers["x-shopify-shop-domain"], headers["x-shopify-event-id"],
                json.dumps(headers), body, datetime.now(UTC) - age)
            webhook_ids.append(webhook_id)
    finally:
        await conn.close()
    return webhook_ids


async def _published_rows(database_url: str, webhook_ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM ingest.raw_webhooks WHERE webhook_id = ANY($1::text[]) "
                                   "AND published_at IS NOT NULL", webhook_ids)
    finally:
        await conn.close()


async def test_sweeper_of_two_ingests_publishes_every_stored_unpublished_row_exactly_once(ingest_env):
    webhook_ids = await _store_unpublished(ingest_env.database_url, [order_body() for _ in range(60)])
    fast = {"ingest_sweep_interval_seconds": 0.05, "ingest_sweep_after_seconds": 1.0}
    async with running(ingest_env.app(**fast)), running(ingest_env.app(**fast)):
        for _ in range(200):
            if await _published_rows(ingest_env.database_url, webhook_ids) == len(webhook_ids):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a few more sweeps of both: nothing is published again
    assert await _published_rows(ingest_env.database_url, webhook_ids) == len(webhook_ids)
    wanted = set(webhook_ids)
    published = await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders,
                                 lambda m: m.headers.get("correlation_id") in wanted, expect=len(wanted), settle=1.0)
    per_webhook = [m.headers["correlation_id"] for m in published]
    assert sorted(per_webhook) == sorted(webhook_ids)  # each once: FOR UPDATE SKIP LOCKED


async def test_sweeper_quarantines_a_stored_row_that_does_not_normalize_and_raises_its_exception(ingest_env):
    (webhook_id,) = await _store_unpublished(ingest_env.database_url, [_amount("abc")])
    async with running(ingest_env.app(ingest_sweep_interval_seconds=0.05, ingest_sweep_after_seconds=1.0)):
        (letter,) = await _dead_letters(ingest_env, webhook_id)
    row = await stored_row(ingest_env.database_url, webhook_id)
    assert row["quarantined_at"] is not None and row["published_at"] is not None
    assert (letter.dead_letter_id, letter.reason) == (row["id"], "undecodable")
    assert not await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, about(webhook_id), timeout=1.0)


async def test_sweeper_leaves_recent_rows_to_the_request_that_is_publishing_them(ingest_env):
    (webhook_id,) = await _store_unpublished(ingest_env.database_url, [order_body()], age=timedelta(0))
    async with running(ingest_env.app(ingest_sweep_interval_seconds=0.05, ingest_sweep_after_seconds=30.0)):
        await asyncio.sleep(0.5)
    assert await _published_rows(ingest_env.database_url, [webhook_id]) == 0
