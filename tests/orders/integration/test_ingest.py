"""The webhook ingest (services/shopify/ingest.py) in-process, against the real PostgreSQL (a
scratch database, its tables from the migrations) and Kafka (throwaway topics shaped like the
real ones): the happy path, duplicates, and what it refuses before storing anything.

Quarantine, re-drive and the sweeper: test_ingest_quarantine.py; outages: test_ingest_outages.py;
limits and hostile input: test_ingest_limits.py."""

from __future__ import annotations

import uuid

import pytest

from contracts.shopify.orders import ShopifyOrderReceived
from contracts.topics import order_key
from sandboxes.shopify.webhooks import sign
from services.shopify.ingest import verify_hmac
from tests.orders.integration.test_ingest_support import (
    about,
    new_order_id,
    order_body,
    read_topic,
    running,
    signed,
    stored_row,
)

pytestmark = pytest.mark.integration




def test_verify_hmac_accepts_current_and_previous_secret_only():
    body = b'{"id": 1}'
    assert verify_hmac(body, sign(body, "new"), ["new", "old"])
    assert verify_hmac(body, sign(body, "old"), ["new", "old"])
    assert not verify_hmac(body, sign(body, "other"), ["new", "old"])
    assert not verify_hmac(body + b" ", sign(body, "new"), ["new"])
    assert not verify_hmac(body, None, ["new"])


@pytest.fixture
async def ingest(ingest_env):
    async with running(ingest_env.app()) as client:
        yield client


async def test_signed_delivery_is_kept_and_published_once_and_duplicates_are_recognised(ingest, ingest_env):
    order_id = new_order_id()
    body = order_body(order_id)
    webhook_id = str(uuid.uuid4())
    for secret, expected in (("previous", "accepted"), ("current", "duplicate")):
        response = await ingest.post("/webhooks/shopify", content=body,
                                     headers=signed(body, secret=secret, webhook_id=webhook_id))
        assert response.status_code == 200 and response.json()["status"] == expected
    published = await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, about(webhook_id), settle=1.0)
    assert len(published) == 1
    fact = ShopifyOrderReceived.model_validate_json(published[0].value)
    assert (fact.webhook_id, fact.order.id, fact.topic) == (webhook_id, order_id, "orders/paid")
    assert published[0].key == order_key(order_id)
    headers = published[0].headers  # the platform's wire format (services/platform/kafka.py)
    assert (headers["message_type"], headers["content-type"], headers["correlation_id"]) == (
        "ShopifyOrderReceived", "application/json", webhook_id)
    row = await stored_row(ingest_env.database_url, webhook_id)
    assert bytes(row["body"]) == body  # the raw payload, byte for byte, for reprocessing
    assert row["deliveries"] == 2 and row["published_at"] is not None and row["quarantined_at"] is None
    assert fact.raw_payload_id == row["id"]


@pytest.mark.parametrize(
    ("topic", "secret", "webhook_id", "status", "code"),
    [
        ("orders/paid", "wrong", "fresh", 401, "bad_signature"),
        ("products/update", "current", "fresh", 400, "unsupported_topic"),
        ("orders/paid", "current", "", 400, "missing_webhook_id"),
    ],
)
async def test_a_delivery_that_is_not_ours_gets_a_clear_error_and_changes_nothing(
        ingest, ingest_env, topic, secret, webhook_id, status, code):
    body = order_body()
    headers = signed(body, topic, secret=secret)
    if webhook_id == "":
        del headers["X-Shopify-Webhook-Id"]
    response = await ingest.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if webhook_id:
        assert await stored_row(ingest_env.database_url, headers["X-Shopify-Webhook-Id"]) is None


async def test_metrics_count_rejections_by_reason(ingest):
    await ingest.post("/webhooks/shopify", content=b"{}", headers=signed(b"{}", secret="wrong"))
    text = (await ingest.get("/metrics")).text
    assert 'shopify_prima_webhooks_rejected_total{reason="bad_signature"}' in text
