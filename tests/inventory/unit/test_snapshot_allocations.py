"""Which orders an availability snapshot surely includes (domain/inventory/snapshot_allocations.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.inventory.snapshot_allocations import SentOrder, covered_through, newly_covered

T = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_given_orders_all_confirmed_before_the_snapshot_then_it_covers_the_highest():
    assert covered_through([SentOrder(101, T - 3 * S), SentOrder(103, T - 2 * S), SentOrder(102, T - S)], T) == 103


def test_given_an_order_confirmed_after_the_snapshot_then_nothing_at_or_above_it_is_covered():
    orders = [SentOrder(101, T - 3 * S), SentOrder(102, T + S), SentOrder(103, T - S)]
    assert covered_through(orders, T) == 101  # 103 was in Prima, but 102 below it may not be


def test_given_an_order_sent_and_not_confirmed_then_it_is_not_taken_as_in_the_snapshot():
    assert covered_through([SentOrder(101, T - S), SentOrder(102, None)], T) == 101


def test_given_an_order_confirmed_exactly_when_the_snapshot_was_taken_then_it_is_not_covered():
    assert covered_through([SentOrder(101, T)], T) == 0


def test_given_no_orders_then_nothing_is_covered():
    assert covered_through([], T) == 0


def test_given_a_later_snapshot_then_the_orders_it_newly_covers_are_the_ones_above_the_last():
    orders = [SentOrder(p, T) for p in (100, 101, 102, 105)]
    assert newly_covered(orders, 100, 102) == [101, 102]
    assert newly_covered(orders, 102, 102) == []
