"""How far behind a read model is, as Kafka's own tools and the dashboard see it (services/projector.py),
on the real broker with a throwaway topic, a throwaway consumer group (deleted at the end) and a
scratch database: a projection's group commits, after each batch, the very positions PostgreSQL
stored with the rows; the gauge shopify_prima_projector_lag_messages{projection,topic,partition} is
the end offset minus the next position, messages the read model has no business with included."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

import asyncpg
import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel

from contracts.topics import TopicSpec
from projections.base import Projection, ReadModel
from services.platform.kafka import Outgoing, make_broker, publish_all
from services.projector import Projector
from tests.inventory.integration.support import eventually
from tests.support import committed_offsets, partition_end_offsets

KAFKA_SH = Path(__file__).resolve().parents[3] / "deploy" / "local" / "kafka.sh"


class LagCounted(BaseModel):
    message_type: Literal["LagCounted"] = "LagCounted"
    aggregate_id: UUID
    aggregate_version: int


class LagNoise(BaseModel):
    """On the topic, but no business of the read model: its consumer skips it."""

    message_type: Literal["LagNoise"] = "LagNoise"


class Gated(Projection):
    """A test read model (one row per event) whose batches wait at a gate: while a batch waits,
    the consumer has fetched it but nothing is stored or committed yet."""

    tables: ClassVar[tuple[str, ...]] = ("public.lag_seen",)
    accepts = (LagCounted,)

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.gate, self.waiting = asyncio.Event(), asyncio.Event()

    async def apply(self, conn: asyncpg.Connection, messages: list[Any]) -> None:
        self.waiting.set()
        await self.gate.wait()
        await conn.executemany("INSERT INTO public.lag_seen VALUES ($1, $2)",
                               [(m.aggregate_id, m.aggregate_version) for m in messages])


@pytest.fixture
async def pool(scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=4)
    await pool.execute("CREATE TABLE IF NOT EXISTS public.lag_seen (aggregate_id uuid, version int)")
    yield pool
    await pool.close()


def lag(projection: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("shopify_prima_projector_lag_messages",
                                     {"projection": projection, "topic": topic, "partition": str(partition)})




async def test_a_projection_commits_its_stored_positions_to_its_group_and_the_gauge_shows_its_lag(
        pool, settings, kafka_bootstrap, new_topics):
    """Given nine events on a topic of three partitions and a projection whose first batch is held
    at its gate, when the lag is read the gauge is each partition's end offset (nothing stored,
    nothing committed); once the batch is let through, the group's committed offsets are the
    positions stored in PostgreSQL and the lag is zero; and a message the read model skips at the
    end of a partition moves the committed offset past the stored position, the lag staying zero."""
    (topic,) = await new_topics(1)
    spec = TopicSpec(topic, "aggregate id", "test", messages=(LagCounted, LagNoise))

    class Watched(Gated):
        read_model: ClassVar[ReadModel] = ReadModel(name=f"test_lag_{uuid4().hex[:8]}")
        topic: ClassVar[TopicSpec] = spec

    local = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "handler_backoff_initial_seconds": 0.1,
                                        "handler_backoff_max_seconds": 0.5})
    producer = make_broker(local, "projector-lag-test")
    await producer.start()
    try:
        await publish_all(producer, [Outgoing(topic, str(a).encode(), LagCounted(aggregate_id=a, aggregate_version=1))
                                     for a in (uuid4() for _ in range(9))])
        ends = await partition_end_offsets(kafka_bootstrap, topic)
        assert sum(ends.values()) == 9 and len(ends) == 3

        projection = Watched(pool)
        name, group = projection.name, projection.group
        projector = Projector(pool, names=[])
        projector.projections = {name: projection}
        broker = make_broker(local, "projector-lag-test")
        projector.follow(broker, local, projection)
        await broker.start()
        try:
            await asyncio.wait_for(projection.waiting.wait(), 60)
            await projector.update_lag()
            assert {p: lag(name, topic, p) for p in ends} == ends

            projection.gate.set()

            async def caught_up() -> bool:
                stored = await projection.positions(pool)
                return all(stored.get(p, 0) == end for p, end in ends.items()) and \
                    {p: (await committed_offsets(kafka_bootstrap, group)).get(p, 0) for p in ends} == ends

            await eventually(caught_up, "the projection applying and committing all nine events", 60)
            stored = await projection.positions(pool)
            assert {p: (await committed_offsets(kafka_bootstrap, group)).get(p, 0) for p in ends} == \
                {p: stored.get(p, 0) for p in ends}
            assert await pool.fetchval("SELECT count(*) FROM public.lag_seen") == 9
            await projector.update_lag()
            assert {p: lag(name, topic, p) for p in ends} == dict.fromkeys(ends, 0)

            await publish_all(producer, [Outgoing(topic, b"noise", LagNoise())])
            after = await partition_end_offsets(kafka_bootstrap, topic)
            (noisy,) = [p for p in ends if after[p] != ends[p]]

            async def passed() -> bool:
                return (await committed_offsets(kafka_bootstrap, group)).get(noisy) == after[noisy]

            await eventually(passed, "the consumer committing past the skipped message", 60)
            assert (await projection.positions(pool)).get(noisy, 0) == after[noisy] - 1
            await projector.update_lag()
            assert lag(name, topic, noisy) == 0
        finally:
            await broker.stop()
    finally:
        await producer.stop()
        # Kafka's own tool (deploy/local/kafka.sh): the throwaway group does not outlive the test.
        await asyncio.to_thread(
            subprocess.run, [str(KAFKA_SH), "consumer-groups", "--bootstrap-server", kafka_bootstrap, "--delete",
                             "--group", f"projector.{Watched.read_model.name}"], check=False, capture_output=True,
            timeout=120)
