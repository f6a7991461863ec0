"""One set of headers for every producer, read back from real Kafka records (issue 14): whatever
path a message leaves by (publish_all as the gateways, pollers, catalogue reader and payout
ingest use it; publish_within as the ops API sends operator commands; the webhook ingest's send
and its sweeper; the outbox relay; a consumer's dead letters), it carries message_type,
content-type application/json, a correlation_id, and causation_id / event_type where the relay
sets them; nothing else (no `gateway` header), and never the empty content-type FastStream gives
a bytes body whose producer did not say it. Throwaway topics and groups; the groups are deleted."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from uuid import uuid4

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from contracts.platform import ReleaseOrder
from contracts.topics import TopicSpec
from domain.catalog.items import PrimaItem
from domain.orders.application import OrderApplication
from domain.orders.values import OrderDelivery
from services.orders.outbox import ORDER_RELAY
from services.platform.kafka import (
    CONTENT_TYPE,
    HEADERS,
    Consumer,
    Outgoing,
    headers_for,
    make_broker,
    publish_all,
    publish_within,
)
from services.platform.outbox import Relay
from services.shopify.ingest import WebhookIngest
from tests.platform.integration.test_consumer_kafka import Ping
from tests.platform.unit.test_outbox import T, paid_order
from tests.support import delete_consumer_groups

ALWAYS = {"message_type", "content-type", "correlation_id"}
RELAYED = ALWAYS | {"causation_id", "event_type"}


def command() -> ReleaseOrder:
    return ReleaseOrder(command_id=uuid4(), requested_by="jo@ops", requested_at=datetime.now(UTC),
                        shopify_order_id=1001)


async def records_of(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(batch)
    finally:
        await consumer.stop()
    return found


def names(record: ConsumerRecord) -> list[str]:
    return [name for name, _ in record.headers]


def header(record: ConsumerRecord, name: str) -> str:
    [value] = [v.decode() for k, v in record.headers if k == name]
    return value


async def test_every_producer_path_puts_the_documented_headers_and_application_json_on_the_wire(
        settings, kafka_bootstrap, new_topics):
    topic, poison_in, dlq, ops, ingest_ops = await new_topics(5, partitions=1)
    settings = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "consumer_batch_wait_ms": 20})
    group, ingest_group = f"test-headers-{uuid4().hex[:8]}", f"test-headers-ingest-{uuid4().hex[:8]}"

    # the relay's messages of a paid order (in-memory event store), sent to the throwaway topic
    app = OrderApplication()
    items = {"TEE": PrimaItem(item_id="ITM-TEE", sku="TEE", description="Tee")}
    app.handle([OrderDelivery(webhook_id="w1", topic="orders/paid", received_at=T, order=paid_order())], items, T)
    relayed, _ = Relay(ORDER_RELAY, settings, None, app=app).read(0)
    relayed = [Outgoing(topic, b"relay", m.message, m.headers) for m in relayed]

    broker = make_broker(settings, "test-headers")
    Consumer(broker, settings, group=group, topics=[TopicSpec(poison_in, "n", "test", messages=(Ping,))],
             accepts=(Ping,), handler=lambda deliveries: asyncio.sleep(0), operations_topic=ops,
             dead_letter_topic=dlq)
    ingest_broker = make_broker(settings, "test-headers-ingest")
    ingest = WebhookIngest(settings, ingest_broker, orders_topic=topic, operations_topic=ingest_ops,
                           dead_letter_topic=dlq, group=ingest_group)
    await broker.start()
    await ingest_broker.connect()  # the ingest's producer only (its subscriber is not needed here)
    ingest.kafka_ready.set()
    try:
        # publish_all with the headers headers_for gives, and with a producer's own (correlation only)
        await publish_all(broker, [Outgoing(topic, b"publish_all", command()),
                                   Outgoing(topic, b"publish_all", command(), {"correlation_id": "webhook-1"})])
        await publish_within(broker, [Outgoing(topic, b"publish_within", command())], 10.0)  # the ops API
        await publish_all(broker, relayed)  # the outbox relay
        fact = command()
        await ingest.send(Outgoing(topic, b"ingest", fact, headers_for(fact, correlation_id="webhook-2")))
        sent, too_large, failure = await ingest._send_many([(None, Outgoing(topic, b"sweeper", fact))])  # noqa: SLF001
        assert (len(sent), too_large, failure) == (1, [], None)
        # a consumer's dead letter: a record that does not decode is dead-lettered at once
        await ingest_broker.publish(b"{not json", poison_in, key=b"poison", headers={"message_type": "Ping"})
        [letter] = await records_of(kafka_bootstrap, dlq, 1)
    finally:
        await broker.stop()
        await ingest_broker.stop()
        await asyncio.to_thread(delete_consumer_groups, kafka_bootstrap, {group})

    produced = await records_of(kafka_bootstrap, topic, 5 + len(relayed))
    assert Counter(r.key for r in produced) == {b"publish_all": 2, b"publish_within": 1, b"relay": len(relayed),
                                                b"ingest": 1, b"sweeper": 1}
    for record in [*produced, letter]:
        where = f"{record.topic}@{record.offset} ({record.key})"
        assert len(names(record)) == len(set(names(record))), where  # each header once
        expected = RELAYED if record.key == b"relay" else ALWAYS
        assert set(names(record)) == expected and expected <= set(HEADERS), (where, names(record))
        assert header(record, "content-type") == CONTENT_TYPE, where
        assert all(value for _, value in record.headers), where  # no empty header
    assert header(letter, "message_type") == "DeadLetter"
    assert {header(r, "message_type") for r in produced if r.key != b"relay"} == {"ReleaseOrder"}
    assert {header(r, "correlation_id") for r in produced if r.key == b"ingest"} == {"webhook-2"}
    assert {header(r, "correlation_id") for r in produced if r.key == b"publish_all"} >= {"webhook-1"}
    assert [header(r, "event_type") for r in produced if r.key == b"relay"] == [
        getattr(m.message, "event_type", m.message.message_type) for m in relayed]
