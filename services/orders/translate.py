"""The order flow's edge: wire contracts in and out of the domain's own values.

In: a ShopifyOrderReceived (shopify.orders.v1) becomes an OrderDelivery, a ShopifyRefundReceived a
RefundDelivery, a ShopifyOrderEditReceived an OrderEditNoticed; Prima's outcomes
(prima.outcomes.v1) become SalesOrderCreatedByPrima and the like; an operator's ReleaseOrder a
ReleaseRequested, a ResolveOrderChange a ChangeResolutionRequested. Out: the Order's events
become the order-events messages, and its requests the commands Prima's gateway sends
(CreateSalesOrder, AmendSalesOrder, CancelSalesOrder, CreateCreditMemo). A new wire version changes
this module, not the event store.
"""

from __future__ import annotations

from contracts.money import Money as WireMoney
from contracts.platform import ReleaseOrder, ResolveOrderChange
from contracts.prima import credit_memos as memos
from contracts.prima import sales_orders as prima
from contracts.shopify import orders as shopify
from contracts.shopify import refunds as shopify_refunds
from domain.orders import values as domain
from domain.shared.money import Money

# ------------------------------------------------------------------------------------- in


def money(value: WireMoney) -> Money:
    return Money(value.amount, value.currency)


def _taxes(lines: tuple[shopify.TaxLine, ...]) -> tuple[domain.TaxLine, ...]:
    return tuple(domain.TaxLine(title=t.title, rate=t.rate, amount=money(t.amount)) for t in lines)


def _address(value: shopify.ShippingAddress | None) -> domain.Address | None:
    return domain.Address(**value.model_dump()) if value is not None else None


def refund(value: shopify_refunds.ShopifyRefund) -> domain.Refund:
    return domain.Refund(
        refund_id=value.id, shopify_order_id=value.order_id, created_at=value.created_at, note=value.note,
        lines=tuple(domain.RefundLine(refund_line_id=rl.id, line_id=rl.line_item_id, quantity=rl.quantity,
                                      subtotal=money(rl.subtotal), tax=money(rl.total_tax), restock_type=rl.restock_type)
                    for rl in value.refund_line_items),
        shipping=tuple(domain.RefundShipping(shipping_line_id=sl.shipping_line_id, amount=money(sl.subtotal),
                                             tax=money(sl.tax)) for sl in value.refund_shipping_lines),
        adjustments=tuple(domain.OrderAdjustment(adjustment_id=a.id, kind=a.kind, reason=a.reason,
                                                 amount=money(a.amount), tax=money(a.tax_amount))
                          for a in value.order_adjustments),
        transactions=tuple(domain.PaymentTransaction(transaction_id=t.id, kind=t.kind, status=t.status,
                                                     amount=money(t.amount) if t.amount else None, gateway=t.gateway)
                           for t in value.transactions),
    )


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
            current_quantity=li.current_quantity, kind=li.kind,
            discounted_total=money(li.discounted_total) if li.discounted_total else None,
        ) for li in order.line_items),
        shipping_lines=tuple(domain.ShippingLine(
            line_id=sl.id, title=sl.title, code=sl.code, price=money(sl.price), discount=money(sl.discount),
            tax_lines=_taxes(sl.tax_lines),
        ) for sl in order.shipping_lines),
        transactions=tuple(domain.PaymentTransaction(
            transaction_id=t.id, kind=t.kind, status=t.status, amount=money(t.amount) if t.amount else None,
            gateway=t.gateway,
        ) for t in order.transactions),
        payment_gateways=order.payment_gateway_names,
        current_subtotal_price=money(order.current_subtotal_price) if order.current_subtotal_price else None,
        current_total_tax=money(order.current_total_tax) if order.current_total_tax else None,
        current_total_price=money(order.current_total_price) if order.current_total_price else None,
        shipping_address=_address(order.shipping_address),
        cancel_reason=order.cancel_reason,
        refunds=tuple(refund(r) for r in order.refunds),
    )


def delivery(received: shopify.ShopifyOrderReceived) -> domain.OrderDelivery:
    return domain.OrderDelivery(webhook_id=received.webhook_id, topic=received.topic,
                                received_at=received.received_at, order=snapshot(received.order))


def refund_delivery(received: shopify_refunds.ShopifyRefundReceived) -> domain.RefundDelivery:
    return domain.RefundDelivery(webhook_id=received.webhook_id, topic=received.topic,
                                 received_at=received.received_at, refund=refund(received.refund))


