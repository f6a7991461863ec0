"""The platform consumer (services/platform/kafka.py) on FastStream's in-memory test broker:
decoding by message_type, the batch handed to the handler, the one bad-message path (dead
letters) and re-drives. Redelivery after a nack needs a real broker: tests/platform/integration."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from datetime import UTC, datetime
from typing import Literal
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import BaseModel

from contracts.platform import DeadLetter, DeadLetterRedriven, RedriveDeadLetter
from contracts.topics import DEAD_LETTERS, OPERATIONS, TopicSpec
from services.platform.kafka import Consumer, Delivery, _Redeliver, headers_for
from services.platform.settings import Settings


class Ping(BaseModel):
    message_type: Literal["Ping"] = "Ping"
    n: int


class Other(BaseModel):
    message_type: Literal["Other"] = "Other"


TOPIC = TopicSpec(name="test.platform.pings", key="n", description="test", messages=(Ping,))
SETTINGS = Settings(handler_max_attempts=2, handler_backoff_initial_seconds=0.001, handler_backoff_max_seconds=0.001)


class Recorder:
    def __init__(self, fail_on: set[int] | None = None, fail_with: type[Exception] = ValueError) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on or set()
        self.fail_with = fail_with

    async def __call__(self, deliveries: list[Delivery[Ping]]) -> None:
        numbers = [d.message.n for d in deliveries]
        if self.fail_on & set(numbers):
            raise self.fail_with(f"cannot handle {sorted(self.fail_on & set(numbers))}")
        self.batches.append(numbers)


def setup(handler: Recorder) -> tuple[KafkaBroker, Consumer, list[DeadLetter | DeadLetterRedriven]]:
    broker = KafkaBroker()
    consumer = Consumer(broker, SETTINGS, group="test-group", topics=[TOPIC], accepts=(Ping,), handler=handler)
    letters: list = []

    @broker.subscriber(DEAD_LETTERS.name)
    async def dead_letters(body: dict) -> None:
        letters.append(DeadLetter.model_validate(body) if body["message_type"] == "DeadLetter"
                       else DeadLetterRedriven.model_validate(body))

    return broker, consumer, letters


async def publish(broker: KafkaBroker, *messages: BaseModel | bytes, headers: dict | None = None) -> None:
    bodies = [m.model_dump_json().encode() if isinstance(m, BaseModel) else m for m in messages]
    first = messages[0]
    await broker.publish_batch(*bodies, topic=TOPIC.name,
                               headers=headers or (headers_for(first) if isinstance(first, BaseModel) else {}))


async def test_a_batch_is_decoded_by_message_type_and_handed_over_whole():
    handler = Recorder()
    broker, _, letters = setup(handler)
    async with TestKafkaBroker(broker) as br:
        await publish(br, Ping(n=1), Ping(n=2), Ping(n=3))
    assert handler.batches == [[1, 2, 3]]
    assert letters == []


async def test_an_undecodable_message_is_dead_lettered_at_once_without_its_body_in_the_error():
    handler = Recorder()
    broker, _, letters = setup(handler)
    async with TestKafkaBroker(broker) as br:
        await publish(br, b'{"message_type": "Ping", "n": "customer@example.com"}', headers={"message_type": "Ping"})
        await publish(br, Ping(n=7))
    assert handler.batches == [[7]]
    (letter,) = letters
    assert letter.reason == "undecodable" and letter.group == "test-group" and letter.topic == TOPIC.name
    assert "customer@example.com" not in letter.error  # the error names the field, not the value
    assert base64.b64decode(letter.value_base64) == b'{"message_type": "Ping", "n": "customer@example.com"}'


async def test_a_type_the_group_does_not_know_is_dead_lettered():
    handler = Recorder()
    broker, _, letters = setup(handler)
    async with TestKafkaBroker(broker) as br:
        await publish(br, Other())
    assert handler.batches == [] and [letter.reason for letter in letters] == ["undecodable"]


async def test_a_poison_message_is_found_by_handling_one_by_one_and_only_it_is_dead_lettered():
    handler = Recorder(fail_on={2})
    broker, consumer, letters = setup(handler)
    async with TestKafkaBroker(broker) as br:
        # the test broker does not redeliver after a nack: run the consumer's own handling as the
        # broker would, attempt after attempt, until it gives up on the bad message
        records = await _records(br, Ping(n=1), Ping(n=2), Ping(n=3))
        for _ in range(SETTINGS.handler_max_attempts - 1):
            with pytest.raises(_Redeliver):
                await consumer._handle(records)
        assert handler.batches == []  # nothing handled while the batch is retried
        await consumer._handle(records)
    assert handler.batches == [[1], [3]]
    (letter,) = letters
    assert letter.reason == "handler_failed" and "cannot handle [2]" in letter.error
    assert letter.attempts == SETTINGS.handler_max_attempts + 1


async def test_a_dependency_failure_is_never_dead_lettered():
    handler = Recorder(fail_on={1}, fail_with=ConnectionRefusedError)
    broker, consumer, letters = setup(handler)
    async with TestKafkaBroker(broker) as br:
        records = await _records(br, Ping(n=1))
        for _ in range(SETTINGS.handler_max_attempts + 3):
            with pytest.raises(_Redeliver):
                await consumer._handle(records)
    assert letters == [] and handler.batches == []


async def test_a_redrive_for_the_group_hands_the_dead_letter_to_the_handler_again():
    handler = Recorder()
    broker, _, letters = setup(handler)
    dead_letter_id = uuid4()
    async with TestKafkaBroker(broker) as br:
        for group in ("another-group", "test-group"):
            command = RedriveDeadLetter(
                command_id=uuid4(), requested_by="test", requested_at=datetime.now(UTC), dead_letter_id=dead_letter_id,
                group=group, topic=TOPIC.name, key_base64=None,
                value_base64=base64.b64encode(Ping(n=42).model_dump_json().encode()).decode(),
                headers={"message_type": "Ping"})
            await br.publish(command.model_dump_json().encode(), OPERATIONS.name, headers=headers_for(command))
    assert handler.batches == [[42]]  # once: the other group's re-drive is not this group's business
    (redriven,) = letters
    assert isinstance(redriven, DeadLetterRedriven) and redriven.dead_letter_id == dead_letter_id


async def _records(broker: KafkaBroker, *messages: Ping) -> tuple:
    """Records as a poll returns them (what the consumer reads of each)."""
    return tuple(SimpleNamespace(topic=TOPIC.name, partition=0, offset=offset, key=str(m.n).encode(),
                                 value=m.model_dump_json().encode(),
                                 headers=[(k, v.encode()) for k, v in headers_for(m).items()])
                 for offset, m in enumerate(messages))


def test_an_error_text_carries_no_customer_data():
    """Issue 8: logs and dead letters of a failed message do not print its data."""
    from pydantic import ValidationError as _ValidationError

    from services.platform.kafka import error_text

    class Customer(BaseModel):
        email: int

    try:
        Customer.model_validate({"email": "jane@example.com"})
    except _ValidationError as exc:
        text = error_text(exc)
    assert "jane@example.com" not in text and "email" in text
    assert "<e-mail>" in error_text(ValueError("no sales order for jane.doe+x@shop.example.co.uk"))
    assert "\x00" not in error_text(ValueError("a\x00b")) and len(error_text(ValueError("x" * 10_000))) == 500


def test_a_record_nested_too_deeply_has_no_message_type_rather_than_a_crash():
    from services.platform.kafka import message_type_of

    deep = b"[" * 100_000 + b"]" * 100_000
    assert message_type_of(SimpleNamespace(headers=[], value=deep)) is None


def test_a_postgresql_shutdown_is_a_dependency_failure_not_a_bad_message():
    import asyncpg

    from services.platform.kafka import is_dependency_failure

    assert is_dependency_failure(asyncpg.AdminShutdownError("terminating connection due to administrator command"))
    assert is_dependency_failure(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert not is_dependency_failure(ValueError("a bad message"))


async def test_a_send_that_takes_too_long_is_given_up_on_but_not_cancelled():
    """A produce cancelled in flight leaves a gap in the idempotent producer's sequence numbers,
    and the broker then refuses that partition's batches for good (OutOfOrderSequenceNumber,
    seen in the chaos run): publish_within stops waiting but lets the send finish."""
    import asyncio

    from services.platform.kafka import Outgoing, publish_within

    finished: list[str] = []

    class SlowBroker:
        async def publish(self, value, topic, **kwargs):
            async def acknowledged():
                try:
                    await asyncio.sleep(0.3)
                    finished.append(topic)
                except asyncio.CancelledError:
                    finished.append("cancelled")
                    raise
            return asyncio.ensure_future(acknowledged())

    with pytest.raises(TimeoutError, match="the send goes on"):
        await publish_within(SlowBroker(), [Outgoing("t", b"k", Ping(n=1))], timeout=0.05)
    await asyncio.sleep(0.5)
    assert finished == ["t"]


def test_a_refused_producer_sequence_is_told_apart_from_kafka_being_away():
    from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

    from services.platform.kafka import producer_broken

    assert producer_broken(OutOfOrderSequenceNumber())
    assert not producer_broken(KafkaConnectionError()) and not producer_broken(TimeoutError())
