"""StockItem and CatalogItem decisions, given-when-then on their events (in-memory event store:
pure logic only; the same application runs on PostgreSQL in the integration and e2e tests).

The facts are the domain's own values (domain/inventory/values.py), and so are the commands the
aggregates record: a reloaded StockItem's pending push is an InventoryPush, not a dict."""

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import get_args
from uuid import uuid4

import pytest
from eventsourcing.domain import DomainEvent

from contracts.inventory.events import StockEvent
from contracts.topics import members_of
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import CatalogItem, StockItem
from domain.inventory.values import (
    InventoryPush,
    ProductStatusApplied,
    ProductStatusChange,
    PushException,
)
from services.inventory.outbox import ROUTES
from tests.inventory.builders import (
    LOC,
    LOC2,
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

POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))


@pytest.fixture
def app():
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def names(app, aggregate_id):
    return [type(e).__name__ for e in app.events.get(aggregate_id)]


def pushes(app, sku, location=LOC) -> list[InventoryPush]:
    found = app.find_stock(sku, location)
    return [e.command for e in app.events.get(found.id) if isinstance(e, StockItem.PushRequested)]


def test_a_stock_change_for_a_sku_sold_in_shopify_pushes_available_minus_buffer(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    assert command.quantity == 8
    assert command.change_from_quantity == 0
    assert command.inventory_item_id == "gid://shopify/InventoryItem/1"
    assert command.reference_document_uri == "prima://stock/WH-MAIN/TEE?change=1"
    assert (command.origin, command.issued_at) == ("prima_change", T0)


def test_no_push_when_the_desired_level_equals_shopifys(app):
    app.handle([variant("TEE", 8), stock("TEE", 10, 1)], POLICY, T0)
    assert pushes(app, "TEE") == []
    assert app.find_stock("TEE", LOC).desired == 8


def test_no_second_push_for_the_same_desired_level_while_one_is_pending(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    app.handle([stock("TEE", 10, 2)], POLICY, T0)  # a new Prima record, same quantity
    assert len(pushes(app, "TEE")) == 1


def test_a_repeated_or_older_prima_record_changes_nothing(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 5)], POLICY, T0)
    before = names(app, app.find_stock("TEE", LOC).id)
    result = app.handle([stock("TEE", 10, 5), stock("TEE", 3, 4)], POLICY, T0)
    assert result.applied == 0 and result.ignored == 2
    assert names(app, app.find_stock("TEE", LOC).id) == before


def test_negative_prima_availability_is_clamped_to_zero(app):
    app.handle([variant("TEE", 4), stock("TEE", -3, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    assert command.quantity == 0


def test_a_confirmed_push_becomes_the_level_to_compare_against(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([confirmed(command, T0 + timedelta(seconds=1))], POLICY, T0)
    found = app.find_stock("TEE", LOC)
    assert (found.shopify_level, found.pending) == (8, None)
    app.handle([stock("TEE", 7, 2)], POLICY, T0)
    second = pushes(app, "TEE")[-1]
    assert (second.quantity, second.change_from_quantity) == (5, 8)


def test_a_new_level_while_a_push_is_pending_supersedes_it_with_the_same_compare_value(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1), stock("TEE", 6, 2)], POLICY, T0)
    first, second = pushes(app, "TEE")
    assert (first.quantity, second.quantity) == (8, 4)
    assert second.change_from_quantity == 0  # Shopify has confirmed nothing since
    assert first.command_id != second.command_id


def test_the_peak_window_buffer_changes_the_desired_level():
    rules = BufferRules.model_validate({"default": 2, "peak": [
        {"name": "bf", "start": "2026-11-27T00:00:00Z", "end": "2026-11-30T00:00:00Z", "default": 5}]})
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=rules)
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], policy, datetime(2026, 11, 26, tzinfo=UTC))
    assert pushes(app, "TEE")[-1].quantity == 8
    app.refresh([("TEE", LOC)], policy, datetime(2026, 11, 27, 1, tzinfo=UTC))
    assert (pushes(app, "TEE")[-1].quantity, pushes(app, "TEE")[-1].origin) == (5, "buffer_change")
    assert app.find_stock("TEE", LOC).buffer_rule == "peak bf: default"
    app.close()


