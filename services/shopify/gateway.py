"""The Shopify gateway: commands from Kafka (shopify.commands.v1) to Shopify's Admin GraphQL,
outcomes back to Kafka (shopify.outcomes.v1). The only writer of inventory to Shopify.

Commands are gathered into debounce windows (services/platform/window.py): a window opens at its
first command and closes when `inventory_batch_size` distinct inventory levels are pending, or
when no command has come for `inventory_debounce_seconds` (at most
`inventory_debounce_max_seconds` after it opened). A window holding only a full comparison's
repairs waits longer (`inventory_full_sync_debounce_seconds`, at most `..._max_seconds`), so a
run's repairs go out in full batches. The window's commands are written by the InventoryWriter
(services/shopify/inventory_writer.py: newest per level, 250 per mutation, compare-and-set,
idempotency keys); the newest decision taken up per level is kept in gateway.inventory_decisions,
so a command older than it is superseded after a restart or a rebalance too (`PostgresDecisions`);
commands Shopify kept failing are parked (gateway.parked_commands); batches of many SKUs are
journalled (gateway.shopify_inventory_batches). The window's offsets are committed
only after every outcome is on Kafka: nothing lost, at least once; a redelivered command finds
its level already set (compare-and-set) and is confirmed again.

Parked commands are re-driven by themselves (services/platform/parking.py `Redriver`, beside the
consumer): while some are due, a one-location read probes Shopify every
SHOPIFY_PROBE_INTERVAL_SECONDS; once it answers, each is sent again (compare-and-set, so a late
one never overwrites a newer level), with backoff until the horizon. A parked push is resolved as
soon as a push of the same level decided as late or later is answered, or it is superseded: the
stock decider decides failed pushes again itself. RetryParkedCommand (operator) sends a parked
SetInventoryLevel or SetProductStatus again at once.

Fulfilments (issue 10) do not wait behind a debounce window: a second consumer in the same
process, group "shopify-gateway-fulfilments" (the platform Consumer), takes CreateFulfilment and
UpdateFulfilmentTracking off the same topic (each group skips the other's commands) and the
FulfilmentWriter (services/shopify/fulfilment_writer.py: read first, adopt what an earlier
attempt made, journal gateway.fulfilment_writes, never a second fulfilment for one despatch)
writes them; outcomes go to shopify.outcomes.v1 keyed by the Shopify order id, offsets are
committed after they are on Kafka. One order's commands go in order, orders concurrently. A
command Shopify does not answer is parked (subject "order:<id>", no outcome) and re-driven by the
same Redriver through the same read-first path; RetryParkedCommand sends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from contracts.platform import RetryParkedCommand
from contracts.prima.inventory import sku_key
from contracts.shopify.fulfilments import CreateFulfilment, UpdateFulfilmentTracking
from contracts.shopify.inventory import (
    SetInventoryLevel,
    SetProductStatus,
    ShopifyOutcome,
)
from contracts.topics import SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES, order_key
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    headers_for,
    make_broker,
    publish_all,
)
from services.platform.parking import (
    ParkedCommands,
    Redriven,
    Redriver,
    RedriveSchedule,
    with_retries,
)
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.platform.window import WindowConsumer, WindowPolicy
from services.shopify.admin import ShopifyAdmin
from services.shopify.fulfilment_writer import FulfilmentWriter
from services.shopify.inventory_writer import (
    BatchRecord,
    InventoryWriter,
    newest_status_per_product,
    pair_of,
    set_product_status,
)

log = logging.getLogger("shopify_prima.shopify_gateway")
GROUP = "shopify-gateway"
FULFILMENT_GROUP = "shopify-gateway-fulfilments"
INVENTORY_COMMANDS = {"SetInventoryLevel": SetInventoryLevel, "SetProductStatus": SetProductStatus}
FULFILMENT_COMMANDS = {"CreateFulfilment": CreateFulfilment, "UpdateFulfilmentTracking": UpdateFulfilmentTracking}
COMMANDS = {**INVENTORY_COMMANDS, **FULFILMENT_COMMANDS}  # what the gateway parks and re-drives
FULFILMENT_TYPES = tuple(FULFILMENT_COMMANDS.values())
PARALLEL_ORDERS = 3  # orders whose fulfilments are written at once (each holds a database connection)


class DebounceWindow(WindowPolicy):
    """A Prima change or an operator's release goes after the short debounce; a window of only
    full-comparison repairs waits for the run's repairs, so they go out in full batches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def limits(self, messages: Sequence[Any]) -> tuple[float, float]:
        s = self.settings
        # anything but a full comparison's repair goes after the short debounce, a message that
        # did not decode too (it is dead-lettered at the flush, soon)
        urgent = any(not isinstance(m, SetInventoryLevel) or m.origin != "full_comparison" for m in messages)
        if urgent:
            return s.inventory_debounce_seconds, max(s.inventory_debounce_seconds, s.inventory_debounce_max_seconds)
        return (s.inventory_full_sync_debounce_seconds,
                max(s.inventory_full_sync_debounce_seconds, s.inventory_full_sync_debounce_max_seconds))

    def full(self, messages: Sequence[Any]) -> int | None:
        """The prefix holding `inventory_batch_size` distinct levels (commands after it for a level
        already in it go too: the newest per level wins within one batch)."""
        levels: set[Any] = set()
        for index, message in enumerate(messages):
            if isinstance(message, SetInventoryLevel) and pair_of(message) not in levels:
                if len(levels) == self.settings.inventory_batch_size:
                    return index
                levels.add(pair_of(message))
        return len(messages) if len(levels) >= self.settings.inventory_batch_size else None


