"""The Prima gateway: commands from Kafka to Prima's API, outcomes back to Kafka.

Which endpoint a command goes to, and what Prima's answer becomes, is a table
(`ENDPOINTS`: command type -> `Endpoint`); a new command (amend, cancel, credit memo, journal)
is a new entry. Every call carries the command's idempotency key, so a repeated command (a relay
redelivery, a retry after a timeout) gives Prima's existing document, never a second one.

A batch of commands is sent concurrently (at most PRIMA_CONCURRENCY calls in flight), the
commands about one order one after the other. While Prima is unavailable (5xx, 408, 429,
timeouts, refused connections; services/prima/client.py) a call is retried with exponential
backoff and jitter; a command that still fails is parked (gateway.parked_commands, with its
payload) and reported (PrimaSalesOrderParked), which makes it an exception with a release action.
A 4xx is Prima refusing the command: PrimaSalesOrderRejected. Never dropped: the offsets are
committed only after every outcome of the batch is on Kafka.

RetryParkedCommand (operator) sends a parked command again, with its own idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from contracts.platform import RetryParkedCommand
from contracts.prima.sales_orders import (
    CreateSalesOrder,
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
    PrimaSalesOrderRejected,
)
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, order_key
from services.platform.kafka import Consumer, Delivery, Outgoing, make_broker, publish_all
from services.platform.metrics import GATEWAY_CALLS
from services.platform.parking import ParkedCommands, with_retries
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.prima.client import PrimaClient, PrimaRejected, PrimaResponse, PrimaUnavailable

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


ENDPOINTS: dict[str, Endpoint] = {
    "CreateSalesOrder": Endpoint(
        operation="create_sales_order", method="POST", path=lambda c: "/v1/sales-orders",
        body=lambda c: c.sales_order.model_dump(mode="json"),
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
    ),
}
COMMANDS: dict[str, type[BaseModel]] = {"CreateSalesOrder": CreateSalesOrder}


@dataclass(frozen=True)
class Result:
    outcome: BaseModel
    key: bytes
    parked: bool


class PrimaGateway:
    """Commands -> outcomes, without Kafka (tests call `execute` and `handle` directly)."""

    def __init__(self, settings: Settings, client: PrimaClient, parked: ParkedCommands,
                 publish: Callable[[list[Outgoing]], Any]) -> None:
        self.settings = settings
        self.client = client
        self.parked = parked
        self.publish = publish
        self.in_flight = asyncio.Semaphore(settings.prima_concurrency)

    async def execute(self, command: Any) -> Result:
        endpoint = ENDPOINTS[command.message_type]
        async with self.in_flight:
            try:
                response = await self.client.call(endpoint.method, endpoint.path(command), json=endpoint.body(command),
                                                  idempotency_key=command.idempotency_key, retry=True)
                try:
                    outcome = endpoint.done(command, response)
                except (KeyError, TypeError, ValueError) as exc:  # a 2xx that is not what the contract says
                    raise PrimaUnavailable(f"{endpoint.operation}: Prima's answer does not follow the contract: "
                                           f"{type(exc).__name__}: {exc}", attempts=response.attempts) from exc
                GATEWAY_CALLS.labels(endpoint.operation, "replayed" if getattr(outcome, "replayed", False)
                                     else "created").inc()
                return Result(outcome, endpoint.key(command), False)
            except PrimaRejected as exc:
                GATEWAY_CALLS.labels(endpoint.operation, "rejected").inc()
                return Result(endpoint.rejected(command, exc), endpoint.key(command), False)
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

        results = await asyncio.gather(*(in_order(commands) for commands in by_subject.values()))
        await self.publish([Outgoing(PRIMA_OUTCOMES.name, r.key, r.outcome) for rs in results for r in rs])


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    async with worker.database(max_size=3) as pool, PrimaClient(settings) as client:
        gateway = PrimaGateway(settings, client, ParkedCommands(pool), lambda out: publish_all(broker, out))
        Consumer(broker, settings, group=GROUP, topics=[PRIMA_COMMANDS],
                 accepts=(*COMMANDS.values(), RetryParkedCommand), handler=gateway.handle)
        async with worker.broker(broker):
            await worker.stopped()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.prima_gateway_metrics_port)

