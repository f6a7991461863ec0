"""The rules a Prima despatch note meets to become a PrimaDespatchRecorded fact
(contracts/prima/despatches.py), as the poller applies them to each record of `GET /v1/despatches`:
the Shopify order id comes from the external reference, change and version agree, parcels are
numbered once, and parcel contents, when recorded, add up to the note's lines. A note that breaks
one is refused (the poller dead-letters it)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.prima.despatches import PrimaDespatchRecorded, shopify_order_id_of

POLLED_AT = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


def note(**changes: Any) -> dict[str, Any]:
    """A note as the Prima sandbox serves it: a kit's components and a tee, in two parcels."""
    body: dict[str, Any] = {
        "despatch_id": "DN-000007", "version": 1, "change_id": 41, "change": "despatched",
        "changed_at": "2026-12-01T00:20:00Z", "sales_order_number": "SO-000012",
        "external_reference": "5923048358213", "warehouse": "WH-MAIN", "despatched_at": "2026-12-01T00:19:30Z",
        "lines": [
            {"line_number": 1, "external_line_id": 13512345678901, "sku": "TEE-BLK-M", "quantity": 2},
            {"line_number": 2, "external_line_id": 13512345678902, "sku": "MUG-STONE", "quantity": 2},
        ],
        "parcels": [
            {"parcel_number": 1, "carrier": "DPD", "tracking_number": "15501234567890",
             "tracking_url": "https://track.dpd.co.uk/parcels/15501234567890",
             "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]},
            {"parcel_number": 2, "carrier": "Royal Mail", "tracking_number": None, "tracking_url": None,
             "lines": [{"sku": "MUG-STONE", "quantity": 2}]},
        ],
    }
    body.update(changes)
    return body


def refused(record: Any) -> str:
    with pytest.raises((ValidationError, TypeError)) as caught:
        PrimaDespatchRecorded.from_note(record, POLLED_AT)
    return str(caught.value)


def test_given_a_note_in_two_parcels_when_read_then_the_fact_carries_the_order_lines_and_parcels():
    fact = PrimaDespatchRecorded.from_note(note(), POLLED_AT)
    assert (fact.shopify_order_id, fact.key) == (5923048358213, b"5923048358213")
    assert (fact.despatch_id, fact.version, fact.change, fact.change_id) == ("DN-000007", 1, "despatched", 41)
    assert [(line.sku, line.quantity, line.line_number, line.external_line_id) for line in fact.lines] == [
        ("TEE-BLK-M", 2, 1, 13512345678901), ("MUG-STONE", 2, 2, 13512345678902)]
    assert [(p.parcel_number, p.carrier, p.tracking_number) for p in fact.parcels] == [
        (1, "DPD", "15501234567890"), (2, "Royal Mail", None)]
    assert fact.polled_at == POLLED_AT and fact.despatched_at == datetime(2026, 12, 1, 0, 19, 30, tzinfo=UTC)
    # what goes on the wire decodes to the same fact (a consumer, a re-drive)
    assert PrimaDespatchRecorded.model_validate_json(fact.model_dump_json()) == fact


def test_given_a_tracking_update_when_read_then_it_is_a_later_version_of_the_note():
    later = note(version=2, change="tracking_updated", change_id=44)
    later["parcels"][1].update(tracking_number="RM123456785GB", tracking_url="https://www.royalmail.com/track/RM1")
    fact = PrimaDespatchRecorded.from_note(later, POLLED_AT)
    assert (fact.change, fact.version, fact.parcels[1].tracking_number) == ("tracking_updated", 2, "RM123456785GB")


def test_given_no_parcel_lines_recorded_when_read_then_the_note_is_a_fact():
    body = note()
    for parcel in body["parcels"]:
        parcel["lines"] = None
    assert PrimaDespatchRecorded.from_note(body, POLLED_AT).parcels[0].lines is None


@pytest.mark.parametrize("reference", ["", "SHOP-5923", "0123", "-5", "5923048358213.0", "9" * 20, " 5923"])
def test_given_an_external_reference_that_is_no_shopify_order_id_when_read_then_the_note_is_refused(reference):
    assert "not a Shopify order id" in refused(note(external_reference=reference))
    with pytest.raises(ValueError, match="not a Shopify order id"):
        shopify_order_id_of(reference)


def test_given_a_shopify_order_id_that_is_not_the_reference_when_decoded_then_it_is_refused():
    wire = PrimaDespatchRecorded.from_note(note(), POLLED_AT).model_dump(mode="json")
    assert "not the order of the external reference" in str(
        pytest.raises(ValidationError, PrimaDespatchRecorded.model_validate, {**wire, "shopify_order_id": 1}).value)


@pytest.mark.parametrize(("change", "version"), [("despatched", 2), ("tracking_updated", 1)])
def test_given_change_and_version_that_disagree_when_read_then_the_note_is_refused(change, version):
    assert "despatched is version 1" in refused(note(change=change, version=version))


def test_given_two_parcels_with_one_number_when_read_then_the_note_is_refused():
    body = note()
    body["parcels"][1]["parcel_number"] = 1
    assert "same parcel_number" in refused(body)


def test_given_parcel_lines_that_do_not_add_up_to_the_note_when_read_then_the_note_is_refused():
    body = note()
    body["parcels"][1]["lines"] = [{"sku": "MUG-STONE", "quantity": 1}]
    assert "do not add up" in refused(body)
    some = note()
    some["parcels"][1]["lines"] = None
    assert "some parcels" in refused(some)


@pytest.mark.parametrize("breaks", [
    lambda n: n.pop("external_reference"),
    lambda n: n.update(lines=[]),
    lambda n: n.update(parcels=[]),
    lambda n: n["lines"][0].update(quantity=0),
    lambda n: n["lines"][0].update(quantity=True),
    lambda n: n.update(change_id=2**63),
    lambda n: n["parcels"][0].update(carrier="DPD\x00"),
    lambda n: n.update(change="returned"),
], ids=["no-reference", "no-lines", "no-parcels", "zero-quantity", "bool-quantity", "change-id-beyond-int64",
        "nul-in-carrier", "unknown-change"])
def test_given_a_note_that_breaks_the_wire_rules_when_read_then_it_is_refused(breaks):
    body = copy.deepcopy(note())
    breaks(body)
    assert refused(body)


def test_given_a_record_that_is_no_object_when_read_then_it_is_refused():
    assert "JSON object" in refused(["DN-000007"])
