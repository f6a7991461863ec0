"""The projection base (projections/base.py) on real PostgreSQL (a scratch database migrated to
head): rows and positions in one transaction, an aggregate version applied once whatever offset
it comes at, a rebuild that empties and makes the consumer seek, a read model that is ahead of
its topic halted; and the item-master read model built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import TopicPartition
from pydantic import BaseModel

from contracts.prima.inventory import BundleComponent, PrimaItemChanged
from contracts.topics import TopicSpec
from projections.base import Projection, ProjectionHalted, ReadModel
from projections.item_master import ItemMasterProjection, items_for
from services.platform.kafka import Delivery, Reposition

T = datetime(2026, 11, 2, 9, tzinfo=UTC)


class Counted(BaseModel):
    message_type: Literal["Counted"] = "Counted"
    aggregate_id: UUID
    aggregate_version: int
    amount: int


class Tally(Projection):
    """A test read model: per aggregate, the sum of the amounts of its events."""

    read_model: ClassVar[ReadModel] = ReadModel(name="test_tally")
    topic: ClassVar[TopicSpec] = TopicSpec("test.tally", "aggregate", "test", messages=(Counted,))
    accepts = (Counted,)
    tables = ("public.tally",)

    async def apply(self, conn: asyncpg.Connection, messages: list[Any]) -> None:
        for m in messages:
            await conn.execute("INSERT INTO public.tally VALUES ($1, $2) ON CONFLICT (aggregate_id) "
                               "DO UPDATE SET total = tally.total + EXCLUDED.total", m.aggregate_id, m.amount)


@pytest.fixture
async def pool(scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=3)
    await pool.execute("CREATE TABLE IF NOT EXISTS public.tally (aggregate_id uuid PRIMARY KEY, total int NOT NULL)")
    await pool.execute("TRUNCATE public.tally")
    await pool.execute("DELETE FROM readmodel.positions; DELETE FROM readmodel.applied_versions; "
                       "DELETE FROM readmodel.rebuilds")
    yield pool
    await pool.close()


def delivered(offset: int, message: BaseModel, partition: int = 0) -> Delivery[Any]:
    return Delivery(message, Tally.topic.name, partition, offset, b"k")


async def total(pool: asyncpg.Pool, aggregate_id: UUID) -> int | None:
    return await pool.fetchval("SELECT total FROM public.tally WHERE aggregate_id = $1", aggregate_id)


async def test_an_event_relayed_twice_is_applied_once_and_the_positions_move_with_the_rows(pool):
    tally, a = Tally(pool), uuid4()
    await tally.on_assign({TopicPartition(Tally.topic.name, 0)}, {TopicPartition(Tally.topic.name, 0): 0})
    await tally.handle([delivered(0, Counted(aggregate_id=a, aggregate_version=1, amount=5)),
                        delivered(1, Counted(aggregate_id=a, aggregate_version=2, amount=7))])
    # the relay restarted between publish and position: versions 1 and 2 come again at new offsets
    await tally.handle([delivered(2, Counted(aggregate_id=a, aggregate_version=1, amount=5)),
                        delivered(3, Counted(aggregate_id=a, aggregate_version=2, amount=7)),
                        delivered(4, Counted(aggregate_id=a, aggregate_version=3, amount=1))])
    assert await total(pool, a) == 13
    assert await tally.positions(pool) == {0: 5}
    # a record below the stored position (a redelivered batch) changes nothing
    await tally.handle([delivered(4, Counted(aggregate_id=a, aggregate_version=3, amount=1))])
    assert await total(pool, a) == 13


async def test_a_rebuild_empties_the_read_model_and_the_next_batch_seeks_back_to_zero(pool):
    tally, a = Tally(pool), uuid4()
    tp = TopicPartition(Tally.topic.name, 0)
    await tally.on_assign({tp}, {tp: 0})
    await tally.handle([delivered(0, Counted(aggregate_id=a, aggregate_version=1, amount=5))])
    async with pool.acquire() as conn, conn.transaction():
        await tally.reset(conn, {0: 1}, uuid4())
    assert await total(pool, a) is None and await tally.positions(pool) == {}
    with pytest.raises(Reposition) as seek:  # a batch fetched before the rebuild is dropped
        await tally.handle([delivered(1, Counted(aggregate_id=a, aggregate_version=2, amount=7))])
    assert seek.value.positions == {tp: 0}
    await tally.handle([delivered(0, Counted(aggregate_id=a, aggregate_version=1, amount=5))])
    assert await total(pool, a) == 5
    finished = await pool.fetchval("SELECT finished_at FROM readmodel.rebuilds WHERE projection = 'test_tally'")
    assert finished is not None  # the rebuild reached the offsets recorded at its start


async def test_a_read_model_ahead_of_its_topic_is_halted_until_rebuilt(pool):
    tally = Tally(pool)
    tp = TopicPartition(Tally.topic.name, 0)
    await pool.execute("INSERT INTO readmodel.positions VALUES ('test_tally', $1, 0, 50)", Tally.topic.name)
    start = await tally.on_assign({tp}, {tp: 3})  # the topic was recreated: it holds 3 messages now
    assert start == {tp: 50}
    with pytest.raises(ProjectionHalted, match="replay --projection test_tally"):
        await tally.handle([delivered(0, Counted(aggregate_id=uuid4(), aggregate_version=1, amount=1))])
    async with pool.acquire() as conn, conn.transaction():
        await tally.reset(conn, {0: 3}, uuid4())
    assert tally.state.halted is None


def item(sku: str, updated_at: datetime, **kw: Any) -> PrimaItemChanged:
    return PrimaItemChanged(sku=sku, item_id=f"ITM-{sku}", description=sku, item_type=kw.pop("item_type", "stock"),
                            active=kw.pop("active", True), updated_at=updated_at, polled_at=updated_at, **kw)


async def test_the_item_master_keeps_the_newest_fact_per_sku(pool):
    await pool.execute("TRUNCATE readmodel.item_master")
    projection = ItemMasterProjection(pool)
    tp = TopicPartition(projection.topic.name, 0)
    await projection.on_assign({tp}, {tp: 0})
    kit = item("KIT", T, item_type="bundle", components=(BundleComponent(sku="A", quantity=2),))
    await projection.handle([Delivery(item("A", T), projection.topic.name, 0, 0, b"A"),
                             Delivery(kit, projection.topic.name, 0, 1, b"KIT"),
                             Delivery(item("A", T + timedelta(minutes=5), active=False), projection.topic.name, 0, 2,
                                      b"A")])
    # an older fact delivered late changes nothing
    await projection.handle([Delivery(item("A", T + timedelta(minutes=1)), projection.topic.name, 0, 3, b"A")])
    found = await items_for(pool, ["A", "KIT", "NONE"])
    assert set(found) == {"A", "KIT"}
    assert found["A"].active is False
    assert found["KIT"].item_type == "bundle" and [(c.sku, c.quantity) for c in found["KIT"].components] == [("A", 2)]


async def test_the_item_master_orders_by_primas_change_sequence_not_the_clock(pool):
    """Two changes of one item with the same updated_at (a late commit): the later change in
    Prima's sequence wins, in whatever order the facts come."""
    await pool.execute("TRUNCATE readmodel.item_master")
    projection = ItemMasterProjection(pool)
    tp = TopicPartition(projection.topic.name, 0)
    await projection.on_assign({tp}, {tp: 0})
    first = item("B", T, change_id=7)
    second = item("B", T, change_id=8, active=False)
    await projection.handle([Delivery(second, projection.topic.name, 0, 0, b"B")])
    await projection.handle([Delivery(first, projection.topic.name, 0, 1, b"B")])  # delivered late
    assert (await items_for(pool, ["B"]))["B"].active is False
