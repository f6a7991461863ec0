"""What the webhook ingest's integration tests share (this module holds no tests): the ingest
in-process (services.shopify.ingest.create_app) on a scratch database migrated to head, publishing
to throwaway topics shaped like the real ones, so that no test reads or writes the running
stack's tables or topics, and helpers to read those topics and to take Kafka away."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiokafka.client
import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import CloseReason
from fastapi import FastAPI
from pydantic import SecretStr

from contracts.topics import DEAD_LETTERS, OPERATIONS, SHOPIFY_ORDERS
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import webhook_headers
from services.platform.settings import Settings
from services.shopify.ingest import WebhookIngest, create_app
from tests.support import scratch_database, throwaway_topics

SECRET = "current"
SAMPLE_SKUS = ["A", "B", "C"]


@dataclass(frozen=True)
class IngestEnv:
    database_url: str
    kafka_bootstrap: str
    orders: str
    operations: str
    dead_letters: str
    settings: Settings

    def app(self, **overrides: Any) -> FastAPI:
        """An ingest with these settings changed, and a consumer group (its dead letters' group)
        of its own: a test's ingest never waits for another test's to leave the group."""
        return create_app(self.settings.model_copy(update=overrides), orders_topic=self.orders,
                          operations_topic=self.operations, dead_letter_topic=self.dead_letters,
                          group=f"test-shopify-ingest-{uuid.uuid4().hex[:12]}")


@contextlib.asynccontextmanager
async def ingest_environment(database_url: str, kafka_bootstrap: str, settings: Settings) -> AsyncIterator[IngestEnv]:
    """A scratch database and throwaway topics for a test module's ingests (its `ingest_env`
    fixture), dropped and deleted afterwards."""
    async with scratch_database(database_url, "ingest") as url, throwaway_topics(kafka_bootstrap) as make:
        yield IngestEnv(
            database_url=url, kafka_bootstrap=kafka_bootstrap,
            orders=await make("ingest.orders", SHOPIFY_ORDERS.partitions),
            operations=await make("ingest.operations", OPERATIONS.partitions),
            dead_letters=await make("ingest.dead-letters", DEAD_LETTERS.partitions),
            settings=settings.model_copy(update={
                "database_url": url, "kafka_bootstrap": kafka_bootstrap,
                "shopify_webhook_secret": SecretStr(SECRET), "shopify_webhook_secret_previous": SecretStr("previous"),
            }),
        )


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, wait_for_kafka: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan (its broker, pool, sweeper) and a client for it, in this event loop."""
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client):
        if wait_for_kafka:
            await asyncio.wait_for(ingest_of(app).kafka_ready.wait(), 30)
        yield client


async def post_within(client: httpx.AsyncClient, seconds: float, content: Any, headers: dict[str, str]) -> httpx.Response:
    """POST a delivery, failing (TimeoutError) unless it is answered within `seconds`: the ASGI
    transport has no timeouts of its own, and an ingest that waits for a body or for Kafka
    would hold the test forever."""
    return await asyncio.wait_for(client.post("/webhooks/shopify", content=content, headers=headers), seconds)


def ingest_of(app: FastAPI) -> WebhookIngest:
    return app.state.ingest


def new_order_id() -> int:
    return time.time_ns() // 1000 + random.randrange(1000)


def order_body(order_id: int | None = None, **changes: Any) -> bytes:
    body = random_paid_order(order_id or new_order_id(), SAMPLE_SKUS, random.Random(order_id))
    body.update(changes)
    return json.dumps(body).encode()


def signed(body: bytes, topic: str = "orders/paid", *, secret: str = SECRET, webhook_id: str | None = None
           ) -> dict[str, str]:
    return webhook_headers(topic, body, secret, webhook_id=webhook_id or str(uuid.uuid4()))


async def stored_row(database_url: str, webhook_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM ingest.raw_webhooks WHERE webhook_id = $1", webhook_id)
    finally:
        await conn.close()


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-ingest")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d.get("error_code", 0) == 0 for p in d.get("partitions", ()))


async def read_topic(bootstrap: str, topic: str, wanted: Callable[[Message], bool], *, expect: int = 1,
                     timeout: float = 15.0, settle: float = 0.0) -> list[Message]:
    """The messages of `topic` (from its start) that `wanted` picks: as soon as `expect` of them
    are there, then `settle` seconds more to catch any extra one, or whatever came by `timeout`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        enough_at: float | None = None
        while time.monotonic() < deadline and (enough_at is None or time.monotonic() < enough_at):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    message = Message(r.key, r.value, {k: v.decode() for k, v in r.headers or ()})
                    if wanted(message):
                        found.append(message)
            if enough_at is None and len(found) >= expect:
                enough_at = time.monotonic() + settle
        return found
    finally:
        await consumer.stop()


def about(webhook_id: str) -> Callable[[Message], bool]:
    """A message carrying this webhook: its fact (correlation id) or its dead letter (headers)."""
    def wanted(message: Message) -> bool:
        if message.headers.get("correlation_id") == webhook_id:
            return True
        try:
            body = message.json()
        except ValueError:
            return False
        return isinstance(body, dict) and (body.get("headers") or {}).get("x-shopify-webhook-id") == webhook_id
    return wanted


def redriven(dead_letter_id: uuid.UUID | str) -> Callable[[Message], bool]:
    def wanted(message: Message) -> bool:
        body = message.json()
        return body.get("message_type") == "DeadLetterRedriven" and body.get("dead_letter_id") == str(dead_letter_id)
    return wanted


@contextlib.contextmanager
def kafka_gone(monkeypatch: pytest.MonkeyPatch):
    """Kafka goes away under a running ingest, as when the broker is stopped: its connections
    break and every new connection is refused, until the block ends (then Kafka is back)."""
    async def refused(*args: Any, **kwargs: Any):
        raise ConnectionRefusedError(111, "Connect call failed (test: Kafka is down)")

    with monkeypatch.context() as patch:
        patch.setattr(aiokafka.client, "create_conn", refused)
        for client in [o for o in gc.get_objects() if isinstance(o, aiokafka.client.AIOKafkaClient)]:
            for conn in list(client._conns.values()):  # the ingest's producer and its consumer's
                conn.close(reason=CloseReason.CONNECTION_BROKEN)
        yield
