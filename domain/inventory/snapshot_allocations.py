"""Which sales orders a stock snapshot surely includes (Prima's OM link: ProductAvailableToSell).

An accepted order holds its units back from Shopify until Prima's stock is known to include the
order's allocation (StockItem `allocations`: cleared by a stock record that names the order,
`allocated_for`, or whose `allocated_through` reaches its position in Prima's numbering). Prima's
REST stock feed says so on each record. An availability snapshot does not: it is Prima's stock at
the moment it was read, with every order Prima had committed by then. What the integration knows
is when Prima's answer confirmed each order: an order confirmed before the snapshot was taken was
committed before it, so the snapshot includes its allocation, and the feed names each such order
on a record of each of its SKUs (`allocated_for`), once.

Positions are no use here: an OM link order's number is the Shopify order id, which follows when
the order was placed, not when Prima took it (an order whose payment was captured late, released
from quarantine, or parked through an outage reaches Prima after higher-numbered ones), so "every
order up to N" would release orders the snapshot does not hold yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# Prima's answer is timed by the process that recorded it, the snapshot by the poller: an order
# confirmed within this margin before the snapshot waits for the next one (never released early)
CLOCK_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class ConfirmedOrder:
    """A sales order Prima confirmed, and when its answer was recorded."""

    shopify_order_id: int
    confirmed_at: datetime


def included(orders: Iterable[ConfirmedOrder], taken_at: datetime, margin: timedelta = CLOCK_MARGIN) -> list[int]:
    """The orders a snapshot taken at `taken_at` surely includes: those confirmed before it (by
    more than `margin`), in the order they were confirmed."""
    return [o.shopify_order_id for o in sorted(orders, key=lambda o: (o.confirmed_at, o.shopify_order_id))
            if o.confirmed_at < taken_at - margin]