class PostgresDecisions:
    """gateway.inventory_decisions: per level (inventory item, location) the newest command taken
    up (command id, issued_at, quantity, when). Taking a command up and checking it against the
    newest is one statement: the row is replaced only by a command not older than it (or by the
    same command again), so two gateways at once (a rebalance) never move it backwards; whatever
    the statement does not replace is superseded. A command is taken up before it is written:
    one older than it that a second gateway still sends finds Shopify changed and gets
    CHANGE_FROM_QUANTITY_STALE (compare-and-set), never overwrites it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def take_up(self, commands: Sequence[SetInventoryLevel]) -> set[UUID]:
        rows = await self.pool.fetch(
            """INSERT INTO gateway.inventory_decisions AS d
                   (inventory_item_id, location_id, command_id, issued_at, quantity, written_at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::int[]),
                   LATERAL (SELECT now()) AS at
               ON CONFLICT (inventory_item_id, location_id) DO UPDATE SET command_id = EXCLUDED.command_id,
                   issued_at = EXCLUDED.issued_at, quantity = EXCLUDED.quantity, written_at = EXCLUDED.written_at
               WHERE d.issued_at <= EXCLUDED.issued_at OR d.command_id = EXCLUDED.command_id
               RETURNING command_id""",
            [c.inventory_item_id for c in commands], [c.location_id for c in commands],
            [c.command_id for c in commands], [c.issued_at for c in commands], [c.quantity for c in commands])
        taken = {r["command_id"] for r in rows}
        return {c.command_id for c in commands if c.command_id not in taken}


class ShopifyGateway:
    """Commands -> outcomes (with parking and the batch journal), without Kafka: tests call
    `execute` and `handle` directly."""

    def __init__(self, settings: Settings, admin: ShopifyAdmin, pool: asyncpg.Pool,
                 publish: Callable[[list[Outgoing]], Awaitable[Any]], *, outcomes_topic: str = SHOPIFY_OUTCOMES.name,
                 fulfilments: FulfilmentWriter | None = None):
        self.settings = settings
        self.admin = admin
        self.pool = pool
        self.parked = ParkedCommands(pool, RedriveSchedule.from_settings(settings))
        self.writer = InventoryWriter(admin, settings, decisions=PostgresDecisions(pool))
        self.fulfilments = fulfilments or FulfilmentWriter(admin, pool, settings)
        self._orders_at_once = asyncio.Semaphore(PARALLEL_ORDERS)
        self.publish = publish
        self.outcomes_topic = outcomes_topic

    async def execute(self, commands: Sequence[Any]) -> list[ShopifyOutcome]:
        inventory = [c for c in commands if isinstance(c, SetInventoryLevel)]
        statuses = [c for c in commands if isinstance(c, SetProductStatus)]
        outcomes: list[ShopifyOutcome] = []
        parked: list[tuple[Any, str, str, int]] = []
        if inventory:
            report = await self.writer.write(inventory)
            outcomes.extend(report.outcomes)
            by_id = {c.command_id: c for c in inventory}
            parked.extend((by_id[o.command_id], by_id[o.command_id].sku, o.reason, o.attempts) for o in report.failed())
            await self._journal(report.batches)
        for command in newest_status_per_product(statuses):
            outcome, park_reason, attempts = await set_product_status(self.admin, command)
            outcomes.append(outcome)
            if park_reason is not None:
                parked.append((command, command.sku, park_reason, attempts))
        await self.parked.park_many(parked, gateway="shopify")
        still_parked = {command.command_id for command, *_ in parked}
        await self._resolve_parked(inventory, report.superseded if inventory else [],
                                   [o for o in outcomes if o.command_id not in still_parked])
        return outcomes

    async def _resolve_parked(self, inventory: Sequence[SetInventoryLevel], superseded: Sequence[SetInventoryLevel],
                              outcomes: Sequence[ShopifyOutcome]) -> None:
        """A parked push is no longer anyone's work once Shopify answered a push of the same
        level decided as late or later (confirmed, refused, or stale and decided again by the
        stock decider), or once it was superseded: resolved, so that no operator is asked to
        retry it. The stock decider re-decides failed pushes itself (issue 8)."""
        answered = {o.command_id for o in outcomes}
        by_id = {c.command_id: c for c in inventory}
        levels = [by_id[i] for i in answered if i in by_id]
        await self.parked.resolve([*answered, *(c.command_id for c in superseded)])
        await self.parked.resolve_older_levels(
            [(c.inventory_item_id, c.location_id, c.issued_at) for c in levels], gateway="shopify")

    # -- the circuit breaker's two calls (services/platform/parking.py Redriver) ------------------

    async def probe(self) -> None:
        """A cheap read (one location): raises while Shopify's Admin API does not answer."""
        await self.admin.execute("Locations", {"first": 1, "after": None})

    async def redrive(self, command: Any) -> Redriven:
        """Send a parked command again. Safe however late: a level is set compare-and-set from
        the quantity it was decided on, and a newer decision for the level supersedes it. Its
        outcome is published when Shopify answered (a level set, refused, or stale, which the
        stock decider decides again); a failure again is only rescheduled."""
        if isinstance(command, FULFILMENT_TYPES):
            written = await self.fulfilments.execute(command)
            if written.outcome is None:
                return Redriven(False, written.park_reason or "no answer", written.attempts)
            await self.publish([Outgoing(self.outcomes_topic, order_key(command.shopify_order_id), written.outcome,
                                         headers_for(written.outcome))])
            return Redriven(True)
        if isinstance(command, SetInventoryLevel):
            report = await self.writer.write([command])
            if report.superseded:
                return Redriven(True)
            outcomes: list[ShopifyOutcome] = list(report.outcomes)
            failed = report.failed()
            if failed:
                return Redriven(False, failed[0].reason, failed[0].attempts)
        else:
            outcome, park_reason, attempts = await set_product_status(self.admin, command)
            if park_reason is not None:
                return Redriven(False, park_reason, attempts)
            outcomes = [outcome]
        await self.publish([Outgoing(self.outcomes_topic, sku_key(o.sku), o, headers_for(o)) for o in outcomes])
        await self._resolve_parked([command] if isinstance(command, SetInventoryLevel) else [], [], outcomes)
        return Redriven(True)

    def redriver(self) -> Redriver:
        s = self.settings
        return Redriver(self.parked, gateway="shopify", models=COMMANDS, probe=self.probe, redrive=self.redrive,
                        probe_interval_seconds=s.shopify_probe_interval_seconds,
                        lease_seconds=max(60.0, s.shopify_timeout_seconds * s.shopify_max_attempts * 2))

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        """The inventory consumer's window: inventory commands (and retries of parked ones)."""
        commands = await self._with_retries(deliveries, INVENTORY_COMMANDS)
        if not commands:
            return
        outcomes = await self.execute(commands)
        await self.publish([Outgoing(self.outcomes_topic, sku_key(o.sku), o, headers_for(o)) for o in outcomes])

    async def handle_fulfilments(self, deliveries: list[Delivery[Any]]) -> None:
        """The fulfilment consumer's batch: each order's commands in order, orders concurrently;
        commands Shopify did not answer parked, every answer on Kafka before the batch's offsets
        are committed (the Consumer commits after this returns), answered ones no longer parked."""
        by_order: dict[int, list[Any]] = {}
        for command in await self._with_retries(deliveries, FULFILMENT_COMMANDS):
            by_order.setdefault(command.shopify_order_id, []).append(command)

        async def in_order(commands: list[Any]) -> list[tuple[Any, Any]]:
            async with self._orders_at_once:
                return [(command, await self.fulfilments.execute(command)) for command in commands]

        results = [r for rs in await asyncio.gather(*(in_order(cs) for cs in by_order.values())) for r in rs]
        await self.parked.park_many([(c, f"order:{c.shopify_order_id}", w.park_reason or "no answer", w.attempts)
                                     for c, w in results if w.outcome is None], gateway="shopify")
        answered = [(c, w.outcome) for c, w in results if w.outcome is not None]
        if answered:
            await self.publish([Outgoing(self.outcomes_topic, order_key(c.shopify_order_id), o, headers_for(o))
                                for c, o in answered])
            await self.parked.resolve([c.command_id for c, _ in answered])

    async def _with_retries(self, deliveries: list[Delivery[Any]], models: dict[str, Any]) -> list[Any]:
        """The commands of these models to send: with_retries over every command the gateway
        parks, a retried one of the other consumer's kinds left to that consumer (both read the
        operations topic, each sends its own)."""
        commands = await with_retries(self.parked, (d.message for d in deliveries), gateway="shopify",
                                      models=COMMANDS)
        return [c for c in commands if c.message_type in models]

    async def aclose(self) -> None:
        await self.fulfilments.aclose()

    async def _journal(self, batches: Sequence[BatchRecord]) -> None:
        if not batches:
            return
        await self.pool.executemany(
            """INSERT INTO gateway.shopify_inventory_batches VALUES ($1, $2, $3, $4::jsonb, $5)
               ON CONFLICT (reference_document_uri) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key,
               adjustment_group_id = EXCLUDED.adjustment_group_id, commands = EXCLUDED.commands,
               confirmed_at = EXCLUDED.confirmed_at""",
            [(b.reference_document_uri, b.idempotency_key, b.adjustment_group_id, json.dumps(b.commands),
              b.confirmed_at) for b in batches],
        )


