"""Which orders an availability snapshot surely includes (domain/inventory/snapshot_allocations.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.inventory.snapshot_allocations import CLOCK_MARGIN, ConfirmedOrder, included

T = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_given_orders_confirmed_before_the_snapshot_then_it_includes_them_in_the_order_confirmed():
    orders = [ConfirmedOrder(103, T - 5 * S), ConfirmedOrder(101, T - 9 * S), ConfirmedOrder(102, T - 7 * S)]
    assert included(orders, T) == [101, 102, 103]


def test_given_a_lower_numbered_order_confirmed_after_the_snapshot_then_it_is_not_included():
    """Numbers are no guide: order 95 (paid late, or parked through an outage) reached Prima
    after order 100, and after the snapshot."""
    orders = [ConfirmedOrder(100, T - 9 * S), ConfirmedOrder(95, T + S)]
    assert included(orders, T) == [100]


def test_given_an_order_confirmed_within_the_clock_margin_then_it_waits_for_the_next_snapshot():
    orders = [ConfirmedOrder(101, T - CLOCK_MARGIN), ConfirmedOrder(102, T - CLOCK_MARGIN - S)]
    assert included(orders, T) == [102]


def test_given_no_orders_then_none_is_included():
    assert included([], T) == []
