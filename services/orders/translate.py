"""The order flow's edge: wire contracts in and out of the domain's own values.

In: a ShopifyOrderReceived (shopify.orders.v1) becomes an OrderDelivery; Prima's outcomes
(prima.outcomes.v1) become SalesOrderCreatedByPrima and the like; an operator's ReleaseOrder a
ReleaseRequested. Out: the Order's events become the order-events messages, and its
SalesOrderRequest the CreateSalesOrder command Prima's gateway sends. A new wire version changes
this module, not the event store.
"""

from __future__ import annotations

from contracts.money import Money as WireMoney
from contracts.platform import ReleaseOrder
from contracts.prima import sales_orders as prima
from contracts.shopify import orders as shopify
from domain.orders import values as domain
from domain.shared.money import Money

# ------------------------------------------------------------------------------------- in


def money(value: WireMoney) -> Money:
    return Money(value.amount, value.currency)


def _taxes(lines: tuple[shopify.TaxLine, ...]) -> tuple[domain.TaxLine, ...]:
    return tuple(domain.TaxLine(title=t.title, rate=t.rate, amount=money(t.amount)) for t in lines)


def snapshot(order: shopify.ShopifyOrder) -> domain.OrderSnapshot:
    return domain.OrderSnapshot(
        shopify_order_id=order.id, name=order.name, order_number=order.order_number, email=order.email,
        currency=order.currency, presentment_currency=order.presentment_currency,
        taxes_included=order.taxes_included, financial_status=order.financial_status, test=order.test,
        created_at=order.created_at, updated_at=order.updated_at, processed_at=order.processed_at,
        cancelled_at=order.cancelled_at, subtotal_price=money(order.subtotal_price),
        total_discounts=money(order.total_discounts), total_tax=money(order.total_tax),
        total_price=money(order.total_price),
        lines=tuple(domain.OrderLine(
            line_id=li.id, sku=li.sku, title=li.title, variant_id=li.variant_id, quantity=li.quantity,
            unit_price=money(li.unit_price), discount=money(li.discount), tax_lines=_taxes(li.tax_lines),
        ) for li in order.line_items),
        shipping_lines=tuple(domain.ShippingLine(
            line_id=sl.id, title=sl.title, code=sl.code, price=money(sl.price), discount=money(sl.discount),
            tax_lines=_taxes(sl.tax_lines),
        ) for sl in order.shipping_lines),
        transactions=tuple(domain.PaymentTransaction(
            transaction_id=t.id, kind=t.kind, status=t.status, amount=money(t.amount) if t.amount else None,
        ) for t in order.transactions),
    )


def delivery(received: shopify.ShopifyOrderReceived) -> domain.OrderDelivery:
    return domain.OrderDelivery(webhook_id=received.webhook_id, topic=received.topic,
                                received_at=received.received_at, order=snapshot(received.order))


def outcome(message: prima.PrimaSalesOrderCreated | prima.PrimaSalesOrderRejected | prima.PrimaSalesOrderParked
            ) -> domain.PrimaOutcome:
    if isinstance(message, prima.PrimaSalesOrderCreated):
        return domain.SalesOrderCreatedByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id,
            sales_order_number=message.sales_order_number, status=message.status, occurred_at=message.occurred_at)
    if isinstance(message, prima.PrimaSalesOrderRejected):
        return domain.SalesOrderRejectedByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id,
            status_code=message.status_code, code=message.code, reason=message.reason,
            occurred_at=message.occurred_at)
    return domain.SalesOrderParkedByGateway(
        command_id=message.command_id, shopify_order_id=message.shopify_order_id, attempts=message.attempts,
        reason=message.reason, occurred_at=message.occurred_at)


def release(command: ReleaseOrder) -> domain.ReleaseRequested:
    return domain.ReleaseRequested(shopify_order_id=command.shopify_order_id, released_by=command.requested_by,
                                   requested_at=command.requested_at)


# ------------------------------------------------------------------------------------ out


def wire_money(value: Money) -> WireMoney:
    return WireMoney(amount=value.amount, currency=value.currency)


def _wire_taxes(lines: tuple[domain.TaxLine, ...]) -> tuple[shopify.TaxLine, ...]:
    return tuple(shopify.TaxLine(title=t.title, rate=t.rate, amount=wire_money(t.amount)) for t in lines)


def wire_order(order: domain.OrderSnapshot) -> shopify.ShopifyOrder:
    return shopify.ShopifyOrder(
        id=order.shopify_order_id, name=order.name, order_number=order.order_number, email=order.email,
        currency=order.currency, presentment_currency=order.presentment_currency,
        taxes_included=order.taxes_included, financial_status=order.financial_status, test=order.test,
        created_at=order.created_at, updated_at=order.updated_at, processed_at=order.processed_at,
        cancelled_at=order.cancelled_at, subtotal_price=wire_money(order.subtotal_price),
        total_discounts=wire_money(order.total_discounts), total_tax=wire_money(order.total_tax),
        total_price=wire_money(order.total_price),
        line_items=tuple(shopify.LineItem(
            id=li.line_id, sku=li.sku, title=li.title, variant_id=li.variant_id, quantity=li.quantity,
            unit_price=wire_money(li.unit_price), discount=wire_money(li.discount), tax_lines=_wire_taxes(li.tax_lines),
        ) for li in order.lines),
        shipping_lines=tuple(shopify.ShippingLine(
            id=sl.line_id, title=sl.title, code=sl.code, price=wire_money(sl.price), discount=wire_money(sl.discount),
            tax_lines=_wire_taxes(sl.tax_lines),
        ) for sl in order.shipping_lines),
        transactions=tuple(shopify.Transaction(
            id=t.transaction_id, kind=t.kind, status=t.status,
            amount=wire_money(t.amount) if t.amount else None,
        ) for t in order.transactions),
    )


def wire_sales_order(order: domain.SalesOrder) -> prima.SalesOrderDraft:
    return prima.SalesOrderDraft(
        external_reference=order.external_reference, order_name=order.order_name, currency=order.currency,
        taxes_included=order.taxes_included, order_date=order.order_date, customer_email=order.customer_email,
        lines=tuple(prima.SalesOrderLine(
            line_number=li.line_number, item_id=li.item_id, sku=li.sku, description=li.description,
            quantity=li.quantity, unit_price=li.unit_price, discount_amount=li.discount_amount,
            tax_amount=li.tax_amount, net_amount=li.net_amount,
        ) for li in order.lines),
        shipping=prima.SalesOrderShipping(
            description=order.shipping.description, amount=order.shipping.amount,
            discount_amount=order.shipping.discount_amount, tax_amount=order.shipping.tax_amount,
        ) if order.shipping else None,
        totals=prima.SalesOrderTotals(lines_net=order.totals.lines_net, shipping_net=order.totals.shipping_net,
                                      tax=order.totals.tax, total=order.totals.total),
    )


def wire_command(request: domain.SalesOrderRequest) -> prima.CreateSalesOrder:
    return prima.CreateSalesOrder(
        command_id=request.command_id, idempotency_key=request.idempotency_key,
        shopify_order_id=request.shopify_order_id, issued_at=request.issued_at,
        sales_order=wire_sales_order(request.sales_order),
    )
