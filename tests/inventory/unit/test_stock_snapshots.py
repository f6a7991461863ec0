"""StockItem and CatalogItem snapshots (issue 8): each aggregate, at every version of scenarios
that go through all their events and states, comes back from a snapshot through the inventory
application's transcoder exactly as a replay of its events gives it; a load reads only the
events after the latest snapshot, and decides as the replayed aggregate does.

Every state any test of this flow reaches is also checked by tests/inventory/conftest.py."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest
from eventsourcing.domain import DomainEvent

from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import CatalogItem, StockItem
from domain.inventory.values import (
    AutoRelease,
    ProductStatusApplied,
    ProductStatusRefusedByShopify,
)
from domain.shared.snapshots import same_state, state_of
from services.platform.settings import Settings
from tests.inventory.builders import (
    LOC,
    T0,
    accepted,
    confirmed,
    created_in_prima,
    found_stale,
    item,
    not_allocated,
    parked,
    rejected,
    release,
    stock,
    variant,
)
from tests.snapshot_check import round_trip

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))
DRAFTING = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2), draft_unpublished=True)
RETRY = AutoRelease(initial_seconds=60, max_seconds=600, horizon_seconds=86_400)


class SnapshotEveryEvent(InventoryApplication):
    snapshotting_intervals: ClassVar[dict[type, int]] = {StockItem: 1, CatalogItem: 1}


@pytest.fixture
def app():
    app = SnapshotEveryEvent(env=POPO)
    yield app
    app.close()


def last_push(app, sku):
    return app.find_stock(sku, LOC).pending


# Scenarios: each drives the aggregates of one SKU along a path of their lives.
def confirmed_then_stale(app):
    app.handle([variant("TEE", 8), stock("TEE", 12, 1)], POLICY, T0)
    app.handle([confirmed(last_push(app, "TEE"), T0 + timedelta(seconds=1))], POLICY, T0)
    app.handle([stock("TEE", 20, 2)], POLICY, T0)
    app.handle([found_stale(last_push(app, "TEE"), 7, T0 + timedelta(seconds=2))], POLICY, T0)


def rejected_then_released(app):
    app.handle([variant("MUG", 0), stock("MUG", 10, 1)], POLICY, T0)
    app.handle([rejected(last_push(app, "MUG"))], POLICY, T0)
    app.handle([release("MUG")], POLICY, T0)


def failed_then_released_by_itself(app):
    app.handle([variant("SOCK", 0), stock("SOCK", 10, 1)], POLICY, T0)
    app.handle([parked(last_push(app, "SOCK"))], POLICY, T0)
    app.auto_release(POLICY, T0 + timedelta(minutes=5), RETRY)


def allocations_pending_numbered_and_cleared(app):
    app.handle([variant("HAT", 10), stock("HAT", 12, 1)], POLICY, T0)
    app.handle([accepted(1001, ("HAT", 1)), accepted(1002, ("HAT", 2))], POLICY, T0)
    app.handle([created_in_prima(1001, 5), not_allocated(1002)], POLICY, T0)
    app.handle([stock("HAT", 11, 2, allocated_for="1001", allocated_through=5)], POLICY, T0)


def bundle_of_components(app):
    app.handle([item("KIT", "bundle", components=(("TEE", 1), ("CAP", 2))), item("CAP"), variant("KIT", 0)],
               POLICY, T0)
    app.handle([stock("TEE", 9, 11), stock("CAP", 8, 12)], POLICY, T0)


def guard_drafts_restores_and_is_refused(app):
    app.handle([item("GHOST", active=False), variant("GHOST", 0)], DRAFTING, T0)
    drafted = app.find_catalog("GHOST").status_command
    app.handle([ProductStatusApplied(command_id=drafted.command_id, sku="GHOST", product_id=drafted.product_id,
                                     status="DRAFT", occurred_at=T0 + timedelta(minutes=1))], DRAFTING, T0)
    app.handle([item("GHOST", active=True, at=T0 + timedelta(minutes=2)),
                variant("GHOST", 0, at=T0 + timedelta(minutes=3), status="DRAFT")], DRAFTING, T0)
    restoring = app.find_catalog("GHOST").status_command
    app.handle([ProductStatusRefusedByShopify(command_id=restoring.command_id, sku="GHOST",
                                              product_id=restoring.product_id, reason="product archived")],
               DRAFTING, T0)


def unmapped_warehouse(app):
    app.handle([stock("BAG", 4, 1, warehouse="WH-ELSEWHERE")], POLICY, T0)


SCENARIOS = [confirmed_then_stale, rejected_then_released, failed_then_released_by_itself,
             allocations_pending_numbered_and_cleared, bundle_of_components, guard_drafts_restores_and_is_refused,
             unmapped_warehouse]


def every_version(app):
    """Each aggregate in the store at each of its versions, as a replay of its events gives it."""
    ids = {n.originator_id for n in app.recorder.select_notifications(1, 10_000)}
    for aggregate_id in sorted(ids):
        latest = app.repository.get(aggregate_id)
        for version in range(1, latest.version + 1):
            yield app.repository.get(aggregate_id, version=version)


def declared_events(*classes):
    return {f"{cls.__name__}.{name}" for cls in classes for name, value in vars(cls).items()
            if isinstance(value, type) and issubclass(value, DomainEvent) and name not in ("Created", "Event")}


def test_every_aggregate_at_every_version_of_every_scenario_survives_a_snapshot_through_the_transcoder(app):
    for scenario in SCENARIOS:
        scenario(app)
    checked = 0
    for aggregate in every_version(app):
        assert round_trip(aggregate) == [], f"{type(aggregate).__name__} {aggregate.sku} v{aggregate.version}"
        checked += 1
    assert checked >= 60


def test_the_scenarios_reach_every_event_and_kind_of_state(app):
    for scenario in SCENARIOS:
        scenario(app)
    recorded = {n.topic.split(":", 1)[1] for n in app.recorder.select_notifications(1, 10_000)}
    missing = declared_events(StockItem, CatalogItem) - recorded
    assert not missing, f"no scenario here records {sorted(missing)}: add one to SCENARIOS"
    versions = list(every_version(app))
    stock_items = [a for a in versions if isinstance(a, StockItem)]
    reached = {
        "pending push": any(a.pending is not None for a in stock_items),
        "rejected": any(a.exception and a.exception.kind == "push_rejected" for a in stock_items),
        "failed": any(a.exception and a.exception.kind == "push_failed" and a.failed_at for a in stock_items),
        "allocation pending": any(a.allocations for a in stock_items),
        "allocation numbered": any(p.position is not None for a in stock_items for p in a.allocations.values()),
        "settled": any(a.settled for a in stock_items),
        "bundle": any(a.prima_reference and "bundle" in a.prima_reference for a in stock_items),
        "guard": any(isinstance(a, CatalogItem) and a.guard for a in versions),
        "drafted": any(isinstance(a, CatalogItem) and a.drafted_by_us for a in versions),
    }
    assert [kind for kind, seen in reached.items() if not seen] == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_aggregates_loaded_from_their_snapshots_are_the_ones_their_events_replay(app, scenario):
    scenario(app)
    ids = sorted({n.originator_id for n in app.recorder.select_notifications(1, 1000)})
    before = app.load_stats.from_snapshot

    loaded = app.load_many(ids)

    assert app.load_stats.from_snapshot == before + len(ids)
    for aggregate_id in ids:
        assert same_state(state_of(app.repository.get(aggregate_id)), state_of(loaded[aggregate_id])) == []


def test_a_stock_item_with_many_events_loads_from_its_latest_snapshot_and_decides_the_same():
    """The defect: every load replayed all of a StockItem's events (a busy SKU gets thousands)."""
    app = InventoryApplication(env=POPO)  # its own interval: a snapshot every 100 events
    app.handle([variant("TEE", 0)], POLICY, T0)
    for change in range(1, 126):  # two events a change (Prima's level, the desired level), a push each
        app.handle([stock("TEE", 10 + change % 7, change)], POLICY, T0 + timedelta(seconds=change))
    aggregate_id = StockItem.create_id("TEE", LOC)
    replayed = app.repository.get(aggregate_id)
    assert replayed.version > 300
    latest = (replayed.version // 100) * 100
    before = (app.load_stats.events, app.load_stats.from_snapshot)

    loaded = app.load_many([aggregate_id])[aggregate_id]

    assert (app.load_stats.events - before[0], app.load_stats.from_snapshot - before[1]) == (
        replayed.version - latest, 1)
    assert same_state(state_of(replayed), state_of(loaded)) == []
    # the one from the snapshot decides as the one replayed: the same push, issued after the last
    for aggregate in (replayed, loaded):
        aggregate.record_prima_stock(3, 999, POLICY.rules, T0)
    assert loaded.pending == replayed.pending and loaded.pending.issued_at > T0 + timedelta(seconds=125)


def test_the_snapshot_interval_is_a_setting_each_application_reads_under_its_own_name():
    """Settings.inventory_snapshot_interval reaches the inventory application (as
    INVENTORY_SNAPSHOT_INTERVAL in its env) for every class it snapshots; a bad value stops it."""
    env = Settings(inventory_snapshot_interval=7, orders_snapshot_interval=3).eventsourcing_env()
    app = InventoryApplication(env={**env, **POPO})
    assert app.snapshot_intervals == {StockItem: 7, CatalogItem: 7}
    app.handle([variant("TEE", 0)], POLICY, T0)
    for change in range(1, 11):
        app.handle([stock("TEE", 10 + change % 7, change)], POLICY, T0 + timedelta(seconds=change))
    aggregate_id = StockItem.create_id("TEE", LOC)
    version = app.repository.get(aggregate_id).version

    snapshots = [s.originator_version for s in app.snapshots.get(aggregate_id)]

    assert version > 14 and snapshots == list(range(7, version + 1, 7))
    assert InventoryApplication(env=POPO).snapshot_intervals == {StockItem: 100, CatalogItem: 100}  # the default
    for bad in ("0", "-5", "ten"):
        with pytest.raises(ValueError, match="INVENTORY_SNAPSHOT_INTERVAL"):
            InventoryApplication(env={**POPO, "INVENTORY_SNAPSHOT_INTERVAL": bad})
