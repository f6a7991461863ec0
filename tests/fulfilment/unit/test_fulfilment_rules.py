"""Given-when-then on the fulfilment rules (domain/fulfilment/rules.py, carriers.py): the
order's lines from its sales order, despatched units to Shopify line quantities (whole bundles
only), quantities to lineItemsByFulfillmentOrder (never above remaining, a refusal that says
why), carrier names to Shopify's tracking companies, and the keys. Pure: no aggregate, no I/O."""

from __future__ import annotations

import pytest

from domain.fulfilment.carriers import (
    SHOPIFY_TRACKING_COMPANIES,
    CarrierMap,
    tracking_for,
)
from domain.fulfilment.rules import (
    Refusal,
    after_fulfilment,
    allocate,
    attribute,
    fulfillable,
    fulfilment_key,
    order_lines,
    tracking_key,
)
from domain.fulfilment.values import (
    Component,
    FulfillmentOrderLineQuantity,
    FulfillmentOrderLines,
    LineQuantity,
    OrderLineRecord,
)
from tests.fulfilment.builders import (
    MUG_LINE,
    SET_LINE,
    TEE_LINE,
    despatch,
    fulfillment_order,
    parcel,
    sales_order_lines,
)

LINES = order_lines(sales_order_lines())


def quantities(*pairs: tuple[int, int]) -> tuple[LineQuantity, ...]:
    return tuple(LineQuantity(line_id=line, quantity=quantity) for line, quantity in pairs)


# ----------------------------------------------------------------------------- the order's lines


def test_given_a_sales_order_with_a_bundle_when_read_back_then_one_record_per_shopify_line():
    assert LINES == (
        OrderLineRecord(line_id=MUG_LINE, sku="MUG", quantity=2),
        OrderLineRecord(line_id=TEE_LINE, sku="TEE", quantity=1),
        # MUG-S split over two prices (3 + 1 units) adds up; 2 bundles; the gift card is not Prima's
        OrderLineRecord(line_id=SET_LINE, sku="GIFT-SET", quantity=2,
                        components=(Component("TEE-S", 1), Component("MUG-S", 2))),
    )
    assert LINES[2].units_of("MUG-S") == 4 and LINES[2].units_of("MUG") == 0


# ----------------------------------------------------------------------------- despatched units


def test_given_despatch_lines_naming_their_shopify_line_when_attributed_then_they_count_for_that_line():
    found = attribute([despatch("DN-1", ("MUG", 2, MUG_LINE), ("TEE-S", 1, SET_LINE))], LINES)
    assert dict(found.units) == {(MUG_LINE, "MUG"): 2, (SET_LINE, "TEE-S"): 1}
    assert found.unknown == ()


def test_given_lines_without_a_shopify_line_when_attributed_then_by_sku_and_accumulated_across_notes():
    two_mug_lines = (OrderLineRecord(1, "MUG", 2), OrderLineRecord(2, "MUG", 3))
    found = attribute([despatch("DN-1", ("MUG", 3)), despatch("DN-2", ("MUG", 1))], two_mug_lines)
    assert dict(found.units) == {(1, "MUG"): 2, (2, "MUG"): 2}


def test_given_a_sku_no_line_holds_when_attributed_then_it_is_named():
    found = attribute([despatch("DN-1", ("MUG", 1)), despatch("DN-2", ("LAMP", 1))], LINES)
    assert found.unknown == (("DN-2", "LAMP"),)


# ----------------------------------------------------------------------------- units -> quantities


def test_given_a_plain_line_despatched_in_part_then_the_rest_when_fulfilled_then_each_time_what_is_new():
    first = attribute([despatch("DN-1", ("MUG", 1))], LINES).units
    assert fulfillable(LINES, first, {}) == quantities((MUG_LINE, 1))
    both = attribute([despatch("DN-1", ("MUG", 1)), despatch("DN-2", ("MUG", 1))], LINES).units
    assert fulfillable(LINES, both, {MUG_LINE: 1}) == quantities((MUG_LINE, 1))
    assert fulfillable(LINES, both, {MUG_LINE: 2}) == ()


