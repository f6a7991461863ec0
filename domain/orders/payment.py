"""When is an order's payment captured? Only then does Prima get a sales order."""

from __future__ import annotations

from domain.orders.values import OrderSnapshot

# Statuses that mean the money was taken at some point (a refund comes after a capture).
CAPTURED_FINANCIAL_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
CAPTURE_KINDS = frozenset({"capture", "sale"})


def payment_captured(order: OrderSnapshot) -> bool:
    """Paid, or a successful capture/sale transaction. Authorized, pending, voided, expired and
    partially paid orders are not captured."""
    if (order.financial_status or "").lower() in CAPTURED_FINANCIAL_STATUSES:
        return True
    return any(t.kind in CAPTURE_KINDS and t.status == "success" for t in order.transactions)
