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
# Set by the projector only, from each read model's declaration (projections/*.py).
READ_MODEL_ROWS = Gauge("shopify_prima_read_model_rows", "Rows of a read model, by state", ["read_model", "state"])
EXCEPTIONS_OPEN = Gauge("shopify_prima_exceptions_open", "Open exception records, by read model and kind",
                        ["read_model", "kind"])
PROJECTION_HALTED = Gauge("shopify_prima_projection_halted",
                          "1 while a projection refuses to apply (its read model is ahead of its topic)", ["projection"])
GATEWAY_CALLS = Counter(
    "shopify_prima_prima_gateway_calls", "Calls from the Prima gateway, by outcome", ["operation", "outcome"]
)
COMMANDS_PARKED = Counter("shopify_prima_commands_parked", "Commands parked after their retries", ["command"])
WEBHOOK_TO_SALES_ORDER = Histogram(
    "shopify_prima_webhook_to_sales_order_seconds",
    "From the first webhook of an order received to its sales order created in Prima",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
)
DEAD_LETTERED = Counter(
    "shopify_prima_messages_dead_lettered",
    "Messages published to the dead-letter topic, by consumer group, topic and reason (undecodable, handler_failed)",
    ["group", "topic", "reason"],
)
HANDLER_RETRIES = Counter(
    "shopify_prima_handler_retries", "Batches a consumer group handled again after its handler failed", ["group"]
)
MESSAGES_SKIPPED = Counter(
    "shopify_prima_messages_skipped", "Messages of a topic that a consumer group has no business with", ["group", "topic"]
)
OUTBOX_RELAYED = Counter("shopify_prima_outbox_relayed", "Messages relayed from the notification log", ["topic"])
OUTBOX_POSITION = Gauge("shopify_prima_outbox_position", "Last notification id relayed to Kafka", ["relay"])
PROJECTION_EVENTS = Counter("shopify_prima_projection_events", "Messages applied by a projection", ["projection"])
PROJECTOR_LAG = Gauge("shopify_prima_projector_lag_messages",
                     "Messages of its topic a projection has not applied or passed yet, per partition: end offset "
                     "- next position (set by the projector)", ["projection", "topic", "partition"])


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

# Payouts (payout ingest, payout decider)
PAYOUT_POLLS = Counter("shopify_prima_payout_polls", "Reads of Shopify's payouts by the payout ingest (scheduled or asked)")
PAYOUT_POLL_FAILURES = Counter("shopify_prima_payout_poll_failures",
                               "Reads of Shopify's payouts that failed (Shopify or Kafka unavailable), tried again later")
PAYOUT_READS = Counter("shopify_prima_payout_reads", "Payouts read with their transactions and published")
PAYOUT_TRANSACTIONS_READ = Counter("shopify_prima_payout_transactions_read", "Balance transactions read and published")
PAYOUT_INGEST_LAST_SUCCESS = Gauge("shopify_prima_payout_ingest_last_success_timestamp_seconds",
                                   "When the payout ingest last read Shopify's payouts successfully (0: not yet)")
PAYOUT_JOURNALS_REQUESTED = Counter("shopify_prima_payout_journals_requested",
                                    "Payout journals decided by Payout aggregates (PostJournal commands)")
PAYOUTS_HELD = Counter("shopify_prima_payouts_held", "Payouts held as an exception instead of journalled")
PAYOUT_MATCHES_CHANGED = Counter("shopify_prima_payout_matches_changed",
                                 "Balance transactions whose match to a Prima document changed")
PAYOUT_PAID_TO_JOURNAL = Histogram(
    "shopify_prima_payout_paid_to_journal_seconds",
    "From a payout first seen paid to its journal posted in Prima",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
)

# Fulfilment (fulfilment decider)
FULFILMENT_FACTS = Counter("shopify_prima_fulfilment_facts_total", "Facts handled by the fulfilment decider", ["fact"])
FULFILMENT_DECISIONS = Counter("shopify_prima_fulfilment_decisions_total",
                               "Commands and exceptions decided by OrderFulfilment aggregates", ["decision"])
DESPATCH_TO_FULFILMENT = Histogram(
    "shopify_prima_despatch_to_fulfilment_seconds",
    "From a despatch recorded in Prima to its fulfilment made in Shopify (as answered to the decider)",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 3600),
)

# Fulfilment (Shopify gateway)
FULFILMENT_WRITES = Counter(
    "shopify_prima_shopify_gateway_fulfilment_writes_total",
    "Fulfilment commands the Shopify gateway executed, by command and answer (created, adopted, refused, "
    "updated, parked)", ["command", "answer"])
FULFILMENT_CREATE_CALLS = Counter(
    "shopify_prima_shopify_gateway_fulfillment_create_calls_total",
    "fulfillmentCreate requests sent, by result (made, user_errors, failed: no answer, or one Shopify would not run)",
    ["result"])