def test_given_a_bundle_with_one_component_despatched_when_fulfilled_then_nothing_until_every_component():
    only_tees = attribute([despatch("DN-1", ("TEE-S", 2))], LINES).units
    assert fulfillable(LINES, only_tees, {}) == ()
    with_mugs = attribute([despatch("DN-1", ("TEE-S", 2)), despatch("DN-2", ("MUG-S", 4))], LINES).units
    assert fulfillable(LINES, with_mugs, {}) == quantities((SET_LINE, 2))


def test_given_components_for_one_and_a_half_bundles_when_fulfilled_then_one_whole_bundle_only():
    units = attribute([despatch("DN-1", ("TEE-S", 2), ("MUG-S", 3))], LINES).units
    assert fulfillable(LINES, units, {}) == quantities((SET_LINE, 1))
    assert fulfillable(LINES, units, {SET_LINE: 1}) == ()
    rest = attribute([despatch("DN-1", ("TEE-S", 2), ("MUG-S", 3)), despatch("DN-2", ("MUG-S", 1))], LINES).units
    assert fulfillable(LINES, rest, {SET_LINE: 1}) == quantities((SET_LINE, 1))


def test_given_more_despatched_than_ordered_when_fulfilled_then_never_above_the_line():
    units = attribute([despatch("DN-1", ("TEE", 3))], LINES).units
    assert fulfillable(LINES, units, {}) == quantities((TEE_LINE, 1))


# ----------------------------------------------------------------------------- allocation


def test_given_a_line_over_two_fulfillment_orders_when_allocated_then_never_above_what_each_has_left():
    # two fulfillment orders of one location (a split): one fulfilment may take both
    orders = (fulfillment_order(1, (MUG_LINE, 1), (TEE_LINE, 1)), fulfillment_order(2, (MUG_LINE, 1)))
    allocation = allocate(quantities((MUG_LINE, 2), (TEE_LINE, 1)), orders)
    assert allocation.ok
    assert allocation.groups == (
        FulfillmentOrderLines("gid://shopify/FulfillmentOrder/1", (
            FulfillmentOrderLineQuantity(f"gid://shopify/FulfillmentOrderLineItem/1{MUG_LINE}", 1),
            FulfillmentOrderLineQuantity(f"gid://shopify/FulfillmentOrderLineItem/1{TEE_LINE}", 1))),
        FulfillmentOrderLines("gid://shopify/FulfillmentOrder/2", (
            FulfillmentOrderLineQuantity(f"gid://shopify/FulfillmentOrderLineItem/2{MUG_LINE}", 1),)),
    )


def test_given_lines_whole_only_across_two_locations_when_allocated_then_refused_naming_the_locations():
    # fulfillmentCreate takes fulfillment orders "assigned to the same location" (its reference)
    orders = (fulfillment_order(1, (MUG_LINE, 1), (TEE_LINE, 1)),
              fulfillment_order(2, (MUG_LINE, 1), location="gid://shopify/Location/2"))
    allocation = allocate(quantities((MUG_LINE, 2), (TEE_LINE, 1)), orders)
    assert not allocation.ok and allocation.groups == ()
    assert {r.reason for r in allocation.refused} == {Refusal.SEVERAL_LOCATIONS}
    mug = next(r for r in allocation.refused if r.line_id == MUG_LINE)
    assert "gid://shopify/Location/1, gid://shopify/Location/2" in mug.describe()
    assert "move them to one location in Shopify, then release" in mug.describe()


def test_given_a_second_location_that_holds_every_line_when_allocated_then_that_location_alone():
    orders = (fulfillment_order(1, (MUG_LINE, 1)),
              fulfillment_order(2, (MUG_LINE, 2), (TEE_LINE, 1), location="gid://shopify/Location/2"))
    allocation = allocate(quantities((MUG_LINE, 2), (TEE_LINE, 1)), orders)
    assert allocation.ok
    assert [g.fulfillment_order_id for g in allocation.groups] == ["gid://shopify/FulfillmentOrder/2"]