def edit_noticed(received: shopify_refunds.ShopifyOrderEditReceived) -> domain.OrderEditNoticed:
    edit = received.edit
    return domain.OrderEditNoticed(
        webhook_id=received.webhook_id, received_at=received.received_at, shopify_order_id=edit.order_id,
        edit_id=edit.id, edited_at=edit.created_at, added=tuple((d.id, d.delta) for d in edit.additions),
        removed=tuple((d.id, d.delta) for d in edit.removals))


def outcome(message: prima.PrimaSalesOrderCreated | prima.PrimaSalesOrderRejected | prima.PrimaSalesOrderParked
            | prima.PrimaSalesOrderAmended | prima.PrimaSalesOrderCancelled | prima.PrimaSalesOrderChangeRefused
            | memos.PrimaCreditMemoCreated) -> domain.PrimaOutcome:
    if isinstance(message, prima.PrimaSalesOrderAmended):
        return domain.SalesOrderAmendedByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id,
            sales_order_number=message.sales_order_number, status=message.status, occurred_at=message.occurred_at)
    if isinstance(message, prima.PrimaSalesOrderCancelled):
        return domain.SalesOrderCancelledByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id,
            sales_order_number=message.sales_order_number, status=message.status, occurred_at=message.occurred_at)
    if isinstance(message, prima.PrimaSalesOrderChangeRefused):
        return domain.SalesOrderChangeRefusedByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id,
            sales_order_number=message.sales_order_number, status=message.status, reason=message.reason,
            occurred_at=message.occurred_at)
    if isinstance(message, memos.PrimaCreditMemoCreated):
        return domain.CreditMemoCreatedByPrima(
            command_id=message.command_id, shopify_order_id=message.shopify_order_id, refund_id=message.refund_id,
            credit_memo_number=message.credit_memo_number, total=message.total, occurred_at=message.occurred_at)
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


def resolution(command: ResolveOrderChange) -> domain.ChangeResolutionRequested:
    return domain.ChangeResolutionRequested(shopify_order_id=command.shopify_order_id,
                                            resolved_by=command.requested_by, note=command.note,
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
            current_quantity=li.current_quantity, kind=li.kind,
            discounted_total=wire_money(li.discounted_total) if li.discounted_total else None,
        ) for li in order.lines),
        shipping_lines=tuple(shopify.ShippingLine(
            id=sl.line_id, title=sl.title, code=sl.code, price=wire_money(sl.price), discount=wire_money(sl.discount),
            tax_lines=_wire_taxes(sl.tax_lines),
        ) for sl in order.shipping_lines),
        transactions=tuple(shopify.Transaction(
            id=t.transaction_id, kind=t.kind, status=t.status,
            amount=wire_money(t.amount) if t.amount else None, gateway=t.gateway,
        ) for t in order.transactions),
        payment_gateway_names=order.payment_gateways,
        current_subtotal_price=wire_money(order.current_subtotal_price) if order.current_subtotal_price else None,
        current_total_tax=wire_money(order.current_total_tax) if order.current_total_tax else None,
        current_total_price=wire_money(order.current_total_price) if order.current_total_price else None,
        shipping_address=(shopify.ShippingAddress(**vars(order.shipping_address))
                          if order.shipping_address else None),
        cancel_reason=order.cancel_reason,
        refunds=tuple(wire_refund(r) for r in order.refunds),
    )


def wire_refund(value: domain.Refund) -> shopify_refunds.ShopifyRefund:
    return shopify_refunds.ShopifyRefund(
        id=value.refund_id, order_id=value.shopify_order_id, created_at=value.created_at, note=value.note,
        refund_line_items=tuple(shopify_refunds.RefundLineItem(
            id=rl.refund_line_id, line_item_id=rl.line_id, quantity=rl.quantity, subtotal=wire_money(rl.subtotal),
            total_tax=wire_money(rl.tax), restock_type=rl.restock_type) for rl in value.lines),
        refund_shipping_lines=tuple(shopify_refunds.RefundShippingLine(
            shipping_line_id=sl.shipping_line_id, subtotal=wire_money(sl.amount), tax=wire_money(sl.tax))
            for sl in value.shipping),
        order_adjustments=tuple(shopify_refunds.OrderAdjustment(
            id=a.adjustment_id, kind=a.kind, reason=a.reason, amount=wire_money(a.amount),
            tax_amount=wire_money(a.tax)) for a in value.adjustments),
        transactions=tuple(shopify_refunds.RefundTransaction(
            id=t.transaction_id, kind=t.kind, status=t.status, gateway=t.gateway,
            amount=wire_money(t.amount) if t.amount else None) for t in value.transactions),
    )


