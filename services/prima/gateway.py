"""The Prima gateway: commands from Kafka to Prima's API, outcomes back to Kafka.

Prima is reached through a port with two adapters, chosen by PRIMA_ADAPTER (README, "Connecting
to your Prima"): `RestPort`, the documented REST contract (contracts/prima/openapi.yaml; what is
described below), and `OmLinkPort`, Prima's own SOAP web services (services/prima/omlink: a
sales order is a NewOrder, its OrderNumber the idempotency key, OrderStatus asked before every
send; the commands OM link has no
request for are refused visibly, `not_supported_by_omlink`). Parking, re-drives and the outcomes
are the same for both; the deciders do not know which one is in use.

Which endpoint a command goes to, and what Prima's answer becomes, is a table
(`ENDPOINTS`: command type -> `Endpoint`); a new command (amend, cancel, credit memo, journal)
is a new entry. Every call carries the command's idempotency key, so a repeated command (a relay
redelivery, a retry after a timeout) gives Prima's existing document, never a second one.

A batch of commands is sent concurrently (at most PRIMA_CONCURRENCY calls in flight), the
commands about one order one after the other. While Prima is unavailable (5xx, 408, 429,
timeouts, refused connections; services/prima/client.py) a call is retried with exponential
backoff and jitter; a command that still fails is parked (gateway.parked_commands, with its
payload) and reported (PrimaSalesOrderParked), which makes it an exception with a release action.
A 4xx is Prima refusing the command: PrimaSalesOrderRejected; but a 409
`duplicate_external_reference` to a CreateSalesOrder means Prima already holds the order's sales
order (an earlier attempt committed, its answer was lost): the gateway looks it up by external
reference and answers PrimaSalesOrderCreated (`adopted`), never a rejection. Never dropped: the
offsets are committed only after every outcome of the batch is on Kafka.

Parked commands are re-driven by themselves (services/platform/parking.py `Redriver`, run beside
the consumer): while some are due, GET /v1/health probes Prima every PRIMA_PROBE_INTERVAL_SECONDS;
once Prima answers, each due command is sent again with its own idempotency key and its outcome
published like any other, or it is due again after a backoff, until the horizon. RetryParkedCommand
(operator) sends a parked command again at once. A command answered either way is resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from contracts.platform import RetryParkedCommand
from contracts.prima.credit_memos import CreateCreditMemo, PrimaCreditMemoCreated
from contracts.prima.journals import (
    PostJournal,
    PrimaJournalParked,
    PrimaJournalPosted,
    PrimaJournalRejected,
)
from contracts.prima.sales_orders import (
    AmendSalesOrder,
    CancelSalesOrder,
    CreateSalesOrder,
    PrimaSalesOrderAmended,
    PrimaSalesOrderCancelled,
    PrimaSalesOrderChangeRefused,
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
    PrimaSalesOrderRejected,
)
from contracts.shopify.payouts import payout_key
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, order_key
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    make_broker,
    publish_all,
)
from services.platform.metrics import GATEWAY_CALLS
from services.platform.parking import (
    ParkedCommands,
    Redriven,
    Redriver,
    RedriveSchedule,
    with_retries,
)
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.prima.client import (
    PrimaBadResponse,
    PrimaClient,
    PrimaError,
    PrimaRejected,
    PrimaResponse,
    PrimaUnavailable,
)
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.documents import Payment

log = logging.getLogger("shopify_prima.prima_gateway")
GROUP = "prima-gateway"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Endpoint:
    """Where one kind of command goes, and what each answer becomes."""

    operation: str  # for metrics and logs
    method: str
    path: Callable[[Any], str]
    body: Callable[[Any], Any]
    subject: Callable[[Any], str]  # what the command is about (ordering, parking)
    key: Callable[[Any], bytes]  # the outcome's Kafka key
    done: Callable[[Any, PrimaResponse], BaseModel]
    rejected: Callable[[Any, PrimaRejected], BaseModel]
    parked: Callable[[Any, PrimaUnavailable], BaseModel]
    # a refusal that means "already done": the outcome for what Prima holds (None: a refusal)
    adopt: Callable[[PrimaClient, Any, PrimaRejected], Awaitable[BaseModel | None]] | None = None


DUPLICATE_EXTERNAL_REFERENCE = "duplicate_external_reference"


async def adopt_sales_order(client: PrimaClient, command: CreateSalesOrder, refused: PrimaRejected
                            ) -> PrimaSalesOrderCreated | None:
    """A 409 duplicate_external_reference to the order's own create: Prima holds its sales order
    (created by an attempt whose answer was lost, or by a command under another key). Look it up
    by external reference and answer with it. If Prima cannot show it, that is not a refusal
    either: PrimaUnavailable (parked, re-driven)."""
    if refused.status_code != 409 or refused.code != DUPLICATE_EXTERNAL_REFERENCE:
        return None
    reference = command.sales_order.external_reference
    failed = f"Prima answered {DUPLICATE_EXTERNAL_REFERENCE} for {reference!r}"
    try:
        found = [so for so in await client.find_sales_orders(reference)
                 if isinstance(so, dict) and so.get("external_reference") == reference]
    except PrimaError as exc:
        raise PrimaUnavailable(f"{failed}, and looking the sales order up failed: {exc}",
                               attempts=refused.attempts) from exc
    if not found:
        raise PrimaUnavailable(f"{failed} but shows no sales order with it", attempts=refused.attempts)
    try:
        return PrimaSalesOrderCreated(
            command_id=command.command_id, shopify_order_id=command.shopify_order_id,
            sales_order_number=found[0]["sales_order_number"], status=found[0]["status"], adopted=True,
            occurred_at=now_utc())
    except (KeyError, TypeError, ValueError) as exc:
        raise PrimaUnavailable(f"{failed}, and the sales order found does not follow the contract: "
                               f"{type(exc).__name__}: {exc}", attempts=refused.attempts) from exc


STATUS_CONFLICT = "status_conflict"


async def refused_at_cutoff(client: PrimaClient, command: AmendSalesOrder | CancelSalesOrder, refused: PrimaRejected
                            ) -> PrimaSalesOrderChangeRefused | None:
    """A 409 status_conflict to an amendment or cancellation: the sales order's status is not one
    the command allowed (the warehouse has it). Not a failure: the answer the cut-off gives,
    with the status Prima holds now (looked up), for the Order to hold the change for a person."""
    if refused.status_code != 409 or refused.code != STATUS_CONFLICT:
        return None
    try:
        found = await client.get(f"/v1/sales-orders/{command.sales_order_number}")
        status = str(found["status"])
    except (PrimaError, KeyError, TypeError) as exc:
        raise PrimaUnavailable(f"Prima answered {STATUS_CONFLICT} for {command.sales_order_number}, and its status "
                               f"could not be read: {exc}", attempts=refused.attempts) from exc
    return PrimaSalesOrderChangeRefused(
        command_id=command.command_id, shopify_order_id=command.shopify_order_id,
        sales_order_number=command.sales_order_number, status=status, reason=refused.reason, occurred_at=now_utc())


async def adopt_credit_memo(client: PrimaClient, command: CreateCreditMemo, refused: PrimaRejected
                            ) -> PrimaCreditMemoCreated | None:
    """A 409 duplicate_external_reference to a refund's memo: Prima holds the memo for this refund
    (made by an earlier attempt whose answer was lost): answer with it, never a rejection."""
    if refused.status_code != 409 or refused.code != DUPLICATE_EXTERNAL_REFERENCE:
        return None
    reference = command.credit_memo.external_reference
    try:
        body = await client.get("/v1/credit-memos", external_reference=reference)
        found = [m for m in body["credit_memos"] if m.get("external_reference") == reference]
        memo = found[0]
        return PrimaCreditMemoCreated(command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                                      refund_id=command.refund_id, credit_memo_number=memo["credit_memo_number"],
                                      total=memo["totals"]["total"], adopted=True, occurred_at=now_utc())
    except (PrimaError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise PrimaUnavailable(f"Prima answered {DUPLICATE_EXTERNAL_REFERENCE} for refund {reference}, and the memo "
                               f"could not be read: {type(exc).__name__}: {exc}", attempts=refused.attempts) from exc


def _replayed(response: PrimaResponse) -> bool:
    return response.headers.get("Idempotent-Replayed", "").lower() == "true"


def _refused(operation: str) -> Callable[[Any, PrimaRejected], PrimaSalesOrderRejected]:
    return lambda c, e: PrimaSalesOrderRejected(
        command_id=c.command_id, shopify_order_id=c.shopify_order_id, operation=operation, status_code=e.status_code,
        code=e.code, reason=e.reason, occurred_at=now_utc())


def _parked(operation: str) -> Callable[[Any, PrimaUnavailable], PrimaSalesOrderParked]:
    return lambda c, e: PrimaSalesOrderParked(
        command_id=c.command_id, shopify_order_id=c.shopify_order_id, operation=operation, attempts=e.attempts,
        reason=str(e), occurred_at=now_utc())


async def adopt_journal(client: PrimaClient, command: PostJournal, refused: PrimaRejected
                        ) -> PrimaJournalPosted | None:
    """A 409 duplicate_external_reference to a payout's journal: Prima holds the journal for this
    payout (posted by an earlier attempt whose answer was lost): answer with it, never a rejection."""
    if refused.status_code != 409 or refused.code != DUPLICATE_EXTERNAL_REFERENCE:
        return None
    reference = command.journal.external_reference
    try:
        body = await client.get("/v1/journals", external_reference=reference)
        journal = next(j for j in body["journals"] if j.get("external_reference") == reference)
        return PrimaJournalPosted(command_id=command.command_id, payout_id=command.payout_id,
                                  journal_number=journal["journal_number"], status=journal["status"], adopted=True,
                                  occurred_at=now_utc())
    except (PrimaError, KeyError, TypeError, StopIteration, ValueError) as exc:
        raise PrimaUnavailable(f"Prima answered {DUPLICATE_EXTERNAL_REFERENCE} for journal {reference}, and the "
                               f"journal could not be read: {type(exc).__name__}: {exc}",
                               attempts=refused.attempts) from exc


ENDPOINTS: dict[str, Endpoint] = {
    "CreateSalesOrder": Endpoint(
        operation="create_sales_order", method="POST", path=lambda c: "/v1/sales-orders",
        body=lambda c: c.sales_order.model_dump(mode="json", exclude={"payments"}),
        subject=lambda c: str(c.shopify_order_id), key=lambda c: order_key(c.shopify_order_id),
        done=lambda c, r: PrimaSalesOrderCreated(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id,
            sales_order_number=r.body["sales_order_number"], status=r.body["status"],
            replayed=r.headers.get("Idempotent-Replayed", "").lower() == "true", occurred_at=now_utc()),
        rejected=lambda c, e: PrimaSalesOrderRejected(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id, status_code=e.status_code, code=e.code,
            reason=e.reason, occurred_at=now_utc()),
        parked=lambda c, e: PrimaSalesOrderParked(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id, attempts=e.attempts, reason=str(e),
            occurred_at=now_utc()),
        adopt=adopt_sales_order,
    ),
    "AmendSalesOrder": Endpoint(
        operation="amend_sales_order", method="POST", path=lambda c: f"/v1/sales-orders/{c.sales_order_number}/amendments",
        body=lambda c: {"sales_order": c.sales_order.model_dump(mode="json", exclude={"payments"}),
                        "amendable_statuses": list(c.amendable_statuses), "changes": list(c.changes)},
        subject=lambda c: str(c.shopify_order_id), key=lambda c: order_key(c.shopify_order_id),
        done=lambda c, r: PrimaSalesOrderAmended(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id,
            sales_order_number=r.body["sales_order_number"], status=r.body["status"], replayed=_replayed(r),
            occurred_at=now_utc()),
        rejected=_refused("amend_sales_order"), parked=_parked("amend_sales_order"), adopt=refused_at_cutoff,
    ),
    "CancelSalesOrder": Endpoint(
        operation="cancel_sales_order", method="POST",
        path=lambda c: f"/v1/sales-orders/{c.sales_order_number}/cancellation",
        body=lambda c: {"reason": c.reason, "cancellable_statuses": list(c.cancellable_statuses)},
        subject=lambda c: str(c.shopify_order_id), key=lambda c: order_key(c.shopify_order_id),
        done=lambda c, r: PrimaSalesOrderCancelled(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id,
            sales_order_number=r.body["sales_order_number"], status=r.body["status"], replayed=_replayed(r),
            occurred_at=now_utc()),
        rejected=_refused("cancel_sales_order"), parked=_parked("cancel_sales_order"), adopt=refused_at_cutoff,
    ),
    "CreateCreditMemo": Endpoint(
        operation="create_credit_memo", method="POST", path=lambda c: "/v1/credit-memos",
        body=lambda c: c.credit_memo.model_dump(mode="json"),
        subject=lambda c: str(c.shopify_order_id), key=lambda c: order_key(c.shopify_order_id),
        done=lambda c, r: PrimaCreditMemoCreated(
            command_id=c.command_id, shopify_order_id=c.shopify_order_id, refund_id=c.refund_id,
            credit_memo_number=r.body["credit_memo_number"], total=r.body["totals"]["total"], replayed=_replayed(r),
            occurred_at=now_utc()),
        rejected=_refused("create_credit_memo"), parked=_parked("create_credit_memo"), adopt=adopt_credit_memo,
    ),
    "PostJournal": Endpoint(  # a payout's summary journal (services/payouts), or its reversal
        operation="post_journal", method="POST", path=lambda c: "/v1/journals",
        body=lambda c: c.journal.model_dump(mode="json"),
        subject=lambda c: f"payout:{c.payout_id}", key=lambda c: payout_key(c.payout_id),
        done=lambda c, r: PrimaJournalPosted(
            command_id=c.command_id, payout_id=c.payout_id, journal_number=r.body["journal_number"],
            status=r.body["status"], replayed=_replayed(r), occurred_at=now_utc()),
        rejected=lambda c, e: PrimaJournalRejected(
            command_id=c.command_id, payout_id=c.payout_id, status_code=e.status_code, code=e.code, reason=e.reason,
            occurred_at=now_utc()),
        parked=lambda c, e: PrimaJournalParked(
            command_id=c.command_id, payout_id=c.payout_id, attempts=e.attempts, reason=str(e), occurred_at=now_utc()),
        adopt=adopt_journal,
    ),
}
COMMANDS: dict[str, type[BaseModel]] = {"CreateSalesOrder": CreateSalesOrder, "AmendSalesOrder": AmendSalesOrder,
                                        "CancelSalesOrder": CancelSalesOrder, "CreateCreditMemo": CreateCreditMemo,
                                        "PostJournal": PostJournal}


@dataclass(frozen=True)
class Result:
    outcome: BaseModel
    key: bytes
    parked: bool


class RestPort:
    """The Prima port's REST adapter: a command is a call of the documented contract
    (contracts/prima/openapi.yaml, `ENDPOINTS`) with its idempotency key."""

    name = "rest"

    def __init__(self, client: PrimaClient) -> None:
        self.client = client

    async def send(self, command: Any, *, retry: bool, redrive: bool = False) -> BaseModel:
        """Prima's answer as an outcome (done, adopted or refused); raises PrimaUnavailable when
        Prima did not answer (after the client's retries, with `retry`). A re-drive needs nothing
        more: the idempotency key makes a repeat Prima's existing document."""
        endpoint = ENDPOINTS[command.message_type]
        try:
            response = await self.client.call(endpoint.method, endpoint.path(command), json=endpoint.body(command),
                                              idempotency_key=command.idempotency_key, retry=retry)
        except PrimaRejected as exc:
            adopted = await endpoint.adopt(self.client, command, exc) if endpoint.adopt else None
            if adopted is not None:
                log.info("%s %s: Prima answered %s: %s", endpoint.operation, command.command_id, exc,
                         type(adopted).__name__)
                return adopted
            return endpoint.rejected(command, exc)
        except PrimaBadResponse as exc:  # a 2xx whose body is not JSON
            raise PrimaUnavailable(f"{endpoint.operation}: {exc}", attempts=exc.attempts) from exc
        try:
            return endpoint.done(command, response)
        except (KeyError, TypeError, ValueError) as exc:  # a 2xx that is not what the contract says
            raise PrimaUnavailable(f"{endpoint.operation}: Prima's answer does not follow the contract: "
                                   f"{type(exc).__name__}: {exc}", attempts=response.attempts) from exc

    async def probe(self) -> None:
        try:
            await self.client.call("GET", "/v1/health")
        except PrimaRejected:
            pass


NOT_SUPPORTED = "not_supported_by_omlink"
# The status an OM link amendment or cancellation is refused with: past every cut-off (it is no
# status of the warehouse's: OM link has no request to change a sales order), so the Order holds
# the change for a person, who makes it in Prima and then says so (`shopify-prima orders resolve`).
NO_CHANGE_REQUEST = "no_change_request"
OMLINK_MANUAL = {  # what a person does instead, for the commands OM link has no request for
    "AmendSalesOrder": "amend the sales order in Prima by hand",
    "CancelSalesOrder": "cancel the sales order in Prima by hand",
    "CreateCreditMemo": "raise the credit memo in Prima by hand",
    "PostJournal": "post the payout's journal in Prima by hand (shopify-prima payouts show gives its lines)",
}


class OmLinkPort:
    """The Prima port's OM link adapter (services/prima/omlink): a CreateSalesOrder is a NewOrder
    (the OrderNumber, deterministic from the Shopify order, is the idempotency key; OrderStatus is
    asked before every send, so an order Prima holds is adopted, never sent twice). OM link has no request
    to amend or cancel a sales order, raise a credit memo or post a journal (PRIMA.md): an
    amendment or cancellation is answered as past the cut-off (status `no_change_request`), so the
    Order holds it for a person, who makes it in Prima and resolves it; a credit memo or journal is
    refused (`not_supported_by_omlink`, naming what to do by hand). Never lost, never sent as
    something else."""

    name = "omlink"

    def __init__(self, adapter: OmLinkAdapter) -> None:
        self.adapter = adapter

    async def send(self, command: Any, *, retry: bool, redrive: bool = False) -> BaseModel:
        endpoint = ENDPOINTS[command.message_type]
        if isinstance(command, AmendSalesOrder | CancelSalesOrder):
            return PrimaSalesOrderChangeRefused(
                command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                sales_order_number=command.sales_order_number, status=NO_CHANGE_REQUEST,
                reason=(f"Prima's OM link has no request for {endpoint.operation.replace('_', ' ')}: "
                        f"{OMLINK_MANUAL[command.message_type]}, then shopify-prima orders resolve "
                        f"{command.shopify_order_id}"), occurred_at=now_utc())
        if not isinstance(command, CreateSalesOrder):
            return endpoint.rejected(command, PrimaRejected(
                501, NOT_SUPPORTED, f"Prima's OM link has no request for {endpoint.operation.replace('_', ' ')}: "
                                    f"{OMLINK_MANUAL[command.message_type]}, then resolve this exception"))
        payments = [Payment(gateway=p.gateway, amount=p.amount, transaction_id=p.transaction_id)
                    for p in command.sales_order.payments]
        try:
            # always asked first: a command delivered again (the relay, a gateway that stopped after
            # sending), an operator's retry and a re-drive all look like a first attempt from here,
            # and Prima's refusal of a repeated OrderNumber is not something to rely on
            return await self.adapter.create_sales_order(command, payments, may_have_reached_prima=True,
                                                         once=not retry)
        except PrimaRejected as exc:
            return endpoint.rejected(command, exc)
        except PrimaBadResponse as exc:  # a 200 that is not the WSDL's answer
            raise PrimaUnavailable(f"{endpoint.operation}: {exc}", attempts=exc.attempts) from exc

    async def probe(self) -> None:
        await self.adapter.probe()


PrimaPort = RestPort | OmLinkPort


class PrimaGateway:
    """Commands -> outcomes, without Kafka (tests call `execute` and `handle` directly). Prima is
    reached through its port: the REST adapter (a PrimaClient given) or the OM link one."""

    def __init__(self, settings: Settings, port: PrimaClient | PrimaPort, parked: ParkedCommands,
                 publish: Callable[[list[Outgoing]], Any]) -> None:
        self.settings = settings
        self.port: PrimaPort = RestPort(port) if isinstance(port, PrimaClient) else port
        self.parked = parked
        self.publish = publish
        self.in_flight = asyncio.Semaphore(settings.prima_concurrency)

    async def attempt(self, command: Any, *, retry: bool, redrive: bool = False) -> BaseModel:
        """Send one command through the port: Prima's answer as an outcome (done, adopted or
        refused); raises PrimaUnavailable when Prima did not answer."""
        endpoint = ENDPOINTS[command.message_type]
        async with self.in_flight:
            outcome = await self.port.send(command, retry=retry, redrive=redrive)
        if isinstance(outcome, PrimaSalesOrderChangeRefused):
            result = "past_cutoff"
        elif isinstance(outcome, PrimaSalesOrderRejected | PrimaJournalRejected):
            result = "rejected"
        elif getattr(outcome, "adopted", False) or getattr(outcome, "replayed", False):
            result = "replayed"  # Prima's existing document
        else:
            result = "created"
        GATEWAY_CALLS.labels(endpoint.operation, result).inc()
        return outcome

    async def execute(self, command: Any) -> Result:
        """Send one command with the client's retries; park it if Prima never answered."""
        endpoint = ENDPOINTS[command.message_type]
        try:
            return Result(await self.attempt(command, retry=True), endpoint.key(command), False)
        except PrimaUnavailable as exc:
            GATEWAY_CALLS.labels(endpoint.operation, "parked").inc()
            await self.parked.park(command, gateway="prima", subject=endpoint.subject(command),
                                   reason=str(exc), attempts=exc.attempts)
            return Result(endpoint.parked(command, exc), endpoint.key(command), True)

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        """A batch: every command sent (one subject's in order), every outcome on Kafka."""
        by_subject: dict[str, list[Any]] = {}
        for command in await with_retries(self.parked, (d.message for d in deliveries), gateway="prima",
                                          models=COMMANDS):
            by_subject.setdefault(ENDPOINTS[command.message_type].subject(command), []).append(command)

        async def in_order(commands: list[Any]) -> list[Result]:
            return [await self.execute(command) for command in commands]

        results = [r for rs in await asyncio.gather(*(in_order(cs) for cs in by_subject.values())) for r in rs]
        await self.publish([Outgoing(PRIMA_OUTCOMES.name, r.key, r.outcome) for r in results])
        await self._resolve([r.outcome.command_id for r in results if not r.parked])

    async def _resolve(self, command_ids: list[Any]) -> None:
        """Answered commands are no longer parked (if a re-send of a parked one was among them).
        Best effort: a row left unresolved is re-driven, answered from Prima's idempotency
        record, and resolved then."""
        try:
            await self.parked.resolve(command_ids)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark %d answered commands as no longer parked: %s: %s", len(command_ids),
                        type(exc).__name__, exc)

    # -- the circuit breaker's two calls (services/platform/parking.py Redriver) ------------------

    async def probe(self) -> None:
        """A cheap call: raises PrimaUnavailable while Prima does not answer (any answer, even a
        refusal, means it is there)."""
        await self.port.probe()

    async def redrive(self, command: Any) -> Redriven:
        """Send a parked command again (one attempt: the schedule is the retry); publish its
        outcome if Prima answered."""
        endpoint = ENDPOINTS[command.message_type]
        try:
            outcome = await self.attempt(command, retry=False, redrive=True)
        except PrimaUnavailable as exc:
            GATEWAY_CALLS.labels(endpoint.operation, "unavailable").inc()
            return Redriven(False, str(exc), exc.attempts)
        await self.publish([Outgoing(PRIMA_OUTCOMES.name, endpoint.key(command), outcome)])
        return Redriven(True)

    def redriver(self) -> Redriver:
        s = self.settings
        return Redriver(self.parked, gateway="prima", models=COMMANDS, probe=self.probe, redrive=self.redrive,
                        probe_interval_seconds=s.prima_probe_interval_seconds,
                        lease_seconds=max(60.0, s.prima_timeout_seconds * 4))


