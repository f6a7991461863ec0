"""A consumer that gathers messages into windows before handling them (the Shopify gateway's
debounce: changes to one level in quick succession collapse into the newest, and a burst goes out
in full batches of 250).

FastStream hands a handler what one poll returned; it has no notion of a window that spans polls
and closes on a quiet time, nor of committing exactly the offsets of a window while the next one
fills. So this is the one consumer that steps around it, here in the platform package: it is a
FastStream batch subscriber with manual acknowledgement whose handler adds each poll's records to
the open window and returns without committing; the window is handled (with the same decoding,
retries and dead letters as every consumer, services/platform/kafka.py) when it is full, or when
nothing new has come for its quiet time, or at the latest its cap after it opened; then exactly
its offsets are committed through the poll's consumer. If handling must be retried, the consumer
seeks back to the window's first offsets and the window is read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from faststream.kafka import KafkaMessage

from services.platform.kafka import Consumer, _Redeliver, decode_record, message_type_of

log = logging.getLogger("shopify_prima.window")


class WindowPolicy:
    """When a window closes: `limits` gives (quiet seconds, cap seconds) for what it holds;
    `full` gives the length of the prefix of its messages that fills it (to go at once, the rest
    staying for the next window), or None while it is not full."""

    def limits(self, messages: Sequence[Any]) -> tuple[float, float]:
        raise NotImplementedError

    def full(self, messages: Sequence[Any]) -> int | None:
        raise NotImplementedError


class WindowConsumer(Consumer):
    def __init__(self, *args: Any, policy: WindowPolicy, clock: Callable[[], float] | None = None, **kwargs: Any):
        self.policy = policy
        self.window: list[Any] = []  # raw records of the open window
        self.messages: list[Any] = []  # their decoded messages, for the policy
        self.opened = 0.0
        self.last_arrival = 0.0
        self.consumer: Any = None  # the aiokafka consumer of the last poll, for commits and seeks
        self.lock = asyncio.Lock()
        self.generation = 0  # bumped by every seek back: records fetched before it are read again
        self.timer: asyncio.Task | None = None
        self.clock = clock
        super().__init__(*args, **kwargs)

    def _now(self) -> float:
        return self.clock() if self.clock else asyncio.get_running_loop().time()

    async def _on_batch(self, msg: KafkaMessage) -> None:
        generation = self.generation
        raw = msg.raw_message
        records = tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        async with self.lock:
            if generation != self.generation:
                return  # fetched before a seek back: these records will be read again
            self.consumer = msg.consumer
            now = self._now()
            if not self.window:
                self.opened = now
            self.window.extend(records)
            self.messages.extend(self._peek(records))
            self.last_arrival = now
            while (cut := self.policy.full(self.messages)) is not None:
                await self._flush(cut)
                self.opened = now
                if generation != self.generation:
                    return  # the flush was rolled back: everything is read again
        if self.timer is None or self.timer.done():
            self.timer = asyncio.create_task(self._close_when_due())

    def _peek(self, records: Sequence[Any]) -> list[Any]:
        """The decodable messages, for the window policy (decoding proper comes at the flush)."""
        found = []
        for record in records:
            if message_type_of(record) == "RedriveDeadLetter":
                found.append(None)
                continue
            try:
                found.append(decode_record(record, self.accepts))
            except Exception:  # noqa: BLE001 - dead-lettered at the flush
                found.append(None)
        return found

    async def _close_when_due(self) -> None:
        while True:
            async with self.lock:
                if not self.window:
                    return
                quiet, cap = self.policy.limits(self.messages)
                due = min(self.last_arrival + quiet, self.opened + max(quiet, cap))
                if self._now() >= due:
                    await self._flush()
                    return
            await asyncio.sleep(max(0.01, due - self._now()))

    async def _flush(self, count: int | None = None) -> None:
        """Handle the open window, or its first `count` records (the lock is held), then commit
        exactly their offsets: the records of one partition arrive in offset order, so what goes
        is a prefix of each partition, and what stays comes after it."""
        count = len(self.window) if count is None else count
        records, self.window = self.window[:count], self.window[count:]
        self.messages = self.messages[count:]
        if not records:
            return
        try:
            await self._handle(records)
        except _Redeliver:
            self._seek_back(records + self.window)
            return
        except Exception:  # noqa: BLE001 - e.g. Kafka down while publishing: read the window again
            log.exception("%s: a window of %d messages failed; it will be read again", self.group, len(records))
            self._seek_back(records + self.window)
            await asyncio.sleep(1.0)
            return
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # the partitions moved to another consumer meanwhile: it reads these again, which the
            # handler makes harmless (compare-and-set, idempotency keys)
            log.warning("%s: offset commit failed (%s); the window will be read again elsewhere", self.group, exc)

    def _seek_back(self, records: Sequence[Any]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        assigned = self.consumer.assignment() if self.consumer is not None else set()
        for tp, offset in first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self.window, self.messages = [], []
        self.generation += 1