def test_given_a_closed_order_with_nothing_left_and_an_open_one_when_allocated_then_the_open_one_only():
    orders = (fulfillment_order(1, (MUG_LINE, 0), status="CLOSED"), fulfillment_order(2, (MUG_LINE, 2)))
    allocation = allocate(quantities((MUG_LINE, 2)), orders)
    assert [g.fulfillment_order_id for g in allocation.groups] == ["gid://shopify/FulfillmentOrder/2"]


@pytest.mark.parametrize(("status", "reason"), [("ON_HOLD", Refusal.ON_HOLD), ("CLOSED", Refusal.CLOSED),
                                                ("CANCELLED", Refusal.CANCELLED),
                                                ("SCHEDULED", Refusal.NOT_FULFILLABLE)])
def test_given_a_fulfillment_order_that_cannot_be_fulfilled_when_allocated_then_refused_with_why(status, reason):
    allocation = allocate(quantities((MUG_LINE, 1), (TEE_LINE, 1)),
                          (fulfillment_order(1, (MUG_LINE, 2), (TEE_LINE, 1), status=status),))
    assert not allocation.ok and allocation.groups == ()
    assert [(r.line_id, r.reason) for r in allocation.refused] == [(MUG_LINE, reason), (TEE_LINE, reason)]
    assert status.lower() in allocation.refused[0].describe()


def test_given_a_quantity_above_remaining_when_allocated_then_nothing_is_sent_and_the_line_is_named():
    orders = (fulfillment_order(1, (MUG_LINE, 1), (TEE_LINE, 1)),)
    allocation = allocate(quantities((MUG_LINE, 2), (TEE_LINE, 1)), orders)
    assert allocation.groups == ()
    assert [(r.line_id, r.wanted, r.available, r.reason) for r in allocation.refused] == [
        (MUG_LINE, 2, 1, Refusal.ABOVE_REMAINING)]


def test_given_a_line_removed_by_an_edit_or_already_fulfilled_when_allocated_then_refused_with_why():
    removed = allocate(quantities((TEE_LINE, 1)), (fulfillment_order(1, (MUG_LINE, 2)),))
    assert [r.reason for r in removed.refused] == [Refusal.NOT_ON_ANY]
    nothing_left = allocate(quantities((MUG_LINE, 1)), (fulfillment_order(1, (MUG_LINE, 0), (TEE_LINE, 1),
                                                                         status="IN_PROGRESS"),))
    assert [r.reason for r in nothing_left.refused] == [Refusal.NOTHING_LEFT]


def test_given_a_fulfilment_when_applied_to_the_fulfillment_orders_then_remaining_falls_and_status_follows():
    orders = (fulfillment_order(1, (MUG_LINE, 2), (TEE_LINE, 1)), fulfillment_order(2, (SET_LINE, 1)))
    first = after_fulfilment(orders, allocate(quantities((MUG_LINE, 1)), orders).groups)
    assert first[0].status == "IN_PROGRESS" and [i.remaining for i in first[0].lines] == [1, 1]
    assert first[1] == orders[1]
    done = after_fulfilment(first, allocate(quantities((MUG_LINE, 1), (TEE_LINE, 1)), first).groups)
    assert done[0].status == "CLOSED"


# ----------------------------------------------------------------------------- carriers


@pytest.mark.parametrize(("prima", "shopify"), [
    ("Royal Mail", "Royal Mail"), ("ROYAL MAIL", "Royal Mail"), ("Parcelforce Worldwide", "Parcelforce"),
    ("DPD", "DPD"), ("DPD UK", "DPD UK"), ("dpd-uk", "DPD UK"), ("UPS", "UPS"), ("FedEx", "FedEx"),
    ("Fed Ex", "FedEx"), ("DHL", "DHL Express"), ("DHL Express", "DHL Express"), ("Evri", "Evri"),
    ("Hermes", "Evri"), ("USPS", "USPS"), ("Yodel", "Yodel"), ("ontrac", "OnTrac"), ("Whistl", "Whistl"),
])
def test_given_a_known_carrier_name_when_normalised_then_shopifys_name(prima, shopify):
    assert CarrierMap().company(prima) == shopify
    assert shopify in SHOPIFY_TRACKING_COMPANIES


