"""The webhook ingest (services/shopify/ingest.py) in-process, against the real PostgreSQL (its
tables from the migrations) and Kafka."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from contracts.shopify.orders import ShopifyOrderReceived
from contracts.topics import SHOPIFY_ORDERS, order_key
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import sign, webhook_headers
from services.platform import migrations
from services.shopify.ingest import create_app, verify_hmac

pytestmark = pytest.mark.integration
SAMPLE_SKUS = ["A", "B", "C"]


def test_verify_hmac_accepts_current_and_previous_secret_only():
    body = b'{"id": 1}'
    assert verify_hmac(body, sign(body, "new"), ["new", "old"])
    assert verify_hmac(body, sign(body, "old"), ["new", "old"])
    assert not verify_hmac(body, sign(body, "other"), ["new", "old"])
    assert not verify_hmac(body + b" ", sign(body, "new"), ["new"])
    assert not verify_hmac(body, None, ["new"])


@pytest.fixture(scope="module")
def migrated(database_url):
    """The ingest's tables (ingest.raw_webhooks) come from the migrations: already there on the
    stack's database (a no-op then), created on a fresh one."""
    migrations.upgrade(database_url)
    return database_url


@pytest.fixture
async def ingest(settings, migrated, kafka_bootstrap):
    database_url = migrated
    app = create_app(settings.model_copy(update={
        "database_url": database_url, "kafka_bootstrap": kafka_bootstrap,
        "shopify_webhook_secret": SecretStr("current"), "shopify_webhook_secret_previous": SecretStr("previous"),
    }))
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client):
        yield client


async def _partitions(kafka_bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-ingest")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d.get("error_code", 0) == 0 for p in d.get("partitions", ()))


async def _published(kafka_bootstrap: str, order_id: int,
                     timeout: float = 10) -> list[tuple[ShopifyOrderReceived, dict[str, str]]]:
    """Every message on the orders topic for this order, with its headers (read from the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(SHOPIFY_ORDERS.name, p) for p in await _partitions(kafka_bootstrap, SHOPIFY_ORDERS.name)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        found = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in parts]) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(ShopifyOrderReceived.model_validate_json(r.value),
                           {k: v.decode() for k, v in r.headers or ()})
                          for r in records if r.key == order_key(order_id)]
        return found
    finally:
        await consumer.stop()


async def test_signed_delivery_is_kept_and_published_once_and_duplicates_are_recognised(ingest, kafka_bootstrap,
                                                                                          database_url):
    order_id = time.time_ns() // 1000
    body = json.dumps(random_paid_order(order_id, SAMPLE_SKUS, random.Random(1))).encode()
    webhook_id = str(uuid.uuid4())
    for secret, expected in (("previous", "accepted"), ("current", "duplicate")):
        response = await ingest.post("/webhooks/shopify", content=body,
                                     headers=webhook_headers("orders/paid", body, secret, webhook_id=webhook_id))
        assert response.status_code == 200 and response.json()["status"] == expected
    published = await _published(kafka_bootstrap, order_id)
    assert [(m.webhook_id, m.order.id, m.topic) for m, _ in published] == [(webhook_id, order_id, "orders/paid")]
    headers = published[0][1]  # the platform's wire format (services/platform/kafka.py)
    assert (headers["message_type"], headers["content-type"], headers["correlation_id"]) == (
        "ShopifyOrderReceived", "application/json", webhook_id)
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM ingest.raw_webhooks WHERE webhook_id = $1", webhook_id)
    finally:
        await conn.close()
    assert bytes(row["body"]) == body  # the raw payload, byte for byte, for reprocessing
    assert row["deliveries"] == 2 and row["published_at"] is not None
    assert published[0][0].raw_payload_id == row["id"]


@pytest.mark.parametrize(
    ("body", "topic", "secret", "status", "code"),
    [
        (b'{"id": 1}', "orders/paid", "wrong", 401, "bad_signature"),
        (b"{not json", "orders/paid", "current", 400, "malformed_json"),
        (b'{"id": 1, "currency": "USD"}', "orders/paid", "current", 400, "invalid_order"),
        (b'{"id": 1}', "products/update", "current", 400, "unsupported_topic"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(ingest, database_url, body, topic, secret, status, code):
    webhook_id = str(uuid.uuid4())
    response = await ingest.post("/webhooks/shopify", content=body, headers=webhook_headers(topic, body, secret, webhook_id=webhook_id))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ingest.raw_webhooks WHERE webhook_id = $1", webhook_id) == 0
    finally:
        await conn.close()


async def test_metrics_count_rejections_by_reason(ingest):
    await ingest.post("/webhooks/shopify", content=b"{}", headers=webhook_headers("orders/paid", b"{}", "wrong"))
    text = (await ingest.get("/metrics")).text
    assert 'shopify_prima_webhooks_rejected_total{reason="bad_signature"}' in text
    await asyncio.sleep(0)
