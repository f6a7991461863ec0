"""Business metrics, defined once. FastStream's Prometheus middleware adds the transport ones."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

WEBHOOKS_RECEIVED = Counter(
    "shopify_prima_webhooks_received", "Shopify webhook deliveries accepted and published", ["topic"]
)
WEBHOOKS_REJECTED = Counter(
    "shopify_prima_webhooks_rejected", "Shopify webhook deliveries refused, by reason", ["reason"]
)
WEBHOOKS_DUPLICATE = Counter(
    "shopify_prima_webhooks_duplicate", "Deliveries recognised by X-Shopify-Webhook-Id as already published"
)
ORDER_DELIVERIES = Counter(
    "shopify_prima_order_deliveries", "Order facts seen by the Order aggregate, by outcome", ["outcome"]
)
ORDERS_BY_STATE = Gauge("shopify_prima_orders", "Orders in the order-sync read model, by state", ["state"])
EXCEPTIONS_OPEN = Gauge("shopify_prima_exceptions_open", "Open exception records, by kind", ["kind"])
GATEWAY_CALLS = Counter(
    "shopify_prima_prima_gateway_calls", "Calls from the Prima gateway, by outcome", ["operation", "outcome"]
)
COMMANDS_PARKED = Counter("shopify_prima_commands_parked", "Commands parked after their retries", ["command"])
WEBHOOK_TO_SALES_ORDER = Histogram(
    "shopify_prima_webhook_to_sales_order_seconds",
    "From the first webhook of an order received to its sales order created in Prima",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
)
UNDECODABLE = Counter("shopify_prima_messages_undecodable", "Messages skipped as undecodable (logged)", ["topic"])
OUTBOX_RELAYED = Counter("shopify_prima_outbox_relayed", "Messages relayed from the notification log", ["topic"])
OUTBOX_POSITION = Gauge("shopify_prima_outbox_position", "Last notification id relayed to Kafka", ["relay"])
PROJECTION_POSITION = Gauge("shopify_prima_projection_events", "Events applied by a projection", ["projection"])
PROJECTION_IGNORED = Counter(
    "shopify_prima_projection_events_ignored", "Events a projection does not know, skipped, by type",
    ["projection", "event_type"],
)
INVENTORY_LEVELS = Gauge(
    "shopify_prima_inventory_levels", "SKU-locations in the inventory-health read model, by state", ["state"]
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics (default registry) for a worker without an HTTP server of its own."""
    start_http_server(port, addr=host, registry=REGISTRY)

# Inventory (stock decider, catalogue reader)
INVENTORY_FACTS = Counter("shopify_prima_inventory_facts_total", "Inventory facts handled by the stock decider", ["fact"])
INVENTORY_PUSHES_DECIDED = Counter("shopify_prima_inventory_pushes_decided_total",
                                   "SetInventoryLevel commands decided by StockItem aggregates")
CATALOG_READS = Counter("shopify_prima_catalog_reads_total", "Full comparisons (bulk catalogue reads) by outcome",
                        ["outcome"])
CATALOG_LEVELS_READ = Counter("shopify_prima_catalog_levels_read_total", "Shopify inventory levels read in full comparisons")