@contextlib.asynccontextmanager
async def prima_port(settings: Settings) -> AsyncIterator[PrimaPort]:
    """The adapter PRIMA_ADAPTER names, open for the process's life."""
    if settings.prima_adapter == "omlink":
        assert settings.prima_omlink is not None  # the settings refuse omlink without it
        async with OmLinkAdapter(settings.prima_omlink) as adapter:
            log.info("Prima port: OM link at %s", settings.prima_omlink.service_url)
            yield OmLinkPort(adapter)
    else:
        async with PrimaClient(settings) as client:
            log.info("Prima port: REST at %s", settings.prima_base_url)
            yield RestPort(client)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    async with worker.database(max_size=3) as pool, prima_port(settings) as port:
        parked = ParkedCommands(pool, RedriveSchedule.from_settings(settings))
        gateway = PrimaGateway(settings, port, parked, lambda out: publish_all(broker, out))
        Consumer(broker, settings, group=GROUP, topics=[PRIMA_COMMANDS],
                 accepts=(*COMMANDS.values(), RetryParkedCommand), handler=gateway.handle)
        async with worker.broker(broker):
            redrives = asyncio.create_task(gateway.redriver().run(worker.stop), name="prima-redrives")
            try:
                await worker.stopped()
            finally:
                if not worker.stop.is_set():  # leaving for another reason: do not wait for the next pass
                    redrives.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await redrives


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.prima_gateway_metrics_port)

