"""Tests keep off the running stack's Kafka (issue 14): what a test publishes, and every consumer
group it makes, is on the tests' own broker (tests/conftest.py `kafka_bootstrap`), never on the
stack's, whose topics carry the same names; and the groups a session made are deleted at its end
(tests/support.py `delete_consumer_groups`, called by `kafka_bootstrap`)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka.admin import AdminClient

from contracts.topics import PRIMA_COMMANDS
from tests.inventory.integration.support import end_offsets, published_since
from tests.support import (
    cluster_id,
    consumer_groups,
    delete_consumer_groups,
    throwaway_topics,
)


def topics_of(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics)


def test_the_tests_kafka_is_another_cluster_than_the_stacks(kafka_bootstrap, stack_kafka_bootstrap, settings):
    """Given the stack's broker, then the tests' broker is another cluster, and the settings tests
    start from name no broker of the stack's (a test reaches Kafka through kafka_bootstrap only)."""
    assert cluster_id(kafka_bootstrap) != cluster_id(stack_kafka_bootstrap)
    assert settings.kafka_bootstrap not in (kafka_bootstrap, stack_kafka_bootstrap)


async def test_a_publish_and_a_group_on_the_tests_kafka_leave_the_stacks_kafka_as_it_was(
        kafka_bootstrap, stack_kafka_bootstrap):
    """Given the stack's prima.commands end offsets, when a test publishes on
    its broker's prima.commands and on a throwaway topic, and reads with a group of its own that
    commits, then the stack's prima.commands has no such record after its mark, and the stack's
    broker has neither the topic nor the group; then that group is deleted from the tests' broker."""
    if cluster_id(kafka_bootstrap) == cluster_id(stack_kafka_bootstrap):
        pytest.fail("kafka_bootstrap is the stack's own Kafka: nothing is published")  # never into the stack
    mark = await end_offsets(stack_kafka_bootstrap, PRIMA_COMMANDS.name, PRIMA_COMMANDS.partitions)
    probe, group = f"isolation-{uuid.uuid4().hex}".encode(), f"test-isolation-{uuid.uuid4().hex[:8]}"
    headers = [("message_type", b"IsolationProbe")]

    async with throwaway_topics(kafka_bootstrap) as make:
        own = await make("isolation")
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for topic in (PRIMA_COMMANDS.name, own):
                await producer.send_and_wait(topic, b"{}", key=probe, headers=headers)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(own, bootstrap_servers=kafka_bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            assert (await consumer.getone()).key == probe
            await consumer.commit()
        finally:
            await consumer.stop()
        assert own in topics_of(kafka_bootstrap) and own not in topics_of(stack_kafka_bootstrap)

    assert probe in {r.key for r in await published_since(kafka_bootstrap, {tp: 0 for tp in mark})}
    assert probe not in {r.key for r in await published_since(stack_kafka_bootstrap, mark)}
    assert group in consumer_groups(kafka_bootstrap)
    assert group not in consumer_groups(stack_kafka_bootstrap)

    assert delete_consumer_groups(kafka_bootstrap, {group}) == set()
    assert group not in consumer_groups(kafka_bootstrap)
