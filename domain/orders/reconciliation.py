"""The order reconciler's rules (services/shopify/reconciler.py), free of I/O.

Shopify drops or delays webhooks; the reconciler asks Shopify for the orders updated since its
watermark and feeds them through the same path as a webhook. Four decisions, one function each:

- the window a scheduled run asks for (`scheduled_since`): from the watermark less an overlap,
  because an order committed late in Shopify (or indexed late by its search, or stamped by a
  clock a little behind ours) can carry an updated_at below a watermark already stored;
- how far the watermark moves after a run (`advanced_watermark`): to the run's start, and only
  once every order the run found is on Kafka, and only when the run covered at least what the
  next scheduled run would have asked for (an operator's run from a later `since` leaves it);
- when a scheduled run is due (`scheduled_run_due`): an interval after the last one that
  succeeded; after a failure, again after `retry_after` (a fault that heals, heals the flow);
- when a paid order without a sales order is an orphan (`paid_without_sales_order`): its payment
  was captured (the same rule the Order aggregate decides by) and the deadline has passed since
  the integration first saw it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.orders.payment import CAPTURED_FINANCIAL_STATUSES


def scheduled_since(watermark: datetime | None, started_at: datetime, overlap: timedelta,
                    initial_lookback: timedelta) -> datetime:
    """The `updated_at >= since` of a scheduled run starting at `started_at`: the watermark less
    the overlap; with no watermark yet (the first run ever), the initial lookback."""
    if watermark is None:
        return started_at - initial_lookback
    return min(watermark, started_at) - overlap


def advanced_watermark(current: datetime | None, since: datetime, started_at: datetime, overlap: timedelta,
                       initial_lookback: timedelta) -> datetime | None:
    """The watermark once a run that read every order updated since `since`, as Shopify showed
    them when the run started (`started_at`), has all of them acknowledged by Kafka.

    The watermark says: every order updated before it has been fed. It moves to the run's start
    only if the run's window holds the one the next scheduled run would ask for (from `current`
    less the overlap; before any watermark, from the initial lookback), and it never goes back."""
    scheduled_from = (started_at - initial_lookback) if current is None else current - overlap
    if since > scheduled_from:
        return current  # a narrower run: orders between the two starts were not read
    return started_at if current is None else max(current, started_at)


def scheduled_run_due(last_success: datetime | None, last_attempt: datetime | None, now: datetime,
                      interval: timedelta, retry_after: timedelta) -> bool:
    """A scheduled run is due `interval` after the start of the last one that succeeded, and,
    when the last attempt failed, no sooner than `retry_after` after that attempt."""
    if last_success is not None and now - last_success < interval:
        return False
    if last_attempt is not None and (last_success is None or last_attempt > last_success) \
            and now - last_attempt < retry_after:
        return False
    return True


def paid_without_sales_order(financial_status: str | None, sales_order_number: str | None, first_seen: datetime,
                             now: datetime, deadline: timedelta) -> bool:
    """An orphan: Shopify took the money (a captured financial status, as the Order aggregate
    decides), Prima has no sales order for it, and the deadline since the integration first saw
    the order has passed."""
    captured = (financial_status or "").lower() in CAPTURED_FINANCIAL_STATUSES
    return captured and not sales_order_number and now - first_seen >= deadline