def test_a_sku_not_in_shopify_gets_a_desired_level_but_no_push(app):
    app.handle([stock("COMPONENT-ONLY", 10, 1)], POLICY, T0)
    found = app.find_stock("COMPONENT-ONLY", LOC)
    assert (found.desired, found.inventory_item_id) == (8, None)
    assert pushes(app, "COMPONENT-ONLY") == []


def test_a_warehouse_with_no_location_is_an_exception_not_a_guess(app):
    result = app.handle([stock("TEE", 10, 1, warehouse="WH-POPUP")], POLICY, T0)
    assert result.exceptions == ["unmapped warehouse WH-POPUP (TEE)"]
    assert app.find_stock("TEE", LOC) is None
    assert "UnmappedWarehouseFound" in names(app, CatalogItem.create_id("TEE"))
    assert app.handle([stock("TEE", 11, 2, warehouse="WH-POPUP")], POLICY, T0).exceptions == []  # once


def test_a_shopify_location_prima_does_not_feed_is_left_alone(app):
    app.handle([stock("TEE", 10, 1), variant("TEE", 0, levels=((LOC, 0), (LOC2, 7)))], POLICY, T0)
    assert app.find_stock("TEE", LOC2) is None
    assert [p.location_id for p in pushes(app, "TEE")] == [LOC]


def test_a_component_change_moves_its_bundles_level(app):
    app.handle([item("TEE"), item("MUG"), item("GIFT-SET", "bundle", components=(("TEE", 1), ("MUG", 2))),
                variant("GIFT-SET", 0), stock("TEE", 10, 1), stock("MUG", 9, 2)], POLICY, T0)
    gift = app.find_stock("GIFT-SET", LOC)
    assert gift.prima_available == 4  # min(10/1, 9/2)
    assert pushes(app, "GIFT-SET")[-1].quantity == 2  # minus the default buffer of 2
    app.handle([stock("MUG", 20, 3)], POLICY, T0)
    assert app.find_stock("GIFT-SET", LOC).prima_available == 10
    app.handle([stock("TEE", 3, 4)], POLICY, T0)
    assert app.find_stock("GIFT-SET", LOC).prima_available == 3
    assert pushes(app, "GIFT-SET")[-1].quantity == 1
    assert pushes(app, "GIFT-SET")[-1].reference_document_uri == \
        "prima://bundle/WH-MAIN/GIFT-SET?components=MUGx2,TEEx1"


def test_the_bundle_index_is_rebuilt_from_the_log(app):
    app.handle([item("GIFT-SET", "bundle", components=(("TEE", 1), ("MUG", 2)))], POLICY, T0)
    fresh = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    fresh.recorder = app.recorder
    assert fresh.load_bundle_index() == 1
    assert fresh.bundles == {"GIFT-SET": {"TEE": 1, "MUG": 2}}
    assert fresh.bundles_of["MUG"] == {"GIFT-SET"}
    fresh.close()


def test_a_bundle_that_stops_being_one_leaves_the_index(app):
    app.handle([item("GIFT-SET", "bundle", components=(("TEE", 1),))], POLICY, T0)
    app.handle([item("GIFT-SET", "stock", at=T0 + timedelta(minutes=1))], POLICY, T0)
    assert app.bundles == {} and app.bundles_of.get("TEE", set()) == set()


