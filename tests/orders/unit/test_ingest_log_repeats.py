"""The log rate limit every process installs (services/platform/runner.py RepeatLimit,
limit_repeats): issue 8, defect 10, where ten seconds of Kafka downtime wrote ~110,000 lines
(aiokafka logs each reconnect attempt and each failed produce request) to the ingest's log."""

from __future__ import annotations

import logging

from services.platform.runner import RepeatLimit, limit_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, *args: object, name: str = "aiokafka", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_message_goes_through_once_per_window_and_the_next_says_how_many_were_held_back():
    clock = Clock()
    limit = RepeatLimit(seconds=30, clock=clock)
    template = "Unable connect to node with id %s: %s"
    assert limit.filter(_record(template, 1, "refused"))
    passed = 0
    for _ in range(1000):  # aiokafka, every 100 ms per pending batch
        clock.now += 0.01
        passed += limit.filter(_record(template, 1, "refused"))
    assert passed == 0 and limit.suppressed == 1000
    clock.now += 30
    record = _record(template, 1, "refused")
    assert limit.filter(record)
    assert record.getMessage() == "Unable connect to node with id 1: refused [1000 more like this held back in the last 40s]"


def test_messages_are_told_apart_by_logger_level_and_template_not_by_their_arguments():
    limit = RepeatLimit(seconds=30, clock=Clock())
    assert limit.filter(_record("Unable to update metadata from %s", [1]))
    assert not limit.filter(_record("Unable to update metadata from %s", [2]))  # same template, other argument
    assert limit.filter(_record("Got error produce response: %s", "x", name="aiokafka.producer.sender"))
    assert limit.filter(_record("Unable to update metadata from %s", [1], level=logging.WARNING))
    assert limit.filter(_record("Unable to update metadata from %s", [1], name="aiokafka.cluster"))


def test_the_templates_it_remembers_are_bounded():
    limit = RepeatLimit(seconds=30, clock=Clock(), max_templates=10)
    for n in range(100):
        assert limit.filter(_record(f"message {n}"))
    assert len(limit._last) <= 10


def test_limit_repeats_puts_one_limit_on_every_aiokafka_logger_and_is_idempotent():
    first = limit_repeats()
    second = limit_repeats()
    assert first is second
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.producer.sender",
                 "aiokafka.consumer.group_coordinator", "aiokafka.consumer.fetcher"):
        assert logging.getLogger(name).filters.count(first) == 1, name
    assert first not in logging.getLogger("shopify_prima.ingest").filters  # our own outage lines are already once per outage
