"""Shopify webhook ingest: verify, keep, publish, then acknowledge.

A delivery is answered 2xx only after its raw body is stored and the normalized fact is on
Kafka (acks=all). A bad signature is 401 and a body that is not an order is 400; in both cases
nothing is stored or published. Duplicates (same X-Shopify-Webhook-Id) are recognised and not
published again; the aggregate ignores any that slip through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError

from contracts.shopify.orders import ORDER_WEBHOOK_TOPICS, ShopifyOrder, ShopifyOrderReceived
from contracts.topics import SHOPIFY_ORDERS, order_key
from services.platform.kafka import encode, headers_for, make_broker
from services.platform.metrics import WEBHOOKS_DUPLICATE, WEBHOOKS_RECEIVED, WEBHOOKS_REJECTED
from services.platform.runner import run_http
from services.platform.settings import Settings, get_settings
from services.shopify.ingest_store import RawWebhookStore

log = logging.getLogger("shopify_prima.ingest")


def verify_hmac(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """base64(HMAC-SHA256(body, secret)) against each accepted secret, in constant time."""
    if not signature:
        return False
    given = signature.encode()
    ok = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        ok |= hmac.compare_digest(expected, given)  # no early exit: same work whatever matches
    return ok


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None  # informational header only; updated_at in the body is what orders by


def _reject(status: int, reason: str, message: str) -> JSONResponse:
    WEBHOOKS_REJECTED.labels(reason=reason).inc()
    return JSONResponse({"error": {"code": reason, "message": message}}, status_code=status)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    secrets = [settings.shopify_webhook_secret.get_secret_value()]
    if settings.shopify_webhook_secret_previous:
        secrets.append(settings.shopify_webhook_secret_previous.get_secret_value())
    broker = make_broker(settings, "shopify-ingest")
    publisher = broker.publisher(SHOPIFY_ORDERS.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
        app.state.store = RawWebhookStore(app.state.pool)
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await app.state.pool.close()

    app = FastAPI(title="shopify-prima webhook ingest", lifespan=lifespan)

    @app.post("/webhooks/shopify")
    async def receive(request: Request):
        received_at = datetime.now(UTC)
        body = await request.body()
        h = request.headers  # case-insensitive, as Shopify's header names are
        if not verify_hmac(body, h.get("x-shopify-hmac-sha256"), secrets):
            return _reject(401, "bad_signature", "X-Shopify-Hmac-Sha256 does not match the body")
        topic = h.get("x-shopify-topic", "")
        webhook_id = h.get("x-shopify-webhook-id")
        if topic not in ORDER_WEBHOOK_TOPICS:
            return _reject(400, "unsupported_topic", f"topic {topic!r} is not one this endpoint takes")
        if not webhook_id:
            return _reject(400, "missing_webhook_id", "X-Shopify-Webhook-Id is required")
        try:
            order = ShopifyOrder.from_webhook(json.loads(body))
        except json.JSONDecodeError as exc:
            return _reject(400, "malformed_json", f"body is not JSON: {exc}")
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            return _reject(400, "invalid_order", f"body is not an order: {exc}")

        store: RawWebhookStore = request.app.state.store
        raw_id, first_received_at, published = await store.record(
            webhook_id, topic, h.get("x-shopify-shop-domain", ""), h.get("x-shopify-event-id"),
            {k: v for k, v in h.items() if k.startswith("x-shopify-")}, body, received_at,
        )
        if published:
            WEBHOOKS_DUPLICATE.inc()
            return {"status": "duplicate", "webhook_id": webhook_id}
        fact = ShopifyOrderReceived(
            webhook_id=webhook_id,
            event_id=h.get("x-shopify-event-id"),
            topic=topic,
            shop_domain=h.get("x-shopify-shop-domain", ""),
            api_version=h.get("x-shopify-api-version"),
            triggered_at=_timestamp(h.get("x-shopify-triggered-at")),
            received_at=first_received_at,
            raw_payload_id=raw_id,
            order=order,
        )
        try:
            await publisher.publish(encode(fact), key=order_key(order.id),
                                    headers=headers_for(fact, correlation_id=webhook_id))
        except Exception as exc:  # Kafka unavailable: Shopify retries, the raw body is kept
            log.exception("publish failed for webhook %s", webhook_id)
            return _reject(503, "publish_failed", f"could not publish to Kafka: {type(exc).__name__}")
        await store.mark_published(raw_id)
        WEBHOOKS_RECEIVED.labels(topic=topic).inc()
        return {"status": "accepted", "webhook_id": webhook_id}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


if __name__ == "__main__":
    run_http(create_app, lambda s: s.ingest_host, lambda s: s.ingest_port)