def consumer(broker: Any, settings: Settings, gateway: ShopifyGateway, *, group: str = GROUP,
             topic: Any = SHOPIFY_COMMANDS) -> WindowConsumer:
    return WindowConsumer(broker, settings, group=group, topics=[topic],
                          accepts=(*INVENTORY_COMMANDS.values(), RetryParkedCommand), handler=gateway.handle,
                          max_records=settings.inventory_batch_size, policy=DebounceWindow(settings))


def fulfilment_consumer(broker: Any, settings: Settings, gateway: ShopifyGateway, *, group: str = FULFILMENT_GROUP,
                        topic: Any = SHOPIFY_COMMANDS) -> Consumer:
    """The fulfilment commands, without a window: a despatch's fulfilment goes at once."""
    return Consumer(broker, settings, group=group, topics=[topic],
                    accepts=(*FULFILMENT_COMMANDS.values(), RetryParkedCommand), handler=gateway.handle_fulfilments)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    admin = ShopifyAdmin(settings)
    try:
        async with worker.database(max_size=3 + PARALLEL_ORDERS) as pool:
            gateway = ShopifyGateway(settings, admin, pool, lambda out: publish_all(broker, out))
            consumer(broker, settings, gateway)
            fulfilment_consumer(broker, settings, gateway)
            log.info("Shopify gateway consuming %s (inventory in batches of %d, debounce %.2fs; fulfilments at once, "
                     "group %s)", SHOPIFY_COMMANDS.name, settings.inventory_batch_size,
                     settings.inventory_debounce_seconds, FULFILMENT_GROUP)
            try:
                async with worker.broker(broker):
                    redrives = asyncio.create_task(gateway.redriver().run(worker.stop), name="shopify-redrives")
                    try:
                        await worker.stopped()
                    finally:
                        if not worker.stop.is_set():  # leaving for another reason: do not wait for the next pass
                            redrives.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await redrives
            finally:
                await gateway.aclose()
    finally:
        await admin.aclose()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.shopify_gateway_metrics_port)
