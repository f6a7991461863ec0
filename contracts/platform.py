"""Messages of the platform itself: operator commands and dead letters.

Operator commands (topic shopify-prima.operations.v1) are how a person changes anything: the ops
API and the CLI publish them, and the process that owns the state handles them (the order
decider releases an order, the stock decider a SKU-location, the catalogue reader runs a full
comparison, the projector rebuilds a read model, a gateway retries a parked command, the order
reconciler reads Shopify's orders since a time, and any consumer group re-drives one of its dead
letters). Nothing else writes another process's
tables or the event store.

Dead letters (topic shopify-prima.dead-letters.v1): a message a consumer group could not handle
after its retries (or could not decode at all) is published there whole, with the error, so
that it is never lost and can be re-driven; a re-drive that succeeds publishes
DeadLetterRedriven. The dead-letters read model turns both into exception records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.validation import Code, Id


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class _OperatorCommand(_Frozen):
    command_id: UUID
    requested_by: Code = Field(max_length=200)
    requested_at: datetime


class ReleaseOrder(_OperatorCommand):
    """Decide a quarantined or failed order again (after its cause was fixed)."""

    message_type: Literal["ReleaseOrder"] = "ReleaseOrder"
    shopify_order_id: Id


class ResolveOrderChange(_OperatorCommand):
    """A change held at the warehouse cut-off was dealt with by hand in Prima: the order decider
    takes the order as it stands as what Prima holds (or, a cancellation, as cancelled)."""

    message_type: Literal["ResolveOrderChange"] = "ResolveOrderChange"
    shopify_order_id: Id
    note: str = Field("", max_length=500)


class ReleaseStockLevel(_OperatorCommand):
    """Decide a SKU-location again after a rejected or failed push was looked at."""

    message_type: Literal["ReleaseStockLevel"] = "ReleaseStockLevel"
    sku: Code
    location_id: Code


class RequestFullComparison(_OperatorCommand):
    """Compare every Shopify level with Prima now (the catalogue reader's full comparison)."""

    message_type: Literal["RequestFullComparison"] = "RequestFullComparison"
    run_id: UUID


class RebuildProjection(_OperatorCommand):
    """Empty a read model and rebuild it from offset zero of its topic."""

    message_type: Literal["RebuildProjection"] = "RebuildProjection"
    projection: Code


class RetryParkedCommand(_OperatorCommand):
    """Send a parked command again, with its own idempotency key (the gateway that parked it)."""

    message_type: Literal["RetryParkedCommand"] = "RetryParkedCommand"
    parked_command_id: UUID
    gateway: Literal["prima", "shopify"]


class RedriveDeadLetter(_OperatorCommand):
    """Hand a dead-lettered message to its consumer group's handler again."""

    message_type: Literal["RedriveDeadLetter"] = "RedriveDeadLetter"
    dead_letter_id: UUID
    group: str
    topic: str
    key_base64: str | None
    value_base64: str
    headers: dict[str, str]


class ReconcileOrders(_OperatorCommand):
    """Ask Shopify for every order updated since `since` and feed what the integration has not
    seen (the order reconciler, services/shopify/reconciler.py); follow it by its run_id."""

    message_type: Literal["ReconcileOrders"] = "ReconcileOrders"
    run_id: UUID
    since: AwareDatetime


class RequestPayoutIngest(_OperatorCommand):
    """Read Shopify's payouts now (the payout ingest, services/payouts/ingest.py): one payout
    (read again whatever was published before), or every payout issued since a date."""

    message_type: Literal["RequestPayoutIngest"] = "RequestPayoutIngest"
    run_id: UUID
    payout_id: Id | None = None
    since: AwareDatetime | None = None


class RematchPayout(_OperatorCommand):
    """Match a payout's transactions to their Prima documents again (the payout decider); without
    a payout, every payout with unmatched transactions."""

    message_type: Literal["RematchPayout"] = "RematchPayout"
    payout_id: Id | None = None


class ReleasePayout(_OperatorCommand):
    """Decide a held payout, or one whose journal Prima refused or the gateway parked, again
    (after its cause was fixed); the payout decider."""

    message_type: Literal["ReleasePayout"] = "ReleasePayout"
    payout_id: Id


class ReleaseFulfilment(_OperatorCommand):
    """Decide an order's fulfilment again after its exception was looked at (the hold released in
    Shopify, the despatch or the order put right): the fulfilment decider reads the order's
    fulfillment orders afresh and decides again; the same despatch keeps its idempotency key.

    `settle_despatch`: release, and settle the despatch the exception is about: what of it the
    integration cannot fulfil in Shopify is taken as handled outside the integration (a SKU the
    order does not hold, a line fulfilled by hand in Shopify or removed by an edit); it is decided
    no more and the order's next despatches are decided (OrderFulfilment.DespatchSettled)."""

    message_type: Literal["ReleaseFulfilment"] = "ReleaseFulfilment"
    shopify_order_id: Id
    settle_despatch: bool = False


OperatorCommand = Annotated[
    ReleaseOrder | ResolveOrderChange | ReleaseStockLevel | RequestFullComparison | RebuildProjection | RetryParkedCommand
    | RedriveDeadLetter | ReconcileOrders | RequestPayoutIngest | RematchPayout | ReleasePayout | ReleaseFulfilment,
    Field(discriminator="message_type"),
]


class DeadLetter(_Frozen):
    """A message one consumer group could not handle, kept whole with its error."""

    message_type: Literal["DeadLetter"] = "DeadLetter"
    dead_letter_id: UUID  # stable for (group, topic, partition, offset): a repeat is the same letter
    group: str
    topic: str
    partition: int
    offset: int
    key_base64: str | None
    value_base64: str
    headers: dict[str, str]
    original_message_type: str | None
    reason: Literal["undecodable", "handler_failed"]
    error: str = Field(max_length=2000)
    attempts: int
    dead_lettered_at: datetime


class DeadLetterRedriven(_Frozen):
    """A re-driven dead letter was handled this time."""

    message_type: Literal["DeadLetterRedriven"] = "DeadLetterRedriven"
    dead_letter_id: UUID
    group: str
    redriven_at: datetime


DeadLetterMessage = Annotated[DeadLetter | DeadLetterRedriven, Field(discriminator="message_type")]
