"""Issue 8 (suspected) and issue 13, item 2 and 4, at the webhook edge: a body larger than
webhook_max_body_bytes is refused (413) before it is read whole and before the HMAC is computed,
a slow sender gets 408, a fact too large for a Kafka message is quarantined (not a 503 that
Shopify retries forever), and nothing a client sends gets a 500 or comes back in the answer.

Before the fix: no size limit (a 20 MB body was stored), no read timeout, a 6,000-character
X-Shopify-Webhook-Id was a 500 (PostgreSQL's btree row limit), a 100,000-line order a 503 loop
(MessageSizeTooLargeError, stored and never published), and 400 messages echoed the input."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.orders.integration.test_ingest_support import (
    about,
    new_order_id,
    order_body,
    post_within,
    read_topic,
    running,
    signed,
    stored_row,
)

pytestmark = pytest.mark.integration


LIMIT = 20_000


@pytest.fixture
async def ingest(ingest_env):
    async with running(ingest_env.app(webhook_max_body_bytes=LIMIT, webhook_read_timeout_seconds=1.0)) as client:
        yield client


def _short(response) -> None:
    """A short reason, in the error shape, that does not echo the input."""
    assert len(response.content) < 400, response.content[:400]
    assert set(response.json()["error"]) == {"code", "message"}


async def _forever_after(first: bytes):
    """A sender that sends one chunk and then never finishes."""
    yield first
    await asyncio.Event().wait()


async def test_declared_oversized_body_is_413_before_it_is_read_or_its_signature_checked(ingest, ingest_env):
    headers = signed(b"", secret="wrong")  # a bad signature too: the size is checked first
    headers["Content-Length"] = str(LIMIT + 1)
    started = time.monotonic()
    response = await post_within(ingest, 5, _forever_after(b"x" * 1000), headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert time.monotonic() - started < 2  # it did not wait for a body it would refuse
    _short(response)
    assert await stored_row(ingest_env.database_url, headers["X-Shopify-Webhook-Id"]) is None


async def test_chunked_oversized_body_is_413_once_the_limit_is_passed(ingest, ingest_env):
    async def endless():
        while True:
            yield b"x" * 4096
            await asyncio.sleep(0)

    headers = signed(b"")
    response = await post_within(ingest, 5, endless(), headers)  # no Content-Length
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    _short(response)
    assert await stored_row(ingest_env.database_url, headers["X-Shopify-Webhook-Id"]) is None


async def test_a_body_at_the_limit_is_taken(ingest, ingest_env):
    body = order_body()
    body = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(body) == LIMIT
    response = await ingest.post("/webhooks/shopify", content=body, headers=signed(body))
    assert (response.status_code, response.json()["status"]) == (200, "accepted")


async def test_a_sender_slower_than_the_read_timeout_gets_408(ingest):
    started = time.monotonic()
    response = await post_within(ingest, 5, _forever_after(b'{"id": '), signed(b""))
    assert response.status_code == 408 and response.json()["error"]["code"] == "read_timeout"
    assert time.monotonic() - started < 3


async def test_an_overlong_webhook_id_is_400_not_500_and_nothing_is_stored(ingest, ingest_env):
    body = order_body()
    webhook_id = "w" * 6000
    response = await ingest.post("/webhooks/shopify", content=body, headers=signed(body, webhook_id=webhook_id))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_webhook_id"
    _short(response)
    assert webhook_id not in response.text
    assert await stored_row(ingest_env.database_url, webhook_id) is None


async def test_errors_do_not_echo_what_was_sent(ingest):
    body = order_body()
    topic = "orders/" + "z" * 900
    response = await ingest.post("/webhooks/shopify", content=body, headers=signed(body, topic))
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_topic"
    _short(response)
    assert "zzzz" not in response.text


async def test_an_order_too_large_for_a_kafka_message_is_quarantined_not_a_503_loop(ingest_env):
    """20,000 line items in ~1.5 MB: within the body limit, but its fact is larger than the 1 MB
    a Kafka message may be."""
    order = json.loads(order_body(new_order_id()))
    order["line_items"] = [{"id": n, "sku": "A", "title": "A", "quantity": 1, "price": "1.00"} for n in range(1, 20_001)]
    body = json.dumps(order).encode()
    assert len(body) < 5_000_000
    headers = signed(body)
    webhook_id = headers["X-Shopify-Webhook-Id"]
    async with running(ingest_env.app()) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
        again = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["status"] == "quarantined" and response.json()["reason"] == "too_large"
    assert again.json()["status"] == "duplicate"
    row = await stored_row(ingest_env.database_url, webhook_id)
    assert row["quarantine_reason"].startswith("too_large") and row["published_at"] is not None
    (letter,) = await read_topic(ingest_env.kafka_bootstrap, ingest_env.dead_letters, about(webhook_id))
    assert letter.json()["reason"] == "handler_failed" and letter.json()["dead_letter_id"] == str(row["id"])
    assert not await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, about(webhook_id), timeout=1.0)
