"""The OM link availability feed's rule (services/prima/omlink/availability_feed.py `compare`): the
last snapshot stored of a product range and the page Prima answers now -> the SKU-locations to
publish and the snapshot rows to store; and an unmapped item's dead letter id, the same on every
pass."""

from __future__ import annotations

from services.prima.omlink.availability_feed import (
    Difference,
    Level,
    compare,
    unmapped_letter_id,
)


def test_given_no_snapshot_when_a_page_comes_then_every_level_is_published_and_stored():
    difference = compare({}, "WH-MAIN", {"TEE-BLK-M": 25, "TEE-BLK-L": 0, "ZIP-NAVY-L": -2})

    expected = (Level("TEE-BLK-M", "WH-MAIN", 25), Level("TEE-BLK-L", "WH-MAIN", 0),
                Level("ZIP-NAVY-L", "WH-MAIN", -2))
    assert difference == Difference(levels=expected, upserts=expected, gone=())


def test_given_the_same_levels_as_the_snapshot_then_nothing_is_published_nor_stored():
    previous = {"TEE-BLK-M": ("WH-MAIN", 25), "TEE-BLK-L": ("WH-MAIN", 12)}

    assert compare(previous, "WH-MAIN", {"TEE-BLK-M": 25, "TEE-BLK-L": 12}) == Difference()


def test_given_one_level_changed_then_only_that_sku_location_is_published():
    previous = {"TEE-BLK-M": ("WH-MAIN", 25), "TEE-BLK-L": ("WH-MAIN", 12), "SOCK-RED-S": ("WH-MAIN", 7)}

    difference = compare(previous, "WH-MAIN", {"TEE-BLK-M": 25, "TEE-BLK-L": 11, "SOCK-RED-S": 7})

    assert difference == Difference(levels=(Level("TEE-BLK-L", "WH-MAIN", 11),),
                                    upserts=(Level("TEE-BLK-L", "WH-MAIN", 11),), gone=())


def test_given_a_sku_gone_from_the_range_then_it_is_published_as_zero_and_removed_from_the_snapshot():
    previous = {"TEE-BLK-M": ("WH-MAIN", 25), "TEE-BLK-L": ("WH-MAIN", 12)}

    difference = compare(previous, "WH-MAIN", {"TEE-BLK-M": 25})

    assert difference == Difference(levels=(Level("TEE-BLK-L", "WH-MAIN", 0),), upserts=(), gone=("TEE-BLK-L",))


def test_given_a_sku_gone_and_one_new_then_both_are_published():
    difference = compare({"OLD-RED-S": ("WH-MAIN", 3)}, "WH-MAIN", {"NEW-RED-S": 4})

    assert difference.levels == (Level("NEW-RED-S", "WH-MAIN", 4), Level("OLD-RED-S", "WH-MAIN", 0))
    assert (difference.upserts, difference.gone) == ((Level("NEW-RED-S", "WH-MAIN", 4),), ("OLD-RED-S",))


def test_given_a_level_back_to_zero_or_oversold_then_it_is_a_change_like_any_other():
    previous = {"TEE-BLK-M": ("WH-MAIN", 1), "TEE-BLK-L": ("WH-MAIN", 0)}

    difference = compare(previous, "WH-MAIN", {"TEE-BLK-M": 0, "TEE-BLK-L": -1})

    assert difference.levels == (Level("TEE-BLK-M", "WH-MAIN", 0), Level("TEE-BLK-L", "WH-MAIN", -1))
    assert difference.gone == ()


def test_given_the_snapshot_warehouse_changed_then_the_new_location_is_published_and_the_old_one_zeroed():
    difference = compare({"TEE-BLK-M": ("WH-OLD", 25)}, "WH-MAIN", {"TEE-BLK-M": 25})

    assert difference.levels == (Level("TEE-BLK-M", "WH-MAIN", 25), Level("TEE-BLK-M", "WH-OLD", 0))
    assert difference.upserts == (Level("TEE-BLK-M", "WH-MAIN", 25),)


def test_given_the_same_unmapped_item_on_every_pass_then_its_dead_letter_id_is_the_same():
    first = unmapped_letter_id("N..TZZZZZ", "ODD")

    assert unmapped_letter_id("N..TZZZZZ", "ODD") == first
    assert len({first, unmapped_letter_id("N..TZZZZZ", "ODD/X"), unmapped_letter_id("A..MZZZZZ", "ODD")}) == 3