def wire_sales_order(order: domain.SalesOrder) -> prima.SalesOrderDraft:
    return prima.SalesOrderDraft(
        external_reference=order.external_reference, order_name=order.order_name, currency=order.currency,
        taxes_included=order.taxes_included, order_date=order.order_date, customer_email=order.customer_email,
        lines=tuple(prima.SalesOrderLine(
            line_number=li.line_number, item_id=li.item_id, sku=li.sku, description=li.description,
            quantity=li.quantity, unit_price=li.unit_price, discount_amount=li.discount_amount,
            tax_amount=li.tax_amount, net_amount=li.net_amount, kind=li.kind, account=li.account,
            external_line_id=li.line_id,
            bundle=prima.SalesOrderLineBundle(item_id=li.bundle_item_id, sku=li.bundle_sku,
                                              units_per_bundle=li.units_per_bundle or 1)
            if li.bundle_sku is not None and li.bundle_item_id is not None else None,
        ) for li in order.lines),
        shipping=prima.SalesOrderShipping(
            description=order.shipping.description, amount=order.shipping.amount,
            discount_amount=order.shipping.discount_amount, tax_amount=order.shipping.tax_amount,
        ) if order.shipping else None,
        totals=prima.SalesOrderTotals(lines_net=order.totals.lines_net, shipping_net=order.totals.shipping_net,
                                      tax=order.totals.tax, total=order.totals.total),
        ship_to=prima.ShipTo(**vars(order.ship_to)) if order.ship_to else None,
        payments=tuple(prima.SalesOrderPayment(gateway=p.gateway, amount=p.amount, transaction_id=p.transaction_id)
                       for p in order.payments),
    )


def wire_command(request: domain.SalesOrderRequest) -> prima.CreateSalesOrder:
    return prima.CreateSalesOrder(
        command_id=request.command_id, idempotency_key=request.idempotency_key,
        shopify_order_id=request.shopify_order_id, issued_at=request.issued_at,
        sales_order=wire_sales_order(request.sales_order),
    )


def wire_amendment(request: domain.SalesOrderAmendment) -> prima.AmendSalesOrder:
    return prima.AmendSalesOrder(
        command_id=request.command_id, idempotency_key=request.idempotency_key,
        shopify_order_id=request.shopify_order_id, sales_order_number=request.sales_order_number,
        issued_at=request.issued_at, sales_order=wire_sales_order(request.sales_order),
        amendable_statuses=request.amendable_statuses, changes=request.changes,
    )


def wire_cancellation(request: domain.SalesOrderCancellation) -> prima.CancelSalesOrder:
    return prima.CancelSalesOrder(
        command_id=request.command_id, idempotency_key=request.idempotency_key,
        shopify_order_id=request.shopify_order_id, sales_order_number=request.sales_order_number,
        issued_at=request.issued_at, reason=request.reason, cancellable_statuses=request.cancellable_statuses,
    )


def wire_credit_memo(memo: domain.CreditMemo) -> memos.CreditMemoDraft:
    return memos.CreditMemoDraft(
        sales_order_number=memo.sales_order_number, external_reference=memo.external_reference,
        currency=memo.currency, taxes_included=memo.taxes_included, memo_date=memo.memo_date, reason=memo.reason,
        lines=tuple(memos.CreditMemoLine(
            line_number=li.line_number, kind=li.kind, item_id=li.item_id, sku=li.sku, account=li.account,
            description=li.description, quantity=li.quantity, amount=li.amount, tax_amount=li.tax_amount,
            restock_type=li.restock_type, returned=li.returned, external_line_id=li.line_id,
        ) for li in memo.lines),
        shipping=memos.CreditMemoShipping(description=memo.shipping.description, amount=memo.shipping.amount,
                                          tax_amount=memo.shipping.tax_amount) if memo.shipping else None,
        adjustments=tuple(memos.CreditMemoAdjustment(kind=a.kind, description=a.description, amount=a.amount,
                                                     tax_amount=a.tax_amount) for a in memo.adjustments),
        totals=memos.CreditMemoTotals(lines=memo.totals.lines, shipping=memo.totals.shipping,
                                      adjustments=memo.totals.adjustments, tax=memo.totals.tax,
                                      total=memo.totals.total),
    )


def wire_memo_command(request: domain.CreditMemoRequest) -> memos.CreateCreditMemo:
    return memos.CreateCreditMemo(
        command_id=request.command_id, idempotency_key=request.idempotency_key,
        shopify_order_id=request.shopify_order_id, refund_id=request.refund_id, issued_at=request.issued_at,
        credit_memo=wire_credit_memo(request.credit_memo),
    )