def test_an_observation_older_than_a_confirmed_push_is_ignored(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([confirmed(command, T0 + timedelta(seconds=5))], POLICY, T0)
    app.handle([variant("TEE", 0, at=T0 + timedelta(seconds=2))], POLICY, T0)
    assert app.find_stock("TEE", LOC).shopify_level == 8
    assert len(pushes(app, "TEE")) == 1


def test_drift_found_by_a_later_read_is_repaired(app):
    app.handle([variant("TEE", 8), stock("TEE", 10, 1)], POLICY, T0)
    app.handle([variant("TEE", 3, at=T0 + timedelta(minutes=5))], POLICY, T0)
    [command] = pushes(app, "TEE")
    assert (command.quantity, command.change_from_quantity, command.origin) == (8, 3, "full_comparison")


def test_a_rejected_push_is_an_exception_until_released(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([rejected(command)], POLICY, T0)
    exception = app.find_stock("TEE", LOC).exception
    assert exception == PushException(kind="push_rejected", code="ITEM_NOT_STOCKED_AT_LOCATION",
                                      reason="not stocked", command_id=command.command_id)
    app.handle([stock("TEE", 12, 2)], POLICY, T0)
    assert len(pushes(app, "TEE")) == 1  # no pushing into a known problem
    result = app.handle([release("TEE")], POLICY, T0)
    assert result.releases == [("TEE", LOC, True)]
    assert (pushes(app, "TEE")[-1].quantity, pushes(app, "TEE")[-1].origin) == (10, "operator")
    assert app.find_stock("TEE", LOC).exception is None


def test_a_push_the_gateway_gave_up_on_is_an_exception_until_released(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([parked(command)], POLICY, T0)
    exception = app.find_stock("TEE", LOC).exception
    assert (exception.kind, exception.code, exception.reason) == ("push_failed", "gateway_gave_up", "HTTP 503")
    assert app.handle([release("TEE")], POLICY, T0).releases == [("TEE", LOC, True)]
    assert len(pushes(app, "TEE")) == 2


def test_a_released_failed_push_pushes_again_though_the_last_known_level_is_the_desired_one(app):
    """Found by a short chaos run (10 SKU-locations never converged): a push of 8 was replaced by
    a push of 0 while it was with the gateway, which applied the 8 in Shopify and never answered
    for it; the push of 0 failed; after the release the StockItem compared desired 0 with the
    level it last knew, 0, and pushed nothing, so Shopify kept 8. The level is pushed again,
    compare-and-set against what was known: a stale answer then says what Shopify holds."""
    app.handle([variant("TEE", 0), stock("TEE", 10, 1), stock("TEE", 2, 2)], POLICY, T0)
    first, second = pushes(app, "TEE")
    assert (first.quantity, second.quantity, second.change_from_quantity) == (8, 0, 0)
    app.handle([parked(second)], POLICY, T0)

    app.handle([release("TEE")], POLICY, T0)

    latest = pushes(app, "TEE")[-1]
    assert (len(pushes(app, "TEE")), latest.quantity, latest.change_from_quantity) == (3, 0, 0)


def test_releasing_what_holds_no_exception_changes_nothing(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    result = app.handle([release("TEE"), release("NEVER-SEEN")], POLICY, T0)
    assert result.releases == [("TEE", LOC, False), ("NEVER-SEEN", LOC, False)]
    assert (result.applied, result.ignored) == (0, 2)
    assert len(pushes(app, "TEE")) == 1


def test_a_failure_of_a_superseded_command_changes_nothing(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1), stock("TEE", 6, 2)], POLICY, T0)
    first, _ = pushes(app, "TEE")
    result = app.handle([parked(first)], POLICY, T0)
    assert result.applied == 0
    assert app.find_stock("TEE", LOC).exception is None


def test_publishing_guard_lists_a_variant_without_an_active_prima_item(app):
    app.handle([variant("GHOST", 0)], POLICY, T0)
    catalog = app.find_catalog("GHOST")
    assert catalog.guard["reason"] == "no Prima item with this SKU"
    assert catalog.status_command is None  # the draft switch is off


def test_publishing_guard_drafts_the_product_when_switched_on_and_restores_it(app):
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(), draft_unpublished=True)
    app.handle([item("CAP", active=False), variant("CAP", 0)], policy, T0)
    catalog = app.find_catalog("CAP")
    assert catalog.guard["reason"] == "the Prima item is inactive"
    assert catalog.status_command.status == "DRAFT"
    app.handle([variant("CAP", 0, at=T0 + timedelta(minutes=1))], policy, T0)
    assert app.find_catalog("CAP").status_commands == 1  # asked once
    drafted = app.find_catalog("CAP").status_command
    app.handle([ProductStatusApplied(command_id=drafted.command_id, sku="CAP", product_id=drafted.product_id,
                                     status="DRAFT", occurred_at=T0 + timedelta(minutes=2))], policy, T0)
    app.handle([item("CAP", active=True, at=T0 + timedelta(minutes=3)),
                variant("CAP", 0, at=T0 + timedelta(minutes=4), status="DRAFT")], policy, T0)
    catalog = app.find_catalog("CAP")
    assert catalog.guard is None
    assert (catalog.status_command.status, catalog.status_commands) == ("ACTIVE", 2)


def test_a_variant_with_an_active_item_raises_nothing(app):
    app.handle([item("TEE"), variant("TEE", 0)], POLICY, T0)
    assert app.find_catalog("TEE").guard is None


def test_events_carry_domain_values_that_survive_the_event_store(app):
    """The store holds the domain's values, transcoded; a reloaded aggregate has them back as
    the same types (no dicts, no wire models)."""
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2), draft_unpublished=True)
    app.handle([variant("TEE", 0), stock("TEE", 10, 1), variant("CAP", 0)], policy, T0)
    [command] = pushes(app, "TEE")
    reloaded = app.repository.get(StockItem.create_id("TEE", LOC))  # from the stored events
    assert isinstance(reloaded.pending, InventoryPush)
    assert reloaded.pending == command
    assert reloaded.pending.issued_at == T0 and reloaded.pending.issued_at.tzinfo is not None
    status = app.repository.get(CatalogItem.create_id("CAP")).status_command
    assert isinstance(status, ProductStatusChange) and status.status == "DRAFT"

    app.handle([rejected(command)], policy, T0)
    assert isinstance(app.repository.get(reloaded.id).exception, PushException)
    app.handle([release("TEE")], policy, T0)
    [released] = [e for e in app.events.get(reloaded.id) if isinstance(e, StockItem.PushReleased)]
    assert isinstance(released.previous, PushException) and released.previous.command_id == command.command_id


