"""Every Kafka topic this integration reads or writes, and how its messages are keyed.

One place: services, deploy scripts and the AsyncAPI/JSON Schema export all read this table.
Topic names carry a major version; a breaking change to a message gets a new topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from pydantic import BaseModel

from contracts.fulfilment.events import FulfilmentEvent
from contracts.inventory.events import StockEvent
from contracts.orders.events import OrderEvent
from contracts.payouts.events import PayoutEvent
from contracts.platform import DeadLetterMessage, OperatorCommand
from contracts.prima.despatches import PrimaDespatchRecorded
from contracts.prima.inventory import PrimaInventoryFact
from contracts.prima.journals import JournalOutcome, PostJournal
from contracts.prima.sales_orders import PrimaCommand, PrimaOutcome
from contracts.shopify.fulfilments import FulfilmentCommand, FulfilmentOutcome
from contracts.shopify.inventory import (
    ShopifyCommand,
    ShopifyInventoryFact,
    ShopifyOutcome,
)
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.shopify.payouts import (
    ShopifyPayoutObserved,
    ShopifyPayoutTransactionsRead,
)
from contracts.shopify.refunds import ShopifyOrderEditReceived, ShopifyRefundReceived


def members_of(union: object) -> tuple[type[BaseModel], ...]:
    """The models of an Annotated[A | B, Field(discriminator=...)] union (or one model)."""
    if isinstance(union, type) and issubclass(union, BaseModel):
        return (union,)
    args = get_args(union)
    if args and not isinstance(args[0], type):  # Annotated[Union[...], ...]
        return members_of(args[0])
    return tuple(m for arg in args for m in members_of(arg))


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str  # what the message key is, in words; the key function is beside the producer
    description: str
    messages: tuple[type[BaseModel], ...] = ()  # the models its messages are (one message_type each)
    partitions: int = 3
    config: dict[str, str] = field(default_factory=dict)

    @property
    def message_types(self) -> dict[str, type[BaseModel]]:
        """message_type -> model. Several models share the message_type "OrderEvent" or
        "StockEvent" (told apart by event_type): those map to the topic's union."""
        found: dict[str, list[type[BaseModel]]] = {}
        for model in self.messages:
            found.setdefault(model.model_fields["message_type"].default, []).append(model)
        return {name: models[0] for name, models in found.items() if len(models) == 1} | {
            name: _UNIONS[self.name] for name, models in found.items() if len(models) > 1}


# Facts kept forever: they are the replayable record of what Shopify and Prima said.
_KEEP_FOREVER = {"retention.ms": "-1"}  # min.insync.replicas and the replication factor: settings

SHOPIFY_ORDERS = TopicSpec(
    name="shopify.orders.v1",
    key="Shopify order id",
    description="Order webhooks (orders/create, orders/paid, orders/updated, orders/cancelled) as "
    "accepted by the ingest, normalized to ShopifyOrderReceived; refunds/create to ShopifyRefundReceived; "
    "orders/edited to ShopifyOrderEditReceived (or ShopifyOrderReceived when its body is the order).",
    messages=(ShopifyOrderReceived, ShopifyRefundReceived, ShopifyOrderEditReceived),
    config=_KEEP_FOREVER,
)
PRIMA_COMMANDS = TopicSpec(
    name="prima.commands.v1",
    key="Shopify order id (a payout's journal: payout:<id>)",
    description="Commands to Prima decided by the aggregates (CreateSalesOrder, AmendSalesOrder, "
    "CancelSalesOrder, CreateCreditMemo; PostJournal of the payouts), relayed from the event store's "
    "notification log.",
    messages=(*members_of(PrimaCommand), PostJournal),
    config=_KEEP_FOREVER,
)
PRIMA_OUTCOMES = TopicSpec(
    name="prima.outcomes.v1",
    key="Shopify order id (a payout's journal: payout:<id>)",
    description="What Prima answered to a command: PrimaSalesOrderCreated, PrimaSalesOrderAmended, "
    "PrimaSalesOrderCancelled, PrimaSalesOrderChangeRefused (past the cut-off), PrimaCreditMemoCreated, "
    "PrimaSalesOrderRejected, or PrimaSalesOrderParked (the gateway parked the command after its retries); the same three for a "
    "payout's journal (PrimaJournalPosted, PrimaJournalRejected, PrimaJournalParked).",
    messages=(*members_of(PrimaOutcome), *members_of(JournalOutcome)),
    config=_KEEP_FOREVER,
)
ORDER_EVENTS = TopicSpec(
    name="shopify-prima.order-events.v1",
    key="Shopify order id",
    description="Domain events of the Order aggregate, relayed in notification-log order. "
    "Published for other teams; the projections are built from it.",
    messages=members_of(OrderEvent),
    config=_KEEP_FOREVER,
)

