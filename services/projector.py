"""Runs the projections: reads the order-events topic from each projection's stored position
and applies batches transactionally. `rebuild` replays a projection from offset zero."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections import order_sync
from services.config import Settings
from services.metrics import EXCEPTIONS_OPEN, ORDERS_BY_STATE, PROJECTION_POSITION
from services.runtime import start

log = logging.getLogger("shopify_prima.projector")
PROJECTIONS = {order_sync.NAME: order_sync}
STATES = ("received", "awaiting_payment", "quarantined", "sent", "in_prima", "failed")


async def _consumer(settings: Settings, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
        client_id="shopify-prima-projector", isolation_level="read_committed", auto_offset_reset="earliest",
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    if not partitions:
        await consumer.stop()
        raise RuntimeError(f"topic {topic} not found: run `python -m services.setup`")
    consumer.assign(partitions)
    return consumer, partitions


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-projector")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d.get("error_code", 0) == 0 for p in d.get("partitions", ()))


def _seek(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], stored: dict[int, int]) -> dict[int, int]:
    for tp in partitions:
        consumer.seek(tp, stored.get(tp.partition, 0))
    return {tp.partition: stored.get(tp.partition, 0) for tp in partitions}


async def update_gauges(pool: asyncpg.Pool) -> None:
    states, kinds = await order_sync.state_counts(pool)
    for state in STATES:
        ORDERS_BY_STATE.labels(state=state).set(states.get(state, 0))
    for kind in ("unmapped_sku", "totals_mismatch", "prima_rejected", "command_parked"):
        EXCEPTIONS_OPEN.labels(kind=kind).set(kinds.get(kind, 0))


async def run_projector(settings: Settings, stop: asyncio.Event) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    consumer, partitions = await _consumer(settings, order_sync.TOPIC)
    try:
        async with pool.acquire() as conn:
            stored = await order_sync.positions(conn)
            end = await consumer.end_offsets(partitions)
            ahead = {tp.partition: (stored[tp.partition], off) for tp, off in end.items() if stored.get(tp.partition, 0) > off}
            if ahead:
                # The topic holds less than the read model has applied: Kafka's data was replaced.
                raise SystemExit(
                    f"{order_sync.NAME} is ahead of {order_sync.TOPIC} (partition: (stored, end) {ahead}); "
                    "the topic was recreated: rebuild with `shopify-prima replay --projection order_sync`"
                )
            expected = _seek(consumer, partitions, stored)
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
                records = [(tp.partition, r.offset, r.value) for tp, rs in fetched.items() for r in rs]
                if not records:
                    continue
                if not await order_sync.apply_batch(conn, records, expected):
                    log.info("positions moved (a rebuild ran): seeking to the stored positions")
                    expected = _seek(consumer, partitions, await order_sync.positions(conn))
                    continue
                for partition, offset, _ in records:
                    expected[partition] = max(expected.get(partition, 0), offset + 1)
                PROJECTION_POSITION.labels(projection=order_sync.NAME).inc(len(records))
                await update_gauges(pool)
    finally:
        await consumer.stop()
        await pool.close()


async def rebuild(settings: Settings, name: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Empty the projection and apply its topic again from offset zero up to the end offsets
    seen at the start. The projector waits meanwhile (advisory lock) and then carries on from
    the rebuilt positions. Returns the number of events applied."""
    projection = PROJECTIONS[name]
    conn = await asyncpg.connect(settings.database_url)
    consumer, partitions = await _consumer(settings, projection.TOPIC)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", projection.LOCK_KEY)
        async with conn.transaction():
            await projection.reset(conn)
        end = {tp.partition: off for tp, off in (await consumer.end_offsets(partitions)).items()}
        total = sum(end.values())
        _seek(consumer, partitions, {})
        done = 0
        if progress:
            progress(0, total)
        while done < total:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
            records = [
                (tp.partition, r.offset, r.value) for tp, rs in fetched.items() for r in rs if r.offset < end[tp.partition]
            ]
            if not records:
                if all([await consumer.position(tp) >= end[tp.partition] for tp in partitions]):
                    break  # transaction markers or compaction: nothing more to read
                continue
            await projection.apply_batch(conn, records, None)
            done += len(records)
            if progress:
                progress(done, total)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", projection.LOCK_KEY)
        await consumer.stop()
        await conn.close()


def main() -> None:
    settings = start(lambda s: s.projector_metrics_port)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_projector(settings, stop)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