def test_every_aggregate_event_is_named_in_the_stock_events_contract_and_the_relay_table():
    declared = {f"{cls.__name__}.{name}" for cls in (StockItem, CatalogItem)
                for name, value in vars(cls).items() if isinstance(value, type) and issubclass(value, DomainEvent)
                and name not in ("Created", "Event")}  # the library's base classes
    published = {get_args(model.model_fields["event_type"].annotation)[0] for model in members_of(StockEvent)}
    assert declared == published
    assert declared == set(ROUTES)


# ------------------------------------------------------------- outcomes in the order of pushes


def test_a_redelivered_confirmation_of_an_older_push_does_not_clear_a_newer_ones_rejection(app):
    """Defect 4: given C1 confirmed and then C2 (newer) rejected, when the batch
    [Confirmed(C1), Rejected(C2)] is delivered again, then C2's exception stays and nothing is
    recorded: a confirmation applies only to a push not older than the newest confirmed or
    excepted one."""
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    app.handle([stock("TEE", 6, 2)], POLICY, T0)
    first, second = pushes(app, "TEE")
    batch = [confirmed(first, T0 + timedelta(seconds=1)), rejected(second)]
    app.handle(batch, POLICY, T0)
    stock_id = app.find_stock("TEE", LOC).id
    assert app.find_stock("TEE", LOC).exception.command_id == second.command_id
    before = names(app, stock_id)

    result = app.handle(batch, POLICY, T0)  # redelivered

    assert (result.applied, result.ignored) == (0, 2)
    assert names(app, stock_id) == before
    found = app.find_stock("TEE", LOC)
    assert (found.exception.kind, found.exception.command_id) == ("push_rejected", second.command_id)
    app.handle([stock("TEE", 12, 3)], POLICY, T0)
    assert len(pushes(app, "TEE")) == 2  # still held for a person: no push


