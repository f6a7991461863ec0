"""Every Kafka topic this integration reads or writes, and how its messages are keyed.

One place: services, deploy scripts and the AsyncAPI/JSON Schema export all read this table.
Topic names carry a major version; a breaking change to a message gets a new topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str  # what the message key is, in words; the key function is beside the producer
    description: str
    partitions: int = 3
    config: dict[str, str] = field(default_factory=dict)


# Facts kept forever: they are the replayable record of what Shopify and Prima said.
_KEEP_FOREVER = {"retention.ms": "-1", "min.insync.replicas": "1"}

SHOPIFY_ORDERS = TopicSpec(
    name="shopify.orders.v1",
    key="Shopify order id",
    description="Order webhooks (orders/create, orders/paid, orders/updated) as accepted by the "
    "ingest, normalized to ShopifyOrderReceived.",
    config=_KEEP_FOREVER,
)
PRIMA_COMMANDS = TopicSpec(
    name="prima.commands.v1",
    key="Shopify order id",
    description="Commands to Prima decided by the aggregates (CreateSalesOrder), relayed from "
    "the event store's notification log.",
    config=_KEEP_FOREVER,
)
PRIMA_OUTCOMES = TopicSpec(
    name="prima.outcomes.v1",
    key="Shopify order id",
    description="What Prima answered to a command: SalesOrderCreated, SalesOrderRejected, or "
    "SalesOrderFailed (the gateway parked the command after its retries).",
    config=_KEEP_FOREVER,
)
ORDER_EVENTS = TopicSpec(
    name="shopify-prima.order-events.v1",
    key="Shopify order id",
    description="Domain events of the Order aggregate, relayed in notification-log order. "
    "Published for other teams; the projections are built from it.",
    config=_KEEP_FOREVER,
)

PRIMA_INVENTORY = TopicSpec(
    name="prima.inventory.v1",
    key="SKU",
    description="Facts polled from Prima: PrimaStockLevel (available to sell per SKU and "
    "warehouse) and PrimaItemChanged (the item master, bundle components included). One topic "
    "so that a SKU's item and stock facts keep their order.",
    config=_KEEP_FOREVER,
)
SHOPIFY_INVENTORY = TopicSpec(
    name="shopify.inventory.v1",
    key="SKU",
    description="Facts read from Shopify's catalogue: ShopifyVariantObserved (variant, product "
    "status, inventory item, available per location), from full comparisons and SKU lookups.",
    config=_KEEP_FOREVER,
)
SHOPIFY_COMMANDS = TopicSpec(
    name="shopify.commands.v1",
    key="SKU",
    description="Commands to Shopify decided by the StockItem and CatalogItem aggregates "
    "(SetInventoryLevel, SetProductStatus), relayed from the event store's notification log.",
    config=_KEEP_FOREVER,
)
SHOPIFY_OUTCOMES = TopicSpec(
    name="shopify.outcomes.v1",
    key="SKU",
    description="What Shopify answered to a command: InventoryLevelConfirmed/Rejected/Failed, "
    "ProductStatusSet/Rejected.",
    config=_KEEP_FOREVER,
)
STOCK_EVENTS = TopicSpec(
    name="shopify-prima.stock-events.v1",
    key="SKU",
    description="Domain events of the StockItem (per SKU and Shopify location) and CatalogItem "
    "(per SKU) aggregates, in notification-log order. The inventory health read model is built "
    "from it.",
    config=_KEEP_FOREVER,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SHOPIFY_ORDERS, PRIMA_COMMANDS, PRIMA_OUTCOMES, ORDER_EVENTS,
    PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES, STOCK_EVENTS,
)


def order_key(shopify_order_id: int | str) -> bytes:
    """Messages about one order share a key, so one partition and one consumer see them in order."""
    return str(shopify_order_id).encode()
