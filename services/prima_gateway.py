"""The Prima gateway: commands from Kafka to Prima's API, outcomes back to Kafka.

Every call carries the command's idempotency key, so a repeated command (relay redelivery,
retry after a timeout) gives Prima's existing sales order, never a second one. Transient
failures (5xx, 429, timeouts, refused connections) are retried with exponential backoff and
jitter; a command that keeps failing is parked (kept with its payload) and reported as
SalesOrderFailed, which makes it an exception with a release action. Never dropped.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import asyncpg
import httpx
from faststream import FastStream
from faststream.kafka import KafkaMessage
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from contracts.prima import CreateSalesOrder, SalesOrderCreated, SalesOrderFailed, SalesOrderRejected
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, order_key
from services.config import Settings
from services.kafka import decode, durable_subscriber, encode, headers_for, make_broker
from services.metrics import COMMANDS_PARKED, GATEWAY_CALLS
from services.prima_client import prima_http_client
from services.runtime import run_faststream_worker

log = logging.getLogger("shopify_prima.prima_gateway")
GROUP = "prima-gateway"
OPERATION = "create_sales_order"

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.parked_commands (
    command_id uuid PRIMARY KEY, shopify_order_id bigint NOT NULL, command jsonb NOT NULL,
    reason text NOT NULL, attempts integer NOT NULL, parked_at timestamptz NOT NULL
);
"""


class TransientPrimaError(Exception):
    """Worth retrying: Prima (or the way to it) failed, not the command."""


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error.get("code", "error")), str(error.get("message", response.text))
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:500]


async def create_sales_order(
    client: httpx.AsyncClient, command: CreateSalesOrder, settings: Settings
) -> SalesOrderCreated | SalesOrderRejected | SalesOrderFailed:
    """Send one CreateSalesOrder; the outcome to publish."""
    attempts = 0

    async def attempt() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        try:
            response = await client.post(
                "/v1/sales-orders",
                headers={"Idempotency-Key": command.idempotency_key},
                json=command.sales_order.model_dump(mode="json"),
            )
        except httpx.TransportError as exc:  # timeouts, refused connections, resets
            GATEWAY_CALLS.labels(OPERATION, "transient_error").inc()
            raise TransientPrimaError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            GATEWAY_CALLS.labels(OPERATION, "transient_error").inc()
            raise TransientPrimaError(f"HTTP {response.status_code}: {_error_of(response)[1]}")
        return response

    now = lambda: datetime.now(UTC)  # noqa: E731
    try:
        async for retry in AsyncRetrying(
            stop=stop_after_attempt(settings.prima_max_attempts),
            wait=wait_exponential_jitter(multiplier=settings.prima_backoff_initial_seconds, max=settings.prima_backoff_max_seconds),
            retry=retry_if_exception_type(TransientPrimaError),
            reraise=True,
        ):
            with retry:
                response = await attempt()
    except TransientPrimaError as exc:
        GATEWAY_CALLS.labels(OPERATION, "parked").inc()
        return SalesOrderFailed(
            command_id=command.command_id, shopify_order_id=command.shopify_order_id,
            attempts=attempts, reason=str(exc), occurred_at=now(),
        )
    if response.status_code in (200, 201):
        body = response.json()
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        GATEWAY_CALLS.labels(OPERATION, "replayed" if replayed else "created").inc()
        return SalesOrderCreated(
            command_id=command.command_id, shopify_order_id=command.shopify_order_id,
            sales_order_number=body["sales_order_number"], status=body["status"], replayed=replayed, occurred_at=now(),
        )
    code, message = _error_of(response)
    GATEWAY_CALLS.labels(OPERATION, "rejected").inc()
    return SalesOrderRejected(
        command_id=command.command_id, shopify_order_id=command.shopify_order_id,
        status_code=response.status_code, code=code, reason=message, occurred_at=now(),
    )


def build(settings: Settings) -> FastStream:
    broker = make_broker(settings, "prima-gateway")
    outcomes = broker.publisher(PRIMA_OUTCOMES.name)
    state: dict[str, object] = {}

    @durable_subscriber(broker, settings, PRIMA_COMMANDS.name, GROUP)
    async def on_command(msg: KafkaMessage) -> None:
        command = decode(CreateSalesOrder.model_validate_json, msg)
        if command is None:
            return
        outcome = await create_sales_order(state["client"], command, settings)  # type: ignore[arg-type]
        if isinstance(outcome, SalesOrderFailed):
            COMMANDS_PARKED.labels(command="CreateSalesOrder").inc()
            await state["pool"].execute(  # type: ignore[union-attr]
                """INSERT INTO gateway.parked_commands VALUES ($1, $2, $3::jsonb, $4, $5, $6)
                   ON CONFLICT (command_id) DO UPDATE SET reason = EXCLUDED.reason,
                   attempts = gateway.parked_commands.attempts + EXCLUDED.attempts, parked_at = EXCLUDED.parked_at""",
                command.command_id, command.shopify_order_id, json.dumps(command.model_dump(mode="json")),
                outcome.reason, outcome.attempts, outcome.occurred_at,
            )
            log.warning("parked %s for order %s: %s", command.command_id, command.shopify_order_id, outcome.reason)
        await outcomes.publish(encode(outcome), key=order_key(command.shopify_order_id), headers=headers_for(outcome))

    app = FastStream(broker)

    @app.on_startup
    async def start() -> None:
        state["client"] = prima_http_client(settings)
        # its table comes from services.setup (services starting together would race on DDL)
        state["pool"] = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)

    @app.after_shutdown
    async def stop() -> None:
        await state["client"].aclose()  # type: ignore[union-attr]
        await state["pool"].close()  # type: ignore[union-attr]

    return app


def main() -> None:
    run_faststream_worker(build, lambda s: s.prima_gateway_metrics_port)


if __name__ == "__main__":
    main()
