"""The inventory application on the real PostgreSQL event store: a batch loads its aggregates in
one query (load_many) and gives the same decisions as loading them one by one; the domain values
its events carry come back from PostgreSQL as the same types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import StockItem
from domain.inventory.values import InventoryPush, PushException
from services.platform.settings import Settings
from tests.inventory.builders import LOC, rejected, release, stock, variant

pytestmark = pytest.mark.integration
POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))


@pytest.fixture(scope="module")
def inventory(settings, database_url):
    # its own schema: the running relay must not pick these test events up
    schema = f"event_store_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    env = Settings(database_url=database_url, event_store_schema=schema).eventsourcing_env(create_tables=True)
    app = InventoryApplication(env=env)
    yield app
    app.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_batch_loads_its_aggregates_at_once_and_decides_as_one_by_one(inventory):
    prefix = f"ES-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    skus = [f"{prefix}-{i}" for i in range(50)]
    inventory.handle([stock(s, i, 1) for i, s in enumerate(skus)], POLICY, now)
    ids = [StockItem.create_id(s, LOC) for s in skus]

    loaded = inventory.load_many(ids + [uuid.uuid4()])

    assert set(loaded) == set(ids)  # an unknown id is simply absent
    for aggregate_id in ids:
        one = inventory.repository.get(aggregate_id)
        assert (loaded[aggregate_id].version, loaded[aggregate_id].desired) == (one.version, one.desired)

    result = inventory.handle([variant(s, 0, at=now, item=f"gid://shopify/InventoryItem/{i}")
                               for i, s in enumerate(skus)], POLICY, now)
    assert result.pushes == sum(1 for i in range(50) if max(0, i - 2) != 0)
    assert result.saved_aggregates == 100  # each SKU's StockItem and CatalogItem, in one transaction
    pending = inventory.find_stock(skus[10], LOC).pending
    assert isinstance(pending, InventoryPush) and pending.quantity == 8
    assert inventory.load_many([StockItem.create_id(skus[10], LOC)])[StockItem.create_id(skus[10], LOC)].pending \
        == pending  # the batch loader decodes the same values


def test_domain_values_come_back_from_postgresql_as_themselves(inventory):
    sku = f"ES-VALUES-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    inventory.handle([variant(sku, 0, at=now), stock(sku, 10, 1)], POLICY, now)
    push = inventory.find_stock(sku, LOC).pending
    assert isinstance(push, InventoryPush) and push.issued_at == now and push.command_id
    inventory.handle([rejected(push)], POLICY, now)
    held = inventory.find_stock(sku, LOC).exception
    assert held == PushException(kind="push_rejected", code="ITEM_NOT_STOCKED_AT_LOCATION", reason="not stocked",
                                 command_id=push.command_id)
    assert inventory.handle([release(sku, at=now)], POLICY, now).releases == [(sku, LOC, True)]
    again = inventory.find_stock(sku, LOC)
    assert (again.exception, again.pending.quantity, again.pending.origin) == (None, 8, "operator")
