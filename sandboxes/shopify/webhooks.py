"""Signing and sending Shopify webhooks the way Shopify does (HMAC-SHA256 of the raw body,
base64, in X-Shopify-Hmac-Sha256), for the sandbox, the tests and the benchmarks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_headers(
    topic: str, body: bytes, secret: str, *, webhook_id: str | None = None, shop_domain: str = "sandbox.myshopify.com",
    api_version: str = "2026-07", event_id: str | None = None,
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }


async def send_webhook(
    client: httpx.AsyncClient, url: str, topic: str, payload: dict[str, Any] | bytes, secret: str, **headers: Any
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post(url, content=body, headers=webhook_headers(topic, body, secret, **headers))