def test_given_a_configured_map_when_normalised_then_it_wins_over_the_defaults():
    uk = CarrierMap({"DPD": "DPD UK", "Hermes": "Hermes"})
    assert uk.company("dpd") == "DPD UK" and uk.company("HERMES") == "Hermes" and uk.company("UPS") == "UPS"


def test_given_a_configured_name_shopify_does_not_list_when_the_map_is_made_then_refused():
    with pytest.raises(ValueError, match="Royal mail"):
        CarrierMap({"RM": "Royal mail"})


def test_given_parcels_of_a_known_carrier_when_tracked_then_shopify_builds_the_urls():
    tracking, warnings = tracking_for([parcel(2, "royal mail", "RM2"), parcel(1, "Royal Mail", "RM1")], CarrierMap())
    assert (tracking.company, tracking.numbers, tracking.urls, warnings) == ("Royal Mail", ("RM1", "RM2"), (), ())


def test_given_an_unknown_carrier_with_urls_when_tracked_then_sent_as_named_with_its_urls():
    tracking, warnings = tracking_for([parcel(1, "Speedy Couriers Ltd", "SC1", "https://speedy.example/t/SC1")],
                                      CarrierMap())
    assert tracking.company == "Speedy Couriers Ltd" and tracking.urls == ("https://speedy.example/t/SC1",)
    assert warnings == ()


def test_given_an_unknown_carrier_without_a_url_when_tracked_then_still_sent_but_flagged():
    tracking, warnings = tracking_for([parcel(1, "Speedy Couriers Ltd", "SC1")], CarrierMap())
    assert tracking.company == "Speedy Couriers Ltd" and tracking.numbers == ("SC1",) and tracking.urls == ()
    assert warnings == ("parcel 1: 'Speedy Couriers Ltd' is an unknown carrier and has no tracking url",)


def test_given_a_tracking_url_shopify_would_refuse_when_tracked_then_left_out_and_warned():
    # Shopify's `urls` is [URL!]: a bad one makes it refuse the whole request (issue 10 review)
    tracking, warnings = tracking_for([parcel(1, "Speedy Couriers Ltd", "SC1", "www.speedy.example/t SC1"),
                                       parcel(2, "Speedy Couriers Ltd", "SC2", "https://speedy.example/t/SC2")],
                                      CarrierMap())
    assert tracking.numbers == ("SC1", "SC2") and tracking.urls == ()  # urls pair by position: all or none
    assert any("'www.speedy.example/t SC1' is not an http(s) URL: left out" in w for w in warnings)
    assert any("parcel 1" in w and "has no tracking url" in w for w in warnings)


def test_given_parcels_of_two_carriers_when_tracked_then_the_first_company_and_a_warning():
    tracking, warnings = tracking_for([parcel(1, "DPD", "D1", "https://dpd.example/D1"),
                                       parcel(2, "UPS", "U1", "https://ups.example/U1")], CarrierMap())
    assert tracking.company == "DPD" and tracking.urls == ("https://dpd.example/D1", "https://ups.example/U1")
    assert warnings == ("parcels of several carriers sent under one company, DPD",)


def test_given_a_parcel_without_its_number_yet_when_tracked_then_only_the_numbers_known():
    tracking, _ = tracking_for([parcel(1, "DPD", "D1"), parcel(2, "DPD", "")], CarrierMap())
    assert tracking.numbers == ("D1",)


# ----------------------------------------------------------------------------- keys


def test_given_a_despatch_when_keyed_then_one_key_per_despatch_and_one_per_tracking_version():
    assert fulfilment_key("DN-000123") == fulfilment_key("DN-000123") == "prima-despatch:DN-000123"
    assert tracking_key("DN-000123", 2) != tracking_key("DN-000123", 3)
