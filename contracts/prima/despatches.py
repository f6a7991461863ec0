"""Prima's despatch notes as its REST API serves them (`GET /v1/despatches?after=<cursor>`,
`GET /v1/despatches/{despatch_id}`, `GET /v1/sales-orders/{number}/despatches`; see
contracts/prima/openapi.yaml): what the warehouse shipped against a sales order, in which parcels.

The feed is a change log in `change_id` order: a note appears once when it is despatched
(`change` "despatched", version 1) and again, whole, each time a parcel gets its tracking later
(`change` "tracking_updated", version + 1). A consumer keeps the greatest version per
`despatch_id`; `next_cursor` is the cursor to store once the page is handled. A partial despatch
and several notes per sales order are normal: each note carries only what it shipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

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
