"""Prima's despatch notes as its REST API serves them (`GET /v1/despatches?after=<cursor>`,
`GET /v1/despatches/{despatch_id}`, `GET /v1/sales-orders/{number}/despatches`; see
contracts/prima/openapi.yaml): what the warehouse shipped against a sales order, in which parcels.

The feed is a change log in `change_id` order: a note appears once when it is despatched
(`change` "despatched", version 1) and again, whole, each time a parcel gets its tracking later
(`change` "tracking_updated", version + 1). A consumer keeps the greatest version per
`despatch_id`; `next_cursor` is the cursor to store once the page is handled. A partial despatch
and several notes per sales order are normal: each note carries only what it shipped.

PrimaDespatchRecorded is the FACT the Prima poller publishes for each change of the feed
(prima.despatches.v1, keyed by the Shopify order id): the note as of that change, with the
Shopify order id read from its external reference and the rules a note must meet to be acted on
(`PrimaDespatchRecorded.from_note`). A note that breaks them is a dead letter, not a fact.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.validation import Code, Id, Lines, PositiveQuantity, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class DespatchLine(_Frozen):
    """Units of one SKU shipped from one sales-order line (a kit's line ships its components)."""

    line_number: Id | None  # the sales-order line they came from
    external_line_id: Id | None  # that line's external_line_id: the Shopify order line
    sku: Code  # the Prima item's SKU (a component's, for a kit)
    quantity: PositiveQuantity


class ParcelLine(_Frozen):
    sku: Code
    quantity: PositiveQuantity


class Parcel(_Frozen):
    parcel_number: Id  # 1, 2, ... within the note
    carrier: Code  # as Prima names it: "DPD", "Royal Mail", "UPS"
    tracking_number: Code | None  # None until the carrier's number is known (it may come later)
    tracking_url: Text | None
    lines: Lines(ParcelLine) | None  # what is in this parcel, when the warehouse recorded it


class DespatchNote(_Frozen):
    """One despatch note as of one change."""

    despatch_id: Code  # Prima's number, DN-000123
    version: Id  # 1 as despatched, one more per tracking update
    change_id: Id  # Prima's despatch-change sequence: increasing in commit order
    change: Literal["despatched", "tracking_updated"]
    changed_at: datetime
    sales_order_number: Code
    external_reference: Code  # the sales order's external reference: the Shopify order id
    warehouse: Code
    despatched_at: datetime
    lines: Lines(DespatchLine)
    parcels: Lines(Parcel)


class DespatchPage(_Frozen):
    """One page of the feed."""

    despatches: Lines(DespatchNote)
    next_cursor: Code  # never empty: an empty page gives back the cursor it was given
    has_more: bool


SHOPIFY_ORDER_REFERENCE = r"^[1-9][0-9]{0,18}$"  # what the integration sends as external_reference


def shopify_order_id_of(external_reference: str) -> int:
    """The Shopify order id a sales order's external reference holds (the integration creates
    sales orders with external_reference = str(shopify_order_id)); ValueError for anything else
    (a sales order made in Prima by hand, a mangled reference)."""
    if not isinstance(external_reference, str) or not re.fullmatch(SHOPIFY_ORDER_REFERENCE, external_reference) \
            or int(external_reference) > 2**63 - 1:
        raise ValueError("the external reference is not a Shopify order id (the digits of a positive int64)")
    return int(external_reference)


class PrimaDespatchRecorded(_Frozen):
    """One change of a Prima despatch note, as the poller read it from `GET /v1/despatches`:
    the note was despatched (version 1) or a parcel of it got its tracking later
    (tracking_updated, the whole note again, version + 1). Deduplicate on (despatch_id, version);
    keep the greatest version per despatch_id.

    The rules (a note that breaks one is dead-lettered by the poller, never published):
    - the external reference is a Shopify order id (the key of the topic);
    - `change` and `version` agree: despatched is version 1, tracking_updated a later version;
    - parcel numbers are unique within the note;
    - parcel lines are given for every parcel or for none, and when given add up, per SKU, to
      the note's lines (so a parcel's contents can be trusted for per-parcel tracking).
    """

    message_type: Literal["PrimaDespatchRecorded"] = "PrimaDespatchRecorded"
    change_id: Id  # Prima's despatch-change sequence: the feed's order
    change: Literal["despatched", "tracking_updated"]
    changed_at: datetime
    despatch_id: Code
    version: Id
    sales_order_number: Code
    external_reference: Annotated[Code, Field(pattern=SHOPIFY_ORDER_REFERENCE)]  # the Shopify order id, as text
    shopify_order_id: Id  # the external reference read as the Shopify order id
    warehouse: Code
    despatched_at: datetime
    lines: Lines(DespatchLine)  # what the note shipped (a kit's components), per sales-order line
    parcels: Lines(Parcel)  # carrier, tracking number and URL, and the lines in each if recorded
    polled_at: datetime
    # False: Prima gave no tracking for the despatch (OM link's OrderStatus on an installation that
    # names no Carrier or TrackingNumber; services/prima/omlink/status_feed.py): the parcel carries
    # no tracking number (and, without a Carrier, an empty carrier), so the fulfilment goes to
    # Shopify without tracking. True: the despatch note's parcels as Prima recorded them.
    tracking_given_by_prima: bool = True

    @model_validator(mode="before")
    @classmethod
    def _order_from_reference(cls, data: Any) -> Any:
        """The Shopify order id comes from the external reference (a re-driven dead letter is
        the note as Prima sent it, without one); given, it must be the same."""
        if isinstance(data, dict) and "external_reference" in data:
            derived = shopify_order_id_of(data["external_reference"])
            if data.get("shopify_order_id", derived) != derived:
                raise ValueError("shopify_order_id is not the order of the external reference")
            data = {**data, "shopify_order_id": derived}
        return data

    @model_validator(mode="after")
    def _a_note_that_adds_up(self) -> PrimaDespatchRecorded:
        if not self.lines or not self.parcels:
            raise ValueError("a despatch note has at least one line and one parcel")
        if (self.change == "despatched") != (self.version == 1):
            raise ValueError(f"a {self.change} change at version {self.version}: despatched is version 1, "
                             "a tracking update a later one")
        numbers = [p.parcel_number for p in self.parcels]
        if len(set(numbers)) != len(numbers):
            raise ValueError("two parcels of the note have the same parcel_number")
        given = [p.lines is not None for p in self.parcels]
        if any(given) and not all(given):
            raise ValueError("parcel lines are given for some parcels of the note but not all")
        if all(given):
            in_parcels: Counter[str] = Counter()
            for parcel in self.parcels:
                for line in parcel.lines or ():
                    in_parcels[line.sku] += line.quantity
            shipped: Counter[str] = Counter()
            for line in self.lines:
                shipped[line.sku] += line.quantity
            if in_parcels != shipped:
                raise ValueError("the parcels' lines do not add up, per SKU, to the note's lines")
        return self

    @classmethod
    def from_note(cls, note: Any, polled_at: datetime) -> PrimaDespatchRecorded:
        """The fact of one record of the feed; ValueError (pydantic's ValidationError) or
        TypeError if the record is no despatch note within the rules."""
        if not isinstance(note, dict):
            raise TypeError(f"a despatch record is a JSON object, not {type(note).__name__}")
        return cls.model_validate({**note, "polled_at": polled_at})

    @property
    def key(self) -> bytes:
        """The Kafka key: the Shopify order id, so that one order's despatches keep their order."""
        return str(self.shopify_order_id).encode()
