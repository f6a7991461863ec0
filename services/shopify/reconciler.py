"""The order reconciler: Shopify's orders read through the Admin API and fed through the same
path as a webhook, for the webhooks Shopify dropped or delayed (SHOPIFY.md: "make processing
idempotent and run reconciliation jobs"); and the orphan watch.

A run asks Shopify for every order updated since a time (ReconcileOrders.graphql:
`orders(query: "updated_at:>='...'", sortKey: UPDATED_AT)`, page by page, paced by Shopify's
throttleStatus like every Admin call, services/shopify/admin.py), first counting them
(ReconcileOrdersCount) for its progress. Of each page it feeds the orders the integration has not
seen at that updated_at (the order read model holds an older one or none, and the reconciler has
not fed that version already): the GraphQL order is mapped to the REST shape of a webhook body
(contracts/shopify/admin_orders.py, the one place) and normalized by the ingest's own
`normalize`, so the fact is the one the ingest builds; it is a ShopifyOrderReceived on
shopify.orders.v1 keyed by the order id, topic orders/updated (the order as it stands), webhook id
`reconciler:<order id>@<updated_at>` (a version fed twice is a duplicate to the Order aggregate,
and an older version is stale). The raw GraphQL order is kept first (ingest.reconciled_orders),
marked once Kafka acknowledged it. An order that does not normalize (or is too large for a Kafka
message) is an exception record (`unreadable_order`), never dropped silently.

Runs come from the schedule (every reconciler_interval_seconds, from the watermark less
reconciler_overlap_seconds) and from operators (`shopify-prima reconcile --since ...`, POST
/orders/reconcile: a ReconcileOrders command on the operations topic, recorded as a requested run
and followed by its run id). The watermark moves only when a run is done, every fact of it
acknowledged, to the run's start, under the rules of domain/orders/reconciliation.py. One
reconciler runs at a time (an advisory lock, `Worker.exclusive`); others stand by.

The orphan watch, after each scheduled run: paid orders (a captured financial status) with no
sales order reconciler_orphan_deadline_seconds after the integration first saw them, from the
order read model (`paid_without_sales_order`); and sales orders in Prima whose Shopify order does
not exist (`sales_order_without_shopify_order`): Prima's sales orders created since the last check
(less the overlap), those the read model does not know asked of Shopify (ReconcileOrderIds). Each
is an exception record in ingest.reconciler_exceptions, resolved when it no longer holds, listed by
the ops API (/orders/orphans, /exceptions) and the CLI, and counted by a gauge for Grafana.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse
from uuid import NAMESPACE_URL, UUID, uuid5

from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter, Gauge

from contracts.platform import ReconcileOrders
from contracts.shopify.admin_orders import legacy_id, rest_order
from contracts.topics import SHOPIFY_ORDERS, order_key
from domain.orders.reconciliation import advanced_watermark, paid_without_sales_order, scheduled_since
from services.platform.kafka import Consumer, Delivery, Outgoing, error_text, headers_for, is_dependency_failure
from services.platform.runner import Outage, Worker, backoff, run_worker, wait_or_stop
from services.platform.settings import Settings
from services.prima.client import PrimaError, PrimaRejected
from services.shopify.ingest import Unparseable, _fact, normalize
from services.shopify.reconciler_store import (
    EXCEPTION_KINDS,
    OPERATOR,
    ExceptionRecord,
    Fed,
    ReconcilerStore,
    Run,
)

log = logging.getLogger("shopify_prima.reconciler")
GROUP = "shopify-reconciler"
LOCK = "shopify-reconciler"
RECONCILED_TOPIC = "orders/updated"  # what Shopify's orders/updated carries: the order as it stands
WEBHOOK_ID_PREFIX = "reconciler:"
RAW_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/reconciler/orders")
EXCEPTION_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/reconciler/exceptions")

# Page sizes, so that every query stays under the 1000 points a single query may cost (a test
# checks these costs with the Shopify sandbox's calculator of Shopify's published rules).
PAGE_SIZE = 5  # orders per ReconcileOrders page
LINES_PER_PAGE = 10  # lines of each order on that page; more through ReconcileOrderLines
ORDERS_PAGE_COST = 2 + PAGE_SIZE * (69 + 11 * LINES_PER_PAGE)  # 897
MORE_LINES_PAGE = 90
MORE_LINES_COST = 3 + 11 * MORE_LINES_PAGE  # 993
REFUNDS_COST = 420  # ReconcileOrderRefunds, for an order that has refunds
REFUND_CONNECTIONS = ("refundLineItems", "refundShippingLines", "orderAdjustments", "transactions")
COUNT_COST = 1
IDS_PER_QUERY = 50  # ReconcileOrderIds: 2 + 50
PRIMA_PAGE = 500

RUNS = Counter("shopify_prima_reconciler_runs", "Reconcile runs finished, by trigger (schedule, operator) and outcome",
               ["trigger", "outcome"])
ORDERS_READ = Counter("shopify_prima_reconciler_orders_read", "Orders read from Shopify by reconcile runs")
ORDERS_FED = Counter("shopify_prima_reconciler_orders_fed",
                     "Order versions the integration had not seen, fed to shopify.orders.v1 by the reconciler")
WATERMARK_AGE = Gauge("shopify_prima_reconciler_watermark_age_seconds",
                      "Seconds since the reconciler's watermark (every order updated before it has been fed)")
EXCEPTIONS_OPEN = Gauge("shopify_prima_reconciler_exceptions_open",
                        "Open exception records of the reconciler, by kind (paid_without_sales_order, "
                        "sales_order_without_shopify_order, unreadable_order)", ["kind"])

Publish = Callable[[list[Outgoing]], Awaitable[Any]]


def updated_since_query(since: datetime) -> str:
    """Shopify search syntax for orders updated at or after `since` (to the second, UTC)."""
    at = since.astimezone(UTC).replace(microsecond=0)
    return f"updated_at:>='{at.strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def ids_query(order_ids: Sequence[int]) -> str:
    return " OR ".join(f"id:{order_id}" for order_id in order_ids)


def exception_id(kind: str, subject: object) -> UUID:
    return uuid5(EXCEPTION_NAMESPACE, f"{kind}/{subject}")


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("a time without its offset")
    return parsed


class _Unreadable(Exception):
    """An order the reconciler read but cannot feed: its reason (no customer data)."""


class Reconciler:
    """Runs, the orphan watch and the operator's commands (tests drive it directly)."""

    def __init__(self, settings: Settings, store: ReconcilerStore, admin: Any, publish: Publish,
                 prima: Any | None = None, *, orders_topic: str = SHOPIFY_ORDERS.name) -> None:
        self.settings = settings
        self.store = store
        self.admin = admin  # services.shopify.admin.ShopifyAdmin
        self.publish = publish
        self.prima = prima  # services.prima.client.PrimaClient (None: no Prima side of the orphan watch)
        self.orders_topic = orders_topic
        self.shop_domain = urlparse(settings.shopify_admin_url).hostname or "shopify"
        self.watermark: datetime | None = None
        self.prima_outage = Outage("the orphan watch: Prima or Shopify", log)

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=self.settings.reconciler_overlap_seconds)

    @property
    def lookback(self) -> timedelta:
        return timedelta(seconds=self.settings.reconciler_initial_lookback_seconds)

    # -- the operator's command ---------------------------------------------------------------------

    async def on_command(self, deliveries: list[Delivery[Any]]) -> None:
        """ReconcileOrders: recorded as a requested run (under the command's run id, once)."""
        for delivery in deliveries:
            command: ReconcileOrders = delivery.message
            await self.store.request_run(f"{OPERATOR}{command.requested_by}", command.since, command.run_id)
            log.info("reconcile run %s requested by %s, since %s", command.run_id, command.requested_by,
                     command.since.isoformat())

    # -- the loop -----------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Run what is requested or due until `stop` (the body of the reconciler's lock). A
        dependency that fails is waited for with backoff (logged once), and runs it interrupted
        are recovered once it is back."""
        trouble = Outage("the order reconciler: a dependency", log)
        recovered = False
        s = self.settings
        while not stop.is_set():
            try:
                if not recovered:
                    again = await self.store.recover_interrupted()
                    for run_id in again:
                        log.warning("reconcile run %s was interrupted: it is run again", run_id)
                    self.watermark = (await self.store.state()).watermark
                    await self.refresh_gauges()
                    recovered = True
                run = await self.store.next_run(datetime.now(UTC), timedelta(seconds=s.reconciler_interval_seconds),
                                                timedelta(seconds=s.reconciler_retry_seconds))
                if run is not None:
                    await self.run(run)
                    if run.scheduled:
                        await self.watch(datetime.now(UTC))
                self._watermark_age()
            except Exception as exc:  # noqa: BLE001 - classified: a dependency is waited for, the rest logged
                if not is_dependency_failure(exc):
                    log.exception("the order reconciler failed unexpectedly; trying again")
                trouble.failed(exc)
                recovered = False
                if await wait_or_stop(stop, backoff(trouble.attempts, 0.5, 30.0)):
                    return
                continue
            trouble.recovered()
            if run is None and await wait_or_stop(stop, poll_seconds):
                return

    def _watermark_age(self) -> None:
        if self.watermark is not None:
            WATERMARK_AGE.set(max(0.0, (datetime.now(UTC) - self.watermark).total_seconds()))

    # -- a run --------------------------------------------------------------------------------------

    async def run(self, run: Run) -> None:
        """One run: read, feed, and once every fact is acknowledged, move the watermark. A failure
        fails the run with its error (the watermark stays: the next scheduled run reads it all)."""
        started_at = datetime.now(UTC)
        state = await self.store.state()
        since = run.since or scheduled_since(state.watermark, started_at, self.overlap, self.lookback)
        trigger = "schedule" if run.scheduled else "operator"
        await self.store.start_run(run.run_id, since, started_at, state.watermark)
        log.info("reconcile run %s (%s): orders updated since %s", run.run_id, run.trigger, since.isoformat())
        try:
            await self.read(run.run_id, since)
        except Exception as exc:  # noqa: BLE001 - recorded on the run; PostgreSQL down raises again below
            RUNS.labels(trigger, "failed").inc()
            log.error("reconcile run %s failed: %s", run.run_id, error_text(exc))
            await self.store.fail_run(run.run_id, error_text(exc, 2000))
            return
        watermark = advanced_watermark(state.watermark, since, started_at, self.overlap, self.lookback)
        await self.store.finish_run(run.run_id, watermark)
        if watermark is not None:
            self.watermark = max(self.watermark or watermark, watermark)
        RUNS.labels(trigger, "done").inc()
        row = await self.store.run_row(run.run_id) or {}
        log.info("reconcile run %s done: %s read, %s fed, %s already seen, %s unreadable", run.run_id,
                 row.get("orders_read"), row.get("orders_fed"), row.get("orders_known"), row.get("orders_unreadable"))

    async def read(self, run_id: UUID, since: datetime) -> None:
        query = updated_since_query(since)
        counted = (await self.admin.execute("ReconcileOrdersCount", {"query": query}, expected_cost=COUNT_COST))
        count = counted["ordersCount"]
        await self.store.set_total(run_id, int(count["count"]), str(count["precision"]))
        after = None
        while True:
            data = await self.admin.execute(
                "ReconcileOrders", {"first": PAGE_SIZE, "after": after, "query": query, "lines": LINES_PER_PAGE},
                expected_cost=ORDERS_PAGE_COST)
            page = data["orders"]
            await self.feed(run_id, page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    async def feed(self, run_id: UUID, nodes: list[dict[str, Any]]) -> None:
        """Feed the orders of one page the integration has not seen; record the page's progress."""
        now = datetime.now(UTC)
        keyed: list[tuple[tuple[int, datetime], dict[str, Any]]] = []
        unreadable: list[tuple[Any, str, str | None]] = []  # (subject, reason, updated_at)
        for node in nodes:
            try:
                keyed.append(((int(legacy_id(node["legacyResourceId"])), _time(node["updatedAt"])), node))
            except (KeyError, TypeError, ValueError):
                unreadable.append((node.get("id") if isinstance(node, dict) else None,
                                   "the order has no legacyResourceId or updatedAt Shopify could have sent", None))
        known = await self.store.known([key for key, _ in keyed])
        outgoing: list[tuple[Fed, Outgoing]] = []
        for (order_id, updated_at), node in keyed:
            if (order_id, updated_at) in known:
                continue
            try:
                outgoing.append(await self._fact(order_id, updated_at, node, now))
            except _Unreadable as exc:
                unreadable.append((order_id, str(exc), node.get("updatedAt")))
        await self.store.keep(run_id, [fed for fed, _ in outgoing])
        sent, too_large = await self._publish(outgoing)
        await self.store.published([fed.raw_payload_id for fed in sent])
        unreadable += [(fed.shopify_order_id, "too_large: the order is larger than a Kafka message may be",
                        fed.shopify_updated_at.isoformat()) for fed in too_large]
        await self._unreadable(unreadable, now)
        await self.store.resolve([exception_id("unreadable_order", fed.shopify_order_id) for fed in sent], now)
        await self.store.progress(run_id, read=len(nodes), fed=len(sent), known=len(known), unreadable=len(unreadable),
                                  read_up_to=keyed[-1][0][1] if keyed else None)
        ORDERS_READ.inc(len(nodes))
        ORDERS_FED.inc(len(sent))
        for fed in sent:
            log.info("reconciler: order %s (updated %s) was not seen by the integration: fed",
                     fed.shopify_order_id, fed.shopify_updated_at.isoformat())
        if unreadable:
            await self.refresh_gauges()

    async def _fact(self, order_id: int, updated_at: datetime, node: dict[str, Any], now: datetime
                    ) -> tuple[Fed, Outgoing]:
        """The ShopifyOrderReceived of an order node, built as the ingest builds it."""
        more = await self._more_lines(node)
        refunds = await self._refunds(node)
        webhook_id = f"{WEBHOOK_ID_PREFIX}{order_id}@{node['updatedAt']}"
        raw_id = uuid5(RAW_NAMESPACE, webhook_id)
        try:
            order = normalize(json.dumps(rest_order(node, more, refunds)).encode())
            fact = _fact(raw_id, webhook_id, RECONCILED_TOPIC, self.shop_domain,
                         {"x-shopify-api-version": self.settings.shopify_api_version}, now, order)
        except Unparseable as exc:
            raise _Unreadable(str(exc)) from None
        fed = Fed(raw_id, order_id, updated_at, {"node": node, "more_line_items": more, "refunds": refunds})
        return fed, Outgoing(self.orders_topic, order_key(order_id), fact, headers_for(fact, correlation_id=webhook_id))

    async def _more_lines(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The order's lines beyond its first page (ReconcileOrderLines), all of them or none."""
        info = (node.get("lineItems") or {}).get("pageInfo") or {}
        more: list[dict[str, Any]] = []
        while info.get("hasNextPage"):
            data = await self.admin.execute("ReconcileOrderLines", {
                "id": node["id"], "first": MORE_LINES_PAGE, "after": info.get("endCursor")}, expected_cost=MORE_LINES_COST)
            if data.get("order") is None:
                raise _Unreadable("its lines beyond the first page could not be read (the order is gone from Shopify)")
            lines = data["order"]["lineItems"]
            more += lines["nodes"]
            info = lines["pageInfo"]
        if ((node.get("shippingLines") or {}).get("pageInfo") or {}).get("hasNextPage"):
            raise _Unreadable("it has more than 5 shipping lines, more than the reconciler reads")
        return more

    async def _refunds(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The order's refunds (ReconcileOrderRefunds) when it has any, each read whole."""
        if not node.get("refunds"):
            return []
        data = await self.admin.execute("ReconcileOrderRefunds", {"id": node["id"]}, expected_cost=REFUNDS_COST)
        if data.get("order") is None:
            raise _Unreadable("its refunds could not be read (the order is gone from Shopify)")
        refunds = data["order"]["refunds"]
        for refund in refunds:
            for name in REFUND_CONNECTIONS:
                if ((refund.get(name) or {}).get("pageInfo") or {}).get("hasNextPage"):
                    raise _Unreadable(f"its refund {legacy_id(refund.get('id'))} has more {name} than the "
                                      "reconciler reads")
        return refunds

    async def _publish(self, outgoing: list[tuple[Fed, Outgoing]]) -> tuple[list[Fed], list[Fed]]:
        """Publish and wait for Kafka's acknowledgements: (sent, too large for a Kafka message)."""
        if not outgoing:
            return [], []
        try:
            await self.publish([out for _, out in outgoing])
            return [fed for fed, _ in outgoing], []
        except MessageSizeTooLargeError:
            sent, too_large = [], []
            for fed, out in outgoing:  # find the one(s) too large; the rest go as they are
                try:
                    await self.publish([out])
                    sent.append(fed)
                except MessageSizeTooLargeError:
                    too_large.append(fed)
            return sent, too_large

    async def _unreadable(self, found: list[tuple[Any, str, str | None]], now: datetime) -> None:
        records = []
        for subject, reason, updated_at in found:
            since = (_time(updated_at) - timedelta(minutes=1)).isoformat() if updated_at else "<its updated_at>"
            log.error("reconciler: order %s cannot be fed: %s", subject, reason)
            records.append(ExceptionRecord(
                exception_id=exception_id("unreadable_order", subject), kind="unreadable_order",
                shopify_order_id=subject if isinstance(subject, int) else None, order_name=None,
                sales_order_number=None,
                reason=f"Shopify order {subject} was read by the reconciler but cannot be fed: {reason}",
                action=("fix the mapping (contracts/shopify/admin_orders.py) or the normalizer "
                        f"(services/shopify/ingest.py), then: shopify-prima reconcile --since {since}"),
                payload={"updated_at": updated_at, "error": reason}))
        if records:
            await self.store.raise_exceptions(records, now)

    # -- the orphan watch -------------------------------------------------------------------------

    async def watch(self, now: datetime) -> None:
        """Both halves of the orphan watch; Prima's half waits for Prima and Shopify when they are
        down (logged once), the read model's does not."""
        await self.watch_paid_orders(now)
        if self.prima is not None:
            try:
                await self.watch_prima_sales_orders(now)
            except Exception as exc:  # noqa: BLE001
                if not (is_dependency_failure(exc) or isinstance(exc, PrimaError) or _shopify_error(exc)):
                    raise
                self.prima_outage.failed(exc)
            else:
                self.prima_outage.recovered()
        await self.refresh_gauges()

    async def watch_paid_orders(self, now: datetime) -> list[int]:
        """Paid orders without a sales order past the deadline: opened, and resolved once they
        have one (or are no longer paid). Returns the orphans' order ids."""
        deadline = timedelta(seconds=self.settings.reconciler_orphan_deadline_seconds)
        kind = "paid_without_sales_order"
        orphans = [o for o in await self.store.unsent_paid_orders(now - deadline)
                   if paid_without_sales_order(o.financial_status, o.prima_sales_order_number, o.first_received_at,
                                               now, deadline)]
        records = [ExceptionRecord(
            exception_id=exception_id(kind, o.shopify_order_id), kind=kind, shopify_order_id=o.shopify_order_id,
            order_name=o.order_name, sales_order_number=None,
            reason=(f"order {o.order_name} is {o.financial_status} in Shopify and has no Prima sales order "
                    f"{_age(now - o.first_received_at)} after the integration first saw it (state {o.state})"),
            action=(f"shopify-prima orders show {o.shopify_order_id}: fix what holds it (its exception), then "
                    f"shopify-prima orders release {o.shopify_order_id}"),
            payload={"state": o.state, "financial_status": o.financial_status,
                     "first_received_at": o.first_received_at.isoformat()})
            for o in orphans]
        await self.store.raise_exceptions(records, now)
        still = {r.exception_id for r in records}
        await self.store.resolve([e["exception_id"] for e in await self.store.open_exceptions(kind)
                                  if e["exception_id"] not in still], now)
        return [o.shopify_order_id for o in orphans]

    async def watch_prima_sales_orders(self, now: datetime) -> list[str]:
        """Prima sales orders created since the last check (less the overlap) whose Shopify order
        does not exist; open ones checked again (resolved once Shopify or the integration knows
        the order, or the sales order is cancelled or gone). Returns the orphans' numbers."""
        kind = "sales_order_without_shopify_order"
        state = await self.store.state()
        since = (state.prima_checked_until or now - self.lookback) - self.overlap
        listed: dict[str, dict[str, Any]] = {}
        newest = state.prima_checked_until
        async for page in self.prima.pages("/v1/sales-orders", "sales_orders", created_since=since.isoformat(),
                                           limit=PRIMA_PAGE):
            for so in page:
                listed[so["sales_order_number"]] = so
                created = _time(so["created_at"])
                newest = created if newest is None or created > newest else newest
        open_ = {e["sales_order_number"]: e for e in await self.store.open_exceptions(kind)}
        for number in set(open_) - set(listed):  # open, older than this window: as Prima holds it now
            try:
                listed[number] = await self.prima.get(f"/v1/sales-orders/{number}")
            except PrimaRejected as exc:
                if exc.status_code != 404:
                    raise
                await self.store.resolve([open_[number]["exception_id"]], now)  # gone from Prima
        listed = {n: so for n, so in listed.items() if so.get("status") != "cancelled"}
        references = {n: legacy_id(so.get("external_reference")) for n, so in listed.items()}
        ids = {ref for ref in references.values() if isinstance(ref, int)}
        seen = await self.store.orders_seen(sorted(ids))
        exists = seen | await self.shopify_has(sorted(ids - seen))
        records = []
        for number, ref in sorted(references.items()):
            if isinstance(ref, int) and ref in exists:
                continue
            so = listed[number]
            why = (f"names Shopify order {ref}, which Shopify does not have" if isinstance(ref, int)
                   else f"has the external reference {str(so.get('external_reference'))[:100]!r}, not a Shopify order id")
            records.append(ExceptionRecord(
                exception_id=exception_id(kind, number), kind=kind,
                shopify_order_id=ref if isinstance(ref, int) else None, order_name=so.get("order_name"),
                sales_order_number=number, reason=f"Prima sales order {number} {why}",
                action=(f"look at sales order {number} in Prima: cancel it, or correct its external reference "
                        "(was the Shopify order deleted?)"),
                payload={"external_reference": so.get("external_reference"), "status": so.get("status"),
                         "created_at": so.get("created_at")}))
        await self.store.raise_exceptions(records, now)
        orphaned = {r.sales_order_number for r in records}
        await self.store.resolve([e["exception_id"] for number, e in open_.items() if number not in orphaned], now)
        if newest is not None:
            await self.store.set_prima_checked_until(newest)
        return sorted(orphaned)

    async def shopify_has(self, order_ids: Sequence[int]) -> set[int]:
        """Which of these order ids Shopify has (ReconcileOrderIds, IDS_PER_QUERY at a time)."""
        found: set[int] = set()
        for start in range(0, len(order_ids), IDS_PER_QUERY):
            chunk = list(order_ids[start:start + IDS_PER_QUERY])
            data = await self.admin.execute("ReconcileOrderIds", {"first": len(chunk), "query": ids_query(chunk)},
                                            expected_cost=2 + len(chunk))
            found |= {int(legacy_id(n["legacyResourceId"])) for n in data["orders"]["nodes"]}
        return found

    async def refresh_gauges(self) -> None:
        for kind, n in (await self.store.open_counts()).items():
            EXCEPTIONS_OPEN.labels(kind=kind).set(n)


def _shopify_error(exc: BaseException) -> bool:
    from services.shopify.admin import ShopifyError

    return isinstance(exc, ShopifyError)


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


async def main(worker: Worker) -> None:
    from services.platform.kafka import make_broker, publish_all
    from services.prima.client import PrimaClient
    from services.shopify.admin import ShopifyAdmin

    settings = worker.settings
    broker = make_broker(settings, GROUP)
    admin = ShopifyAdmin(settings, headroom=settings.reconciler_shopify_headroom)
    # Prima's half of the orphan watch lists Prima's sales orders: the REST contract can, Prima's
    # OM link cannot (no request lists orders), so with PRIMA_ADAPTER=omlink it is left out.
    prima = PrimaClient(settings) if settings.prima_adapter == "rest" else None
    if prima is None:
        log.info("orphan watch: Prima's half is off (PRIMA_ADAPTER=%s lists no sales orders)", settings.prima_adapter)
    for kind in EXCEPTION_KINDS:  # every kind exported from the start, 0 until found
        EXCEPTIONS_OPEN.labels(kind=kind).set(0)
    try:
        async with worker.database(max_size=3) as pool:
            reconciler = Reconciler(settings, ReconcilerStore(pool), admin, lambda out: publish_all(broker, out), prima)
            # operator commands only: a new group starts at the end (an old request is not run again)
            Consumer(broker, settings, group=GROUP, topics=[], accepts=(ReconcileOrders,), handler=reconciler.on_command,
                     start_from="latest")
            async with worker.broker(broker):
                await worker.exclusive(pool, LOCK, lambda: reconciler.serve(worker.stop))
    finally:
        await admin.aclose()
        if prima is not None:
            await prima.aclose()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.reconciler_metrics_port)
