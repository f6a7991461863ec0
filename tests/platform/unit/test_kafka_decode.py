"""An undecodable message is logged, counted and skipped; a good one is parsed."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from prometheus_client import REGISTRY

from contracts.prima import CreateSalesOrder
from services.kafka import decode


def message(body: bytes) -> SimpleNamespace:
    return SimpleNamespace(body=body, raw_message=SimpleNamespace(topic="prima.commands.v1", partition=2, offset=41))


def test_undecodable_message_is_logged_counted_and_skipped(caplog):
    before = REGISTRY.get_sample_value("shopify_prima_messages_undecodable_total", {"topic": "prima.commands.v1"}) or 0
    with caplog.at_level(logging.ERROR):
        assert decode(CreateSalesOrder.model_validate_json, message(b'{"not": "a command"}')) is None
    assert "prima.commands.v1[2] at offset 41" in caplog.text
    after = REGISTRY.get_sample_value("shopify_prima_messages_undecodable_total", {"topic": "prima.commands.v1"})
    assert after == before + 1


def test_good_message_is_parsed():
    body = (
        b'{"command_id": "6f1c1f0e-8a43-4c59-9d1f-0b5b8f7a2b11", "idempotency_key": "k", "shopify_order_id": 1,'
        b' "issued_at": "2026-11-27T09:00:00Z", "sales_order": {"external_reference": "1", "order_name": "#1",'
        b' "currency": "GBP", "taxes_included": true, "order_date": "2026-11-27T09:00:00Z", "lines": [],'
        b' "totals": {"lines_net": "0.00", "shipping_net": "0.00", "tax": "0.00", "total": "0.00"}}}'
    )
    command = decode(CreateSalesOrder.model_validate_json, message(body))
    assert command is not None and command.shopify_order_id == 1 and str(command.sales_order.totals.total) == "0.00"
