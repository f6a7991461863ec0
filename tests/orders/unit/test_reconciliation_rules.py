"""Given-when-then on the order reconciler's rules (domain/orders/reconciliation.py): the window a
scheduled run reads, the watermark after a run and its overlap, when a scheduled run is due, and
when a paid order without a sales order is an orphan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.orders.reconciliation import (
    advanced_watermark,
    paid_without_sales_order,
    scheduled_run_due,
    scheduled_since,
)

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=15)
LOOKBACK = timedelta(days=1)
INTERVAL = timedelta(minutes=10)
RETRY = timedelta(minutes=1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ------------------------------------------------------------------------- the window


def test_given_no_watermark_when_the_first_run_starts_then_it_reads_the_initial_lookback():
    assert scheduled_since(None, T, OVERLAP, LOOKBACK) == T - LOOKBACK


def test_given_a_watermark_when_a_run_starts_then_it_reads_from_the_watermark_less_the_overlap():
    # an order committed late with updated_at a little below the watermark is read again
    assert scheduled_since(T - minutes(10), T, OVERLAP, LOOKBACK) == T - minutes(25)


def test_given_a_watermark_ahead_of_the_clock_when_a_run_starts_then_it_reads_from_the_clock_less_the_overlap():
    assert scheduled_since(T + minutes(5), T, OVERLAP, LOOKBACK) == T - OVERLAP


# ------------------------------------------------------------------------- the watermark


def test_given_a_scheduled_run_when_it_is_acknowledged_then_the_watermark_moves_to_its_start():
    current = T - minutes(10)
    since = scheduled_since(current, T, OVERLAP, LOOKBACK)
    assert advanced_watermark(current, since, T, OVERLAP, LOOKBACK) == T


def test_given_the_first_scheduled_run_when_it_is_acknowledged_then_the_watermark_is_its_start():
    since = scheduled_since(None, T, OVERLAP, LOOKBACK)
    assert advanced_watermark(None, since, T, OVERLAP, LOOKBACK) == T


def test_given_an_operators_run_from_further_back_when_it_is_acknowledged_then_the_watermark_moves_too():
    current = T - minutes(30)
    assert advanced_watermark(current, T - timedelta(days=3), T, OVERLAP, LOOKBACK) == T


def test_given_an_operators_run_from_after_the_overlap_when_it_is_acknowledged_then_the_watermark_stays():
    # the run did not read what was updated between watermark - overlap and its since: the next
    # scheduled run must still read it
    current = T - minutes(30)
    assert advanced_watermark(current, current - minutes(5), T, OVERLAP, LOOKBACK) == current
    assert advanced_watermark(None, T - minutes(5), T, OVERLAP, LOOKBACK) is None


def test_given_a_run_that_started_before_the_watermark_when_it_is_acknowledged_then_the_watermark_never_goes_back():
    current = T
    assert advanced_watermark(current, T - timedelta(days=2), T - minutes(20), OVERLAP, LOOKBACK) == T


# ------------------------------------------------------------------------- the schedule


def test_given_no_run_yet_then_a_scheduled_run_is_due():
    assert scheduled_run_due(None, None, T, INTERVAL, RETRY)


def test_given_a_success_within_the_interval_then_no_run_is_due_and_after_it_one_is():
    assert not scheduled_run_due(T - minutes(9), T - minutes(9), T, INTERVAL, RETRY)
    assert scheduled_run_due(T - minutes(10), T - minutes(10), T, INTERVAL, RETRY)


def test_given_a_failed_attempt_then_the_run_is_tried_again_after_the_retry_wait_not_the_interval():
    last_success = T - minutes(40)
    assert not scheduled_run_due(last_success, T - minutes(0.5), T, INTERVAL, RETRY)
    assert scheduled_run_due(last_success, T - minutes(1), T, INTERVAL, RETRY)
    assert not scheduled_run_due(None, T - minutes(0.5), T, INTERVAL, RETRY)


# ------------------------------------------------------------------------- orphans


def test_given_a_paid_order_without_a_sales_order_past_the_deadline_then_it_is_an_orphan():
    deadline = minutes(30)
    for status in ("paid", "PAID", "partially_refunded", "refunded"):
        assert paid_without_sales_order(status, None, T - minutes(31), T, deadline)


def test_given_an_order_within_its_deadline_with_a_sales_order_or_not_paid_then_it_is_no_orphan():
    deadline = minutes(30)
    assert not paid_without_sales_order("paid", None, T - minutes(29), T, deadline)
    assert not paid_without_sales_order("paid", "SO-000042", T - minutes(90), T, deadline)
    for status in ("pending", "authorized", "partially_paid", "voided", "expired", None):
        assert not paid_without_sales_order(status, None, T - minutes(90), T, deadline)
