"""A Kafka producer whose sequence numbers the broker refuses (OutOfOrderSequenceNumber) is
replaced: aiokafka's idempotent producer never recovers from that by itself, and in the chaos
run (issue 8) the ingest answered 503 for good after a Kafka restart."""

from __future__ import annotations

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from contracts.platform import DeadLetterRedriven
from services.platform import kafka
from services.platform.kafka import Outgoing, make_broker
from services.platform.settings import Settings
from services.shopify.ingest import KafkaUnavailable, WebhookIngest

MESSAGE = DeadLetterRedriven(dead_letter_id="00000000-0000-0000-0000-000000000001", group="g",
                             redriven_at="2026-11-30T00:00:00Z")


async def test_a_refused_producer_is_replaced_and_the_next_send_goes_through(monkeypatch):
    broker = make_broker(Settings(kafka_bootstrap="127.0.0.1:1"), "test")
    calls: list[str] = []
    broken = [True]

    async def publish(*args, **kwargs):
        calls.append("publish")
        if broken[0]:
            raise OutOfOrderSequenceNumber()

    async def renew(b):
        calls.append("renew")
        broken[0] = False

    broker.publish = publish
    monkeypatch.setattr(kafka, "renew_producer", renew)
    ingest = WebhookIngest(Settings(ingest_publish_timeout_seconds=1.0), broker, orders_topic="o",
                           operations_topic="ops", dead_letter_topic="dl")
    ingest.kafka_ready.set()
    with pytest.raises(KafkaUnavailable, match="OutOfOrderSequenceNumber"):
        await ingest.send(Outgoing("o", b"k", MESSAGE))
    assert calls == ["publish", "renew"]
    await ingest.send(Outgoing("o", b"k", MESSAGE))  # Shopify's retry: the new producer takes it
    assert calls == ["publish", "renew", "publish"]
