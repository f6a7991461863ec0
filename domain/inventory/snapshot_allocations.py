"""Which sales orders a stock snapshot surely includes (Prima's OM link: ProductAvailableToSell).

An accepted order holds its units back from Shopify until Prima's stock is known to include the
order's allocation (StockItem `allocations`: cleared by a stock record whose `allocated_through`
reaches the order's position). Prima's REST stock feed says so on each record. An availability
snapshot does not: it is Prima's stock at the moment it was read, with every order Prima had
committed by then. What the integration knows is when Prima answered each order: an order
whose sales order was confirmed before the snapshot was taken was committed before it, so the
snapshot includes its allocation.

The snapshot's records then carry the greatest position `covered_through` finds: the highest
position of an order confirmed before the snapshot, below every order that is not known to be
(confirmed after it, or sent and not confirmed yet). Every order at or below it is in the
snapshot; none that might not be is cleared. An order left out (its answer came after the
snapshot) is covered by a later one: the feed then reports its SKUs again (`newly_covered`), even
if their level did not change, so the hold is cleared then and never stays for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SentOrder:
    """A sales order the integration sent to Prima: its position (the same number the StockItem
    holds it under) and when Prima's answer confirmed it (None: not confirmed yet)."""

    position: int
    confirmed_at: datetime | None


def covered_through(orders: Iterable[SentOrder], taken_at: datetime) -> int:
    """The greatest position such that every order at or below it was confirmed before
    `taken_at` (0: none)."""
    orders = list(orders)
    unsure = min((o.position for o in orders if o.confirmed_at is None or o.confirmed_at >= taken_at), default=None)
    return max((o.position for o in orders if o.confirmed_at is not None and o.confirmed_at < taken_at
                and (unsure is None or o.position < unsure)), default=0)


def newly_covered(orders: Iterable[SentOrder], before: int, now: int) -> list[int]:
    """The positions a snapshot covers that the previous one did not: their SKUs are reported
    again so that their holds are cleared."""
    return sorted(o.position for o in orders if before < o.position <= now)