PRIMA_INVENTORY = TopicSpec(
    name="prima.inventory.v1",
    key="SKU",
    description="Facts polled from Prima: PrimaStockLevel (available to sell per SKU and "
    "warehouse) and PrimaItemChanged (the item master, bundle components included). One topic "
    "so that a SKU's item and stock facts keep their order.",
    messages=members_of(PrimaInventoryFact),
    config=_KEEP_FOREVER,
)
PRIMA_DESPATCHES = TopicSpec(
    name="prima.despatches.v1",
    key="Shopify order id (the sales order's external reference)",
    description="Despatch notes polled from Prima (PrimaDespatchRecorded): what the warehouse shipped "
    "against a sales order (SKUs and quantities, a kit as its components) and in which parcels (carrier, "
    "tracking number and URL), one fact per change of a note: despatched (version 1), then "
    "tracking_updated (the whole note again, version + 1) when a parcel gets its tracking later. A "
    "partial despatch and several notes per order are normal. Keyed by the Shopify order id so that one "
    "order's despatches keep their order; the fulfilment decider consumes it.",
    messages=(PrimaDespatchRecorded,),
    config=_KEEP_FOREVER,
)
SHOPIFY_INVENTORY = TopicSpec(
    name="shopify.inventory.v1",
    key="SKU",
    description="Facts read from Shopify's catalogue: ShopifyVariantObserved (variant, product "
    "status, inventory item, available per location), from full comparisons and SKU lookups.",
    messages=members_of(ShopifyInventoryFact),
    config=_KEEP_FOREVER,
)
SHOPIFY_COMMANDS = TopicSpec(
    name="shopify.commands.v1",
    key="SKU (a fulfilment command: the Shopify order id)",
    description="Commands to Shopify decided by the StockItem and CatalogItem aggregates "
    "(SetInventoryLevel, SetProductStatus) and by the OrderFulfilment aggregate (CreateFulfilment, "
    "UpdateFulfilmentTracking), relayed from the event store's notification log.",
    messages=(*members_of(ShopifyCommand), *members_of(FulfilmentCommand)),
    config=_KEEP_FOREVER,
)
SHOPIFY_OUTCOMES = TopicSpec(
    name="shopify.outcomes.v1",
    key="SKU (a fulfilment outcome: the Shopify order id)",
    description="What Shopify answered to a command: InventoryLevelConfirmed/Rejected/Failed, "
    "ProductStatusSet/Rejected; FulfilmentCreated/Refused, FulfilmentTrackingUpdated/Refused.",
    messages=(*members_of(ShopifyOutcome), *members_of(FulfilmentOutcome)),
    config=_KEEP_FOREVER,
)
STOCK_EVENTS = TopicSpec(
    name="shopify-prima.stock-events.v1",
    key="SKU",
    description="Domain events of the StockItem (per SKU and Shopify location) and CatalogItem "
    "(per SKU) aggregates, in notification-log order. The inventory health read model is built "
    "from it.",
    messages=members_of(StockEvent),
    config=_KEEP_FOREVER,
)

OPERATIONS = TopicSpec(
    name="shopify-prima.operations.v1",
    key="the subject: Shopify order id, SKU, run, projection or dead letter id",
    description="Operator commands from the ops API and the CLI (ReleaseOrder, ResolveOrderChange, ReleaseStockLevel, "
    "RequestFullComparison, RebuildProjection, RetryParkedCommand, RedriveDeadLetter, ReconcileOrders, "
    "RequestPayoutIngest, RematchPayout, ReleasePayout, ReleaseFulfilment), each handled "
    "by the process that owns what it changes.",
    messages=members_of(OperatorCommand),
    config={"retention.ms": str(30 * 24 * 3600 * 1000)},
)
DEAD_LETTERS = TopicSpec(
    name="shopify-prima.dead-letters.v1",
    key="dead letter id",
    description="Messages a consumer group could not handle after its retries, or could not decode, "
    "kept whole with the error (DeadLetter); DeadLetterRedriven when a re-drive succeeded.",
    messages=members_of(DeadLetterMessage),
    config=_KEEP_FOREVER,
)

SHOPIFY_PAYOUTS = TopicSpec(
    name="shopify.payouts.v1",
    key="payout:<Shopify payout id>",
    description="Shopify Payments payouts read from the Admin GraphQL API by the payout ingest: each read "
    "is the payout's balance transactions in pages (ShopifyPayoutTransactionsRead), then the payout "
    "itself with what the read listed (ShopifyPayoutObserved).",
    messages=(ShopifyPayoutTransactionsRead, ShopifyPayoutObserved),
    config=_KEEP_FOREVER,
)
PAYOUT_EVENTS = TopicSpec(
    name="shopify-prima.payout-events.v1",
    key="payout:<Shopify payout id>",
    description="Domain events of the Payout aggregate (transactions read, payout observed, held, matched, "
    "journal requested and posted, reversed), in notification-log order. The payout-reconciliation "
    "read model is built from it.",
    messages=members_of(PayoutEvent),
    config=_KEEP_FOREVER,
)

FULFILMENT_EVENTS = TopicSpec(
    name="shopify-prima.fulfilment-events.v1",
    key="Shopify order id",
    description="Domain events of the OrderFulfilment aggregate (the order's lines, Prima's despatch notes, "
    "Shopify's fulfillment orders as read, fulfilments requested and made, tracking updates, exceptions "
    "and releases), in notification-log order. The order read model's fulfilment is built from it.",
    messages=members_of(FulfilmentEvent),
    config=_KEEP_FOREVER,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SHOPIFY_ORDERS, PRIMA_COMMANDS, PRIMA_OUTCOMES, ORDER_EVENTS,
    PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES, STOCK_EVENTS,
    OPERATIONS, DEAD_LETTERS, SHOPIFY_PAYOUTS, PAYOUT_EVENTS, PRIMA_DESPATCHES, FULFILMENT_EVENTS,
)
# Topics whose messages share one message_type and are told apart by event_type.
_UNIONS: dict[str, object] = {ORDER_EVENTS.name: OrderEvent, STOCK_EVENTS.name: StockEvent,
                              PAYOUT_EVENTS.name: PayoutEvent, FULFILMENT_EVENTS.name: FulfilmentEvent}
TOPICS: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}


def order_key(shopify_order_id: int | str) -> bytes:
    """Messages about one order share a key, so one partition and one consumer see them in order."""
    return str(shopify_order_id).encode()
