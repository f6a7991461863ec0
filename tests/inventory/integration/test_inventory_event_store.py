"""The inventory application on the real PostgreSQL event store: a batch loads its aggregates in
one query (load_many) and gives the same decisions as loading them one by one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from contracts.inventory import PrimaStockLevel, ShopifyLevel, ShopifyVariantObserved
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import StockItem
from services.config import Settings

pytestmark = pytest.mark.integration
LOC = "gid://shopify/Location/1"
POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))


@pytest.fixture(scope="module")
def inventory(settings, database_url):
    # its own schema: the running relay must not pick these test events up
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS event_store_test")
    env = Settings(database_url=database_url, event_store_schema="event_store_test").eventsourcing_env(
        create_tables=True)
    app = InventoryApplication(env=env)
    yield app
    app.close()


def test_a_batch_loads_its_aggregates_at_once_and_decides_as_one_by_one(inventory):
    prefix = f"ES-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    skus = [f"{prefix}-{i}" for i in range(50)]
    inventory.handle([PrimaStockLevel(sku=s, warehouse="WH-MAIN", available=i, change_id=1, changed_at=now,
                                      polled_at=now) for i, s in enumerate(skus)], POLICY, now)
    ids = [StockItem.create_id(s, LOC) for s in skus]

    loaded = inventory.load_many(ids + [uuid.uuid4()])

    assert set(loaded) == set(ids)  # an unknown id is simply absent
    for aggregate_id in ids:
        one = inventory.repository.get(aggregate_id)
        assert (loaded[aggregate_id].version, loaded[aggregate_id].desired) == (one.version, one.desired)

    result = inventory.handle([ShopifyVariantObserved(
        sku=s, variant_id=f"v-{s}", product_id=f"p-{s}", product_status="ACTIVE",
        inventory_item_id=f"gid://shopify/InventoryItem/{i}", levels=(ShopifyLevel(location_id=LOC, available=0),),
        observed_at=now) for i, s in enumerate(skus)], POLICY, now)
    assert result.pushes == sum(1 for i in range(50) if max(0, i - 2) != 0)
    assert inventory.find_stock(skus[10], LOC).pending["quantity"] == 8
