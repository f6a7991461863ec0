"""Given-when-then on the bundle rule (domain/orders/bundles.py): a bundle line's price, discount
and tax lines spread over its components' units, equal weight per unit (Prima's item master
has no list price), the remainder cents on the last units, so that the component lines add up
to the bundle line exactly. Pure: no aggregate, no I/O."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.catalog.items import Component, ItemType, PrimaItem
from domain.orders.bundles import (
    ComponentLine,
    KitComponent,
    component_skus,
    components_of,
    expand,
    spread_memo,
)

D = Decimal
TEE = PrimaItem(item_id="ITM-TEE", sku="TEE", description="Tee")
MUG = PrimaItem(item_id="ITM-MUG", sku="MUG", description="Mug")
CAP = PrimaItem(item_id="ITM-CAP", sku="CAP", description="Cap")
GIFT_SET = (KitComponent(TEE, 1), KitComponent(MUG, 2))  # one tee and two mugs: 3 units per bundle


def summed(lines: tuple[ComponentLine, ...]) -> tuple[Decimal, Decimal, tuple[Decimal, ...]]:
    """(gross, discount, each tax line) over the component lines."""
    width = len(lines[0].taxes) if lines else 0
    return (sum((line.gross for line in lines), D(0)), sum((line.discount for line in lines), D(0)),
            tuple(sum((line.taxes[i] for line in lines), D(0)) for i in range(width)))


def shape(lines: tuple[ComponentLine, ...]) -> list[tuple[str, int, Decimal, Decimal, Decimal]]:
    return [(line.component.item.sku, line.quantity, line.unit_price, line.discount, line.tax) for line in lines]


# ------------------------------------------------------------------------------ the rule


def test_given_a_price_that_divides_evenly_when_expanded_then_one_line_per_component_at_one_price():
    lines = expand(GIFT_SET, 1, D("30.00"), D("0.00"), (), "GBP")
    assert shape(lines) == [("TEE", 1, D("10.00"), D("0.00"), D("0")), ("MUG", 2, D("10.00"), D("0.00"), D("0"))]


def test_given_a_remainder_cent_when_expanded_then_it_goes_to_the_last_component_as_a_line_of_its_own():
    lines = expand(GIFT_SET, 1, D("10.00"), D("0.00"), (), "GBP")
    # 1000 cents over 3 units: 333 each, the one cent left to the last unit (a mug)
    assert shape(lines) == [("TEE", 1, D("3.33"), D("0.00"), D("0")), ("MUG", 1, D("3.33"), D("0.00"), D("0")),
                            ("MUG", 1, D("3.34"), D("0.00"), D("0"))]
    assert summed(lines)[0] == D("10.00")
    assert all(line.gross == line.unit_price * line.quantity for line in lines)


def test_given_more_remainder_cents_than_the_last_component_has_units_then_they_spill_onto_the_one_before():
    kit = (KitComponent(TEE, 2), KitComponent(MUG, 1))
    lines = expand(kit, 1, D("0.05"), D("0.00"), (), "GBP")  # 5 cents over 3 units: 1 each, 2 left
    assert shape(lines) == [("TEE", 1, D("0.01"), D("0.00"), D("0")), ("TEE", 1, D("0.02"), D("0.00"), D("0")),
                            ("MUG", 1, D("0.02"), D("0.00"), D("0"))]


def test_given_a_bundle_priced_below_a_cent_a_unit_when_expanded_then_a_component_is_zero_priced_and_it_adds_up():
    lines = expand(GIFT_SET, 1, D("0.02"), D("0.00"), (D("0.01"),), "GBP")
    assert shape(lines) == [("TEE", 1, D("0.00"), D("0.00"), D("0.00")), ("MUG", 2, D("0.01"), D("0.00"), D("0.01"))]
    assert summed(lines) == (D("0.02"), D("0.00"), (D("0.01"),))


def test_given_a_free_bundle_when_expanded_then_every_component_is_at_zero():
    lines = expand(GIFT_SET, 2, D("0.00"), D("0.00"), (D("0.00"),), "GBP")
    assert shape(lines) == [("TEE", 2, D("0.00"), D("0.00"), D("0.00")), ("MUG", 4, D("0.00"), D("0.00"), D("0.00"))]


def test_given_a_discount_on_the_bundle_when_expanded_then_it_is_spread_the_same_way_and_no_line_goes_negative():
    lines = expand(GIFT_SET, 1, D("30.00"), D("5.00"), (), "GBP")
    # 500 cents over 3 units: 166 each, the 2 left to the last two units (the mugs)
    assert shape(lines) == [("TEE", 1, D("10.00"), D("1.66"), D("0")), ("MUG", 2, D("10.00"), D("3.34"), D("0"))]
    assert summed(lines)[1] == D("5.00")


def test_given_a_discount_of_all_but_a_cent_then_the_cent_stays_with_the_unit_priced_a_cent_higher():
    lines = expand(GIFT_SET, 1, D("0.04"), D("0.03"), (), "GBP")  # price 1,1,2 cents; discount 1,1,1 cents
    assert all(line.gross - line.discount >= 0 for line in lines)
    assert summed(lines)[:2] == (D("0.04"), D("0.03"))


def test_given_several_tax_lines_when_expanded_then_each_tax_line_adds_up_on_its_own():
    taxes = (D("1.21"), D("2.41"), D("0.07"))  # e.g. state, county and city tax
    lines = expand(GIFT_SET, 1, D("24.00"), D("0.00"), taxes, "USD")
    assert summed(lines)[2] == taxes
    tee, mugs = lines
    assert tee.taxes == (D("0.40"), D("0.80"), D("0.02")) and mugs.taxes == (D("0.81"), D("1.61"), D("0.05"))


def test_given_a_bundle_quantity_above_one_when_expanded_then_component_units_are_bundles_times_per_bundle():
    lines = expand(GIFT_SET, 3, D("29.99"), D("3.00"), (D("5.40"),), "GBP")
    assert [(line.component.item.sku, line.quantity) for line in lines if line.component.item is TEE] == [("TEE", 3)]
    assert sum(line.quantity for line in lines if line.component.item is MUG) == 6
    assert summed(lines) == (D("89.97"), D("3.00"), (D("5.40"),))


def test_given_a_currency_without_minor_units_then_the_spreading_is_in_whole_units():
    lines = expand(GIFT_SET, 1, D("1000"), D("0"), (), "JPY")
    assert shape(lines) == [("TEE", 1, D("333"), D("0"), D("0")), ("MUG", 1, D("333"), D("0"), D("0")),
                            ("MUG", 1, D("334"), D("0"), D("0"))]


def test_a_discount_above_the_line_is_refused():
    with pytest.raises(ValueError, match="discount"):
        expand(GIFT_SET, 1, D("3.00"), D("3.01"), (), "GBP")


def test_given_a_refunded_bundle_line_then_each_component_is_credited_by_the_same_rule():
    credits = spread_memo(GIFT_SET, 2, D("20.00"), D("3.33"), "GBP")
    assert [(c.component.item.sku, c.quantity, c.amount, c.tax) for c in credits] == [
        ("TEE", 2, D("6.66"), D("1.10")), ("MUG", 4, D("13.34"), D("2.23"))]


# --------------------------------------------------------------------------- the components


def kit(*components: tuple[str, int]) -> PrimaItem:
    return PrimaItem(item_id="ITM-KIT", sku="KIT", description="Kit", item_type=ItemType.BUNDLE,
                     components=tuple(Component(sku, n) for sku, n in components))


def test_given_a_kit_whose_components_are_active_items_then_they_are_its_components_in_order():
    found, problems = components_of(kit(("TEE", 1), ("MUG", 2)), {"TEE": TEE, "MUG": MUG})
    assert found == GIFT_SET and problems == ()


def test_given_a_component_listed_twice_then_it_counts_once_with_its_units_added():
    found, _ = components_of(kit(("MUG", 1), ("TEE", 1), ("MUG", 1)), {"TEE": TEE, "MUG": MUG})
    assert found == (KitComponent(MUG, 2), KitComponent(TEE, 1))


def test_given_unknown_inactive_and_nested_components_then_each_is_named_with_its_kit():
    inner = kit(("TEE", 1))
    master = {"TEE": TEE, "CAP": PrimaItem(item_id="ITM-CAP", sku="CAP", description="Cap", active=False),
              "INNER": PrimaItem(item_id="ITM-INNER", sku="INNER", description="", item_type=ItemType.BUNDLE,
                                 components=inner.components)}
    found, problems = components_of(kit(("TEE", 1), ("NOPE", 1), ("CAP", 1), ("INNER", 1)), master)
    assert found == (KitComponent(TEE, 1),)
    assert problems == (("NOPE", "component of kit 'KIT': no Prima item with this SKU"),
                        ("CAP", "component of kit 'KIT': the Prima item is inactive"),
                        ("INNER", "component of kit 'KIT': a kit inside a kit is not expanded"))


def test_given_a_kit_without_components_then_the_kit_is_named():
    assert components_of(kit(), {}) == ((), (("KIT", "a Prima kit that lists no components"),))


def test_the_component_skus_of_the_kits_in_an_item_master():
    assert component_skus({"KIT": kit(("TEE", 1), ("MUG", 2)), "TEE": TEE}) == {"TEE", "MUG"}


# -------------------------------------------------------------------- properties: always exact

cents = st.integers(min_value=0, max_value=999_999).map(lambda n: D(n).scaleb(-2))


@st.composite
def bundle_lines(draw: st.DrawFn) -> tuple[tuple[KitComponent, ...], int, Decimal, Decimal, tuple[Decimal, ...]]:
    per_bundle = draw(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5))
    components = tuple(KitComponent(PrimaItem(item_id=f"ITM-{i}", sku=f"C{i}", description=""), n)
                       for i, n in enumerate(per_bundle))
    bundles = draw(st.integers(min_value=1, max_value=12))
    price = draw(cents)
    discount = draw(st.integers(min_value=0, max_value=int(price * 100 * bundles)).map(lambda n: D(n).scaleb(-2)))
    taxes = tuple(draw(st.lists(cents, max_size=3)))
    return components, bundles, price, discount, taxes


@given(bundle_lines())
def test_property_the_component_lines_add_up_to_the_bundle_line_exactly(line):
    components, bundles, price, discount, taxes = line
    lines = expand(components, bundles, price, discount, taxes, "USD")
    assert summed(lines) == (price * bundles, discount, taxes)
    for component in components:
        assert sum(x.quantity for x in lines if x.component == component) == bundles * component.per_bundle
    assert all(x.quantity > 0 and x.gross - x.discount >= 0 for x in lines)
    assert all(x.unit_price == x.unit_price.quantize(D("0.01")) for x in lines)
    prices = {x.unit_price for x in lines}
    assert max(prices) - min(prices) <= D("0.01")  # no unit more than a cent dearer than another
    assert len(lines) <= len(components) + 1  # only the component the cent boundary falls in splits


@given(bundle_lines())
def test_property_a_refund_credits_the_components_exactly(line):
    components, bundles, amount, _, taxes = line
    tax = sum(taxes, D("0.00"))
    credits = spread_memo(components, bundles, amount, tax, "USD")
    assert sum((c.amount for c in credits), D(0)) == amount and sum((c.tax for c in credits), D(0)) == tax
    assert [c.quantity for c in credits] == [bundles * c.per_bundle for c in components]