def test_a_repeated_confirmation_records_nothing_again(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([confirmed(command, T0 + timedelta(seconds=1))], POLICY, T0)
    before = names(app, app.find_stock("TEE", LOC).id)
    assert app.handle([confirmed(command, T0 + timedelta(seconds=1))], POLICY, T0).applied == 0
    assert names(app, app.find_stock("TEE", LOC).id) == before


def test_a_late_confirmation_of_the_push_that_failed_clears_its_exception(app):
    """The gateway parked C1, then sent it again and Shopify took it: the exception's own push
    confirmed is news, not a duplicate."""
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([parked(command)], POLICY, T0)
    assert app.handle([confirmed(command, T0 + timedelta(minutes=1))], POLICY, T0).applied == 1
    found = app.find_stock("TEE", LOC)
    assert (found.exception, found.shopify_level) == (None, 8)


def test_a_late_confirmation_of_a_parked_push_decides_again_from_what_prima_has_now(app):
    """Found by the full chaos run (2 SKU-locations never converged): Prima's stock changed
    while the push was parked (the exception holds pushes back), then the gateway re-drove the
    parked push and Shopify took it. The confirmation cleared the exception but decided nothing,
    so Shopify kept the old level until the next full comparison."""
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([parked(command)], POLICY, T0)
    app.handle([stock("TEE", 6, 2)], POLICY, T0)
    assert len(pushes(app, "TEE")) == 1  # held back while the exception is open
    app.handle([confirmed(command, T0 + timedelta(minutes=1))], POLICY, T0 + timedelta(minutes=1))
    found = app.find_stock("TEE", LOC)
    assert found.exception is None
    latest = pushes(app, "TEE")[-1]
    assert (len(pushes(app, "TEE")), latest.quantity, latest.change_from_quantity) == (2, 4, 8)
    assert found.pending == latest


def test_a_confirmation_that_leaves_shopify_as_desired_pushes_nothing(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([parked(command)], POLICY, T0)
    app.handle([confirmed(command, T0 + timedelta(minutes=1))], POLICY, T0)
    assert len(pushes(app, "TEE")) == 1


def test_a_confirmation_of_a_push_this_stock_item_never_issued_is_ignored(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)
    [command] = pushes(app, "TEE")
    app.handle([rejected(command)], POLICY, T0)
    stranger = dataclasses.replace(command, command_id=uuid4())
    assert app.handle([confirmed(stranger, T0 + timedelta(minutes=1))], POLICY, T0).applied == 0
    assert app.find_stock("TEE", LOC).exception.kind == "push_rejected"


# ------------------------------------------- pending allocations: sales Prima has not seen yet


def events_of(app, sku, location=LOC) -> list:
    return list(app.events.get(app.find_stock(sku, location).id))


def test_an_accepted_order_holds_its_units_back_until_prima_allocates_them(app):
    """Defect 5: Shopify sold 1 (8 -> 7) and the order is accepted; Prima's figure (10) does not
    know it yet. Given the order pending, when Prima's stock moves for another reason (12), then
    the desired level still holds the sold unit back: 12 - 2 - 1 = 9, not 10."""
    app.handle([variant("TEE", 8), stock("TEE", 10, 1)], POLICY, T0)
    assert pushes(app, "TEE") == []

    app.handle([accepted(1001, ("TEE", 1))], POLICY, T0)
    found = app.find_stock("TEE", LOC)
    assert (found.pending_allocations, found.desired) == (1, 7)
    [push] = pushes(app, "TEE")
    assert (push.quantity, push.change_from_quantity, push.origin) == (7, 8, "pending_allocation")
    app.handle([confirmed(push, T0 + timedelta(seconds=1))], POLICY, T0)

    app.handle([stock("TEE", 12, 2)], POLICY, T0)  # goods received; the order not allocated yet
    assert app.find_stock("TEE", LOC).desired == 9
    assert pushes(app, "TEE")[-1].quantity == 9


def test_prima_reporting_the_allocation_ends_the_pending_allocation_without_a_push(app):
    app.handle([stock("TEE", 10, 1), accepted(1001, ("TEE", 1)), variant("TEE", 7)], POLICY, T0)
    assert app.find_stock("TEE", LOC).desired == 7 and pushes(app, "TEE") == []

    app.handle([stock("TEE", 9, 2, allocated_for="1001", allocated_through=5)], POLICY, T0)

    found = app.find_stock("TEE", LOC)
    assert (found.pending_allocations, found.desired, found.allocations) == (0, 7, {})
    assert [e.reason for e in events_of(app, "TEE") if isinstance(e, StockItem.AllocationCleared)] == [
        "allocated_by_prima"]
    assert pushes(app, "TEE") == []  # Prima's 9 - 2 is what Shopify shows: nothing to write


def test_a_rejected_order_ends_the_pending_allocation(app):
    app.handle([stock("TEE", 10, 1), accepted(1001, ("TEE", 1)), variant("TEE", 7)], POLICY, T0)
    app.handle([not_allocated(1001)], POLICY, T0)  # Prima refused the sales order: it allocated nothing
    found = app.find_stock("TEE", LOC)
    assert (found.pending_allocations, found.desired) == (0, 8)
    assert (pushes(app, "TEE")[-1].quantity, pushes(app, "TEE")[-1].origin) == (8, "pending_allocation")
    assert app.handle([not_allocated(1001)], POLICY, T0).applied == 0


def test_an_allocation_hidden_by_a_later_one_ends_by_its_sales_order_number(app):
    """Two orders allocated between two polls: the record names only the later (1002, SO-6).
    1001's sales order (SO-5) is older, so the record includes it too."""
    app.handle([stock("TEE", 10, 1), accepted(1001, ("TEE", 1)), accepted(1002, ("TEE", 1)),
                created_in_prima(1001, 5), variant("TEE", 6)], POLICY, T0)
    assert app.find_stock("TEE", LOC).pending_allocations == 2

    app.handle([stock("TEE", 8, 2, allocated_for="1002", allocated_through=6)], POLICY, T0)
    found = app.find_stock("TEE", LOC)
    assert (found.pending_allocations, found.desired) == (0, 6)

    # the other way round: the record first, the sales order's number after it
    app.handle([accepted(1003, ("TEE", 2)), stock("TEE", 5, 3, allocated_for="1004", allocated_through=9)],
               POLICY, T0)
    assert app.find_stock("TEE", LOC).pending_allocations == 2
    app.handle([created_in_prima(1003, 8)], POLICY, T0)
    assert app.find_stock("TEE", LOC).pending_allocations == 0


def test_an_order_prima_already_reported_or_one_repeated_is_not_pending_again(app):
    app.handle([variant("TEE", 7), stock("TEE", 9, 1, allocated_for="1001", allocated_through=5)], POLICY, T0)
    assert app.handle([accepted(1001, ("TEE", 1))], POLICY, T0).applied == 0  # read after its allocation
    app.handle([accepted(1002, ("TEE", 1))], POLICY, T0)
    assert app.handle([accepted(1002, ("TEE", 1))], POLICY, T0).applied == 0  # redelivered
    app.handle([stock("TEE", 8, 2, allocated_for="1002", allocated_through=6)], POLICY, T0)
    assert app.handle([accepted(1002, ("TEE", 1))], POLICY, T0).applied == 0  # redelivered after it ended
    assert app.find_stock("TEE", LOC).pending_allocations == 0


def test_an_order_line_without_a_prima_level_pends_nothing(app):
    app.handle([variant("GIFT-WRAP", 0)], POLICY, T0)  # a service: Shopify sells it, Prima stocks none
    result = app.handle([accepted(1001, ("GIFT-WRAP", 1), ("NEVER-SEEN", 1))], POLICY, T0)
    assert result.applied == 0 and app.find_stock("NEVER-SEEN", LOC) is None


def test_a_bundles_pending_allocation_ends_once_every_component_reports_it(app):
    app.handle([item("TEE"), item("MUG"), item("GIFT-SET", "bundle", components=(("TEE", 1), ("MUG", 2))),
                variant("GIFT-SET", 2), stock("TEE", 10, 1), stock("MUG", 8, 2)], POLICY, T0)
    assert app.find_stock("GIFT-SET", LOC).desired == 2  # min(10, 8/2) - 2
    app.handle([accepted(1001, ("GIFT-SET", 1)), created_in_prima(1001, 7)], POLICY, T0)
    assert app.find_stock("GIFT-SET", LOC).desired == 1

    app.handle([stock("TEE", 9, 3, allocated_for="1001", allocated_through=7)], POLICY, T0)
    assert app.find_stock("GIFT-SET", LOC).pending_allocations == 1  # the mugs not reported yet
    app.handle([stock("MUG", 6, 4, allocated_for="1001", allocated_through=7)], POLICY, T0)
    gift = app.find_stock("GIFT-SET", LOC)
    assert (gift.pending_allocations, gift.prima_available, gift.desired) == (0, 3, 1)


def test_an_allocation_index_rebuilt_from_the_log_finds_the_pending_orders(app):
    app.handle([stock("TEE", 10, 1), accepted(1001, ("TEE", 1))], POLICY, T0)
    fresh = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    fresh.recorder = app.recorder
    assert fresh.load_allocation_index() == 1
    assert fresh.pending_orders == {"1001": {StockItem.create_id("TEE", LOC)}}
    fresh.close()


# --------------------------------------------------------- a stale compare-and-set, decided again


def test_a_stale_push_takes_shopifys_level_and_decides_again_with_the_pending_allocations(app):
    """The gateway does not force the old quantity over a level that moved: it reports what
    Shopify has, and the StockItem decides again (here with the order it has just accepted)."""
    app.handle([variant("TEE", 8), stock("TEE", 12, 1)], POLICY, T0)
    [push] = pushes(app, "TEE")
    assert (push.quantity, push.change_from_quantity) == (10, 8)
    app.handle([accepted(1001, ("TEE", 1))], POLICY, T0)  # sold in Shopify meanwhile: 8 -> 7
    second = pushes(app, "TEE")[-1]
    assert second.quantity == 9

    app.handle([found_stale(second, 7, T0 + timedelta(seconds=1))], POLICY, T0)

    found = app.find_stock("TEE", LOC)
    assert found.shopify_level == 7
    third = pushes(app, "TEE")[-1]
    assert (third.quantity, third.change_from_quantity, third.origin) == (9, 7, "stale_level")
    assert app.handle([found_stale(second, 7, T0 + timedelta(seconds=1))], POLICY, T0).applied == 0
    assert app.handle([found_stale(push, 7, T0 + timedelta(seconds=1))], POLICY, T0).applied == 0  # superseded


def test_pushes_decided_in_one_batch_get_increasing_issue_times(app):
    app.handle([variant("TEE", 0), stock("TEE", 10, 1), stock("TEE", 6, 2), stock("TEE", 4, 3)], POLICY, T0)
    times = [p.issued_at for p in pushes(app, "TEE")]
    assert len(times) == 3 and times == sorted(set(times)) and times[0] == T0
    app.handle([stock("TEE", 9, 4)], POLICY, T0 - timedelta(minutes=1))  # the clock stepped back
    assert pushes(app, "TEE")[-1].issued_at > times[-1]


def test_a_pending_push_is_replaced_when_the_desired_level_returns_to_shopifys(app):
    """Shopify shows 8; Prima drops (push 4 pending) and comes back: the pending 4 would still
    be written, so 8 is asked for again."""
    app.handle([variant("TEE", 8), stock("TEE", 10, 1), stock("TEE", 6, 2)], POLICY, T0)
    [drop] = pushes(app, "TEE")
    assert drop.quantity == 4
    app.handle([stock("TEE", 10, 3)], POLICY, T0)
    back = pushes(app, "TEE")[-1]
    assert (back.quantity, back.change_from_quantity) == (8, 8)
    assert app.find_stock("TEE", LOC).pending == back


def test_an_item_change_committed_late_is_ordered_by_primas_change_sequence(app):
    """Prima's updated_at is when its transaction began: a change committed after another may
    carry an earlier one. The item-change sequence orders them as they were committed."""
    app.handle([item("CAP", active=True, at=T0 + timedelta(minutes=5), change_id=7)], POLICY, T0)
    app.handle([item("CAP", active=False, at=T0 + timedelta(minutes=4), change_id=8)], POLICY, T0)
    assert app.find_catalog("CAP").item["active"] is False
    assert app.handle([item("CAP", active=True, at=T0 + timedelta(minutes=9), change_id=7)], POLICY, T0).applied == 0
