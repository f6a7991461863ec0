"""The Shopify sandbox: the webhook side of Shopify (order bodies signed with the app's client
secret and delivered to the ingest, with switches for duplicates and bad signatures) and the Admin
GraphQL API subset the integration uses (admin.py: inventory, products, bulk operations, with
Shopify's cost, throttling, compare-and-set and idempotency; see README.md)."""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from sandboxes.shopify.admin import admin_router
from sandboxes.shopify.fulfillments import control_router as fulfillment_controls
from sandboxes.shopify.order_queries import control_router, record_delivery
from sandboxes.shopify.payouts import control_router as payout_controls
from sandboxes.shopify.state import ShopState
from sandboxes.shopify.webhooks import send_webhook
from services.platform.settings import Settings


class Delivery(BaseModel):
    topic: str = "orders/paid"
    order: dict[str, Any]
    copies: int = Field(1, ge=1, le=10)  # Shopify delivers at least once: send the same delivery n times
    webhook_id: str | None = None
    bad_signature: bool = False


def create_app(ingest_url: str, secret: str, *, access_token: str = "sandbox-token", plan: str = "standard") -> FastAPI:
    app = FastAPI(title="Shopify sandbox")
    app.state.shopify = ShopState(access_token, plan)
    app.include_router(admin_router(app.state.shopify))
    app.include_router(control_router(app.state.shopify))
    app.include_router(payout_controls(app.state.shopify))
    app.include_router(fulfillment_controls(app.state.shopify))
    app.state.shopify.fulfillments.secret = secret  # fulfillments/* webhooks are signed like the others

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/_sandbox/webhooks")
    async def deliver(delivery: Delivery):
        import uuid

        webhook_id = delivery.webhook_id or str(uuid.uuid4())
        key = "not-the-secret" if delivery.bad_signature else secret
        record_delivery(app.state.shopify.orders, delivery.topic, delivery.order)  # the shop holds the order
        statuses = []
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(delivery.copies):
                response = await send_webhook(client, ingest_url, delivery.topic, delivery.order, key, webhook_id=webhook_id)
                statuses.append(response.status_code)
        return {"webhook_id": webhook_id, "statuses": statuses}

    return app


def app_from_env() -> FastAPI:
    host = os.environ.get("SHOPIFY_PRIMA_INGEST_HOST", "127.0.0.1")
    port = os.environ.get("SHOPIFY_PRIMA_INGEST_PORT", "8081")
    secret = os.environ.get("SHOPIFY_PRIMA_SHOPIFY_WEBHOOK_SECRET", "sandbox-secret")
    token = Settings().shopify_access_token.get_secret_value()
    plan = os.environ.get("SHOPIFY_PRIMA_SHOPIFY_SANDBOX_PLAN", "standard").lower()
    app = create_app(f"http://{host}:{port}/webhooks/shopify", secret, access_token=token, plan=plan)
    # The shop's locations, as the stack's location map (deploy/local/stack.env) expects them.
    app.state.shopify.store.add_location("Main warehouse", "gid://shopify/Location/1")
    app.state.shopify.store.add_location("North warehouse", "gid://shopify/Location/2")
    return app
