"""The order read model's fulfilment row (projections/order_fulfilment.py), its pure part: the
OrderFulfilment events as the relay publishes them applied to a row (`apply_event`) and the
row's state (`state_of`), without PostgreSQL (the projection's SQL is proven by
tests/fulfilment/integration/test_order_fulfilment_projection.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from pydantic import TypeAdapter

from contracts.fulfilment.events import FulfilmentEvent
from projections.order_fulfilment import (
    AWAITING_DESPATCH,
    DESPATCH_STATUSES,
    DESPATCHED,
    EXCEPTION,
    action,
    apply_event,
    state_of,
)

pytestmark = pytest.mark.unit

ORDER = 7101
T = datetime(2026, 12, 1, 9, tzinfo=UTC)
AGGREGATE = uuid5(NAMESPACE_URL, f"https://shopify-prima/order-fulfilments/{ORDER}")
_EVENT = TypeAdapter(FulfilmentEvent)


class Row:
    """One order's row, its events applied as the projection applies them."""

    def __init__(self) -> None:
        self.version = 0
        self.row: dict[str, Any] = {
            "shopify_order_id": ORDER, "state": AWAITING_DESPATCH, "lines": [], "despatches": [], "fulfilments": [],
            "fulfillment_orders": None, "exception": None, "released_exceptions": [], "tracking_numbers": [],
            "fulfillment_orders_read_at": None, "exception_kind": None}
        self.apply("Opened")
        self.apply("LinesRecorded", lines=[{"line_item_id": 11, "sku": "MUG", "quantity": 2}])

    def apply(self, kind: str, **fields: Any) -> str:
        self.version += 1
        e = _EVENT.validate_python({
            "event_type": f"OrderFulfilment.{kind}", "event_id": uuid5(AGGREGATE, str(self.version)),
            "shopify_order_id": ORDER, "aggregate_id": AGGREGATE, "aggregate_version": self.version,
            "timestamp": T + timedelta(seconds=self.version), "notification_id": self.version, **fields})
        apply_event(self.row, e)
        self.row["state"] = state_of(self.row)
        return self.row["state"]

    def despatch(self, despatch_id: str, sku: str) -> str:
        return self.apply("DespatchRecorded", despatch_id=despatch_id, version=1, change_id=self.version,
                          sales_order_number="SO-1", despatched_at=T, lines=[{"sku": sku, "quantity": 1}],
                          parcels=[{"parcel_number": 1, "carrier": "DPD", "tracking_number": f"TRK-{despatch_id}"}])

    def status(self, despatch_id: str) -> str:
        return next(d["status"] for d in self.row["despatches"] if d["despatch_id"] == despatch_id)


def held(kind: str, despatch_id: str, reason: str) -> Row:
    r = Row()
    r.despatch(despatch_id, "LAMP")
    r.apply("ExceptionRaised", exception={"kind": kind, "despatch_id": despatch_id, "reason": reason})
    return r


def test_given_an_exception_released_with_its_despatch_settled_then_the_despatch_is_settled_and_the_row_awaits():
    r = held("sku_not_on_order", "D-1", "despatched SKUs no line of the order holds: LAMP")
    assert (r.row["state"], r.status("D-1")) == (EXCEPTION, "exception")
    r.apply("Released", released_by="jo@ops", previous={"kind": "sku_not_on_order", "despatch_id": "D-1",
                                                        "reason": "despatched SKUs no line of the order holds: LAMP"})
    state = r.apply("DespatchSettled", despatch_id="D-1",
                    reason="settled by jo@ops: despatched SKUs no line of the order holds: LAMP")
    # settled: handled outside the integration; it no longer keeps the row `despatched`
    assert (state, r.status("D-1"), r.row["exception"]) == (AWAITING_DESPATCH, "settled", None)
    assert r.row["despatches"][0]["settled_reason"] == "settled by jo@ops: despatched SKUs no line of the order holds: LAMP"
    assert "settled" in DESPATCH_STATUSES
    assert r.despatch("D-2", "MUG") == DESPATCHED


def test_given_a_settled_despatch_and_one_that_waits_then_the_row_waits_for_the_one_that_waits():
    r = held("cannot_allocate", "D-1", "line 11: 1 to fulfil, 0 fulfillable: nothing left to fulfil")
    r.apply("Released", released_by="jo@ops", previous={"kind": "cannot_allocate", "despatch_id": "D-1",
                                                        "reason": "nothing left"})
    r.apply("DespatchSettled", despatch_id="D-1", reason="settled by jo@ops: nothing left")
    r.despatch("D-2", "MUG")
    assert r.apply("NothingFulfillable", despatch_id="D-2", reason="no whole line yet") == "waiting"


@pytest.mark.parametrize("kind", ["sku_not_on_order", "cannot_allocate"])
def test_an_exception_a_release_cannot_clear_names_both_the_release_and_the_settling_release(kind):
    text = action(kind, ORDER)
    assert f"`shopify-prima fulfilment release {ORDER}`" in text
    assert f"`shopify-prima fulfilment release {ORDER} --settle-despatch`" in text


def test_a_refused_tracking_update_is_released_only():
    assert "--settle-despatch" not in action("tracking_refused", ORDER)
