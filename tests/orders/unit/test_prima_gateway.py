"""The Prima gateway (services/prima/gateway.py) and the one Prima client (services/prima/client.py)
without a network: Prima is an httpx.MockTransport, parking a fake that records what it is told,
and publishing a list. What each answer of Prima becomes, what is retried, what is parked, and
the order in which a batch's commands are sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from pydantic import BaseModel

from contracts.platform import RetryParkedCommand
from contracts.prima.sales_orders import (
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
    PrimaSalesOrderRejected,
)
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, order_key
from services.platform.kafka import Delivery, Outgoing
from services.platform.settings import Settings
from services.prima.client import (
    PrimaBadResponse,
    PrimaClient,
    PrimaRejected,
    PrimaUnavailable,
    is_transient,
)
from services.prima.gateway import PrimaGateway
from tests.orders.builders import create_sales_order, uk_vat_inclusive, us_tax_exclusive

Answer = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def sales_order(request: httpx.Request, number: str = "SO-000001") -> dict[str, Any]:
    body = json.loads(request.content)
    return {"sales_order_number": number, "status": "open", "external_reference": body["external_reference"],
            "total": body["totals"]["total"]}


def prima_error(status: int, code: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message or code}})


class Prima:
    """A scripted Prima: each request gets the next answer (the last one repeats); every request
    is kept."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        response = answer(request)
        return await response if isinstance(response, Awaitable) else response


def created(status: int = 201, replayed: bool = False) -> Answer:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return lambda request: httpx.Response(status, json=sales_order(request), headers=headers)


def answer(status: int, code: str = "error") -> Answer:
    return lambda request: prima_error(status, code)


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("Prima did not answer in time", request=request)


@dataclass
class FakeParking:
    """ParkedCommands (services/platform/parking.py) in memory."""

    parked: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    retried: list[UUID] = field(default_factory=list)
    resolved: list[UUID] = field(default_factory=list)

    async def park(self, command: BaseModel, *, gateway: str, subject: str, reason: str, attempts: int) -> None:
        self.parked[command.command_id] = {"command": command, "gateway": gateway, "subject": subject,
                                           "reason": reason, "attempts": attempts}

    async def load(self, command_id: UUID, models: dict[str, type[BaseModel]]) -> Any | None:
        found = self.parked.get(command_id)
        if found is None or found["command"].message_type not in models:
            return None
        return models[found["command"].message_type].model_validate_json(found["command"].model_dump_json())

    async def mark_retried(self, command_id: UUID) -> None:
        self.retried.append(command_id)

    async def resolve(self, command_ids: Any) -> None:
        self.resolved.extend(command_ids)


@pytest.fixture
def prima_settings(settings: Settings) -> Settings:
    """Three attempts with backoffs of a millisecond: the retries without the wait."""
    return settings.model_copy(update={
        "prima_base_url": "http://prima.test", "prima_api_key": settings.prima_api_key, "prima_max_attempts": 3,
        "prima_backoff_initial_seconds": 0.001, "prima_backoff_max_seconds": 0.001, "prima_concurrency": 4,
    })


@dataclass
class Gateway:
    gateway: PrimaGateway
    prima: Prima
    parking: FakeParking
    published: list[Outgoing]


@pytest.fixture
async def make_gateway(prima_settings: Settings):
    clients: list[PrimaClient] = []

    def make(prima: Prima) -> Gateway:
        client = PrimaClient(prima_settings, transport=httpx.MockTransport(prima))
        clients.append(client)
        parking, published = FakeParking(), []

        async def publish(messages: list[Outgoing]) -> None:
            published.extend(messages)

        return Gateway(PrimaGateway(prima_settings, client, parking, publish), prima, parking, published)

    yield make
    for client in clients:
        await client.aclose()


def commands_delivered(*commands: BaseModel) -> list[Delivery[Any]]:
    return [Delivery(c, PRIMA_COMMANDS.name, 0, offset, None) for offset, c in enumerate(commands)]


# ------------------------------------------------------------------------ what Prima answers


async def test_201_is_a_created_sales_order(make_gateway, prima_settings):
    command = create_sales_order()
    gw = make_gateway(Prima(created(201)))

    result = await gw.gateway.execute(command)

    assert isinstance(result.outcome, PrimaSalesOrderCreated) and not result.parked
    assert (result.outcome.command_id, result.outcome.shopify_order_id) == (command.command_id, 2001)
    assert (result.outcome.sales_order_number, result.outcome.status, result.outcome.replayed) == (
        "SO-000001", "open", False)
    assert result.key == order_key(2001)
    [request] = gw.prima.requests
    assert (request.method, request.url.path) == ("POST", "/v1/sales-orders")
    assert request.headers["Idempotency-Key"] == command.idempotency_key
    assert request.headers["Authorization"] == f"Bearer {prima_settings.prima_api_key.get_secret_value()}"
    assert json.loads(request.content) == command.sales_order.model_dump(mode="json", exclude={"payments"})  # as decided (REST has no payments)
    assert gw.parking.parked == {}


async def test_200_replayed_is_the_existing_sales_order(make_gateway):
    gw = make_gateway(Prima(created(200, replayed=True)))
    result = await gw.gateway.execute(create_sales_order())
    assert isinstance(result.outcome, PrimaSalesOrderCreated) and result.outcome.replayed


async def test_422_is_a_rejection_with_primas_code(make_gateway):
    command = create_sales_order()
    gw = make_gateway(Prima(lambda request: prima_error(422, "unknown_item", "item ITM-X is unknown")))

    result = await gw.gateway.execute(command)

    assert isinstance(result.outcome, PrimaSalesOrderRejected) and not result.parked
    assert (result.outcome.status_code, result.outcome.code, result.outcome.reason) == (
        422, "unknown_item", "item ITM-X is unknown")
    assert len(gw.prima.requests) == 1  # a 4xx is Prima refusing: never retried
    assert gw.parking.parked == {}


@pytest.mark.parametrize("first", [answer(500), answer(408), answer(429), answer(502), timeout],
                         ids=["500", "408", "429", "502", "timeout"])
async def test_a_transient_failure_is_retried_and_then_created(make_gateway, first):
    command = create_sales_order()
    gw = make_gateway(Prima(first, created(201)))

    result = await gw.gateway.execute(command)

    assert isinstance(result.outcome, PrimaSalesOrderCreated)
    assert len(gw.prima.requests) == 2
    assert {r.headers["Idempotency-Key"] for r in gw.prima.requests} == {command.idempotency_key}  # same key each time
    assert gw.parking.parked == {}


async def test_prima_down_through_every_attempt_parks_the_command(make_gateway, prima_settings):
    command = create_sales_order()
    gw = make_gateway(Prima(answer(503, "unavailable")))

    result = await gw.gateway.execute(command)

    assert result.parked and isinstance(result.outcome, PrimaSalesOrderParked)
    assert result.outcome.attempts == prima_settings.prima_max_attempts == len(gw.prima.requests)
    assert "503" in result.outcome.reason
    assert result.outcome.command_id == command.command_id and result.key == order_key(2001)
    parked = gw.parking.parked[command.command_id]
    assert parked["command"] == command  # kept whole, to be sent again
    assert (parked["gateway"], parked["subject"], parked["attempts"]) == ("prima", "2001", 3)
    assert "503" in parked["reason"]
    assert all(r.headers["Idempotency-Key"] == command.idempotency_key for r in gw.prima.requests)


async def test_a_2xx_that_does_not_follow_the_contract_parks_the_command(make_gateway):
    """Prima answered 201 without a sales order number: not a crash of the batch, but a command
    parked with the reason (a retry, with the same key, gets Prima's sales order again)."""
    command = create_sales_order()
    gw = make_gateway(Prima(lambda request: httpx.Response(201, json={"status": "open"})))

    result = await gw.gateway.execute(command)

    assert result.parked and isinstance(result.outcome, PrimaSalesOrderParked)
    assert "does not follow the contract" in result.outcome.reason and "sales_order_number" in result.outcome.reason
    assert command.command_id in gw.parking.parked


# ------------------------------------------------- Prima already holds the order's sales order


def found(*sales_orders: dict[str, Any]) -> Answer:
    return lambda request: httpx.Response(200, json={"sales_orders": list(sales_orders)})


def holding(command: Any, number: str = "SO-000777") -> dict[str, Any]:
    return {"sales_order_number": number, "status": "open",
            "external_reference": command.sales_order.external_reference}


async def test_409_duplicate_external_reference_adopts_the_sales_order_prima_holds(make_gateway):
    """Defect 1: an earlier attempt committed and its answer was lost; this command (another key)
    gets 409 duplicate_external_reference. That is "already created", not a rejection."""
    command = create_sales_order()
    gw = make_gateway(Prima(answer(409, "duplicate_external_reference"), found(holding(command))))

    result = await gw.gateway.execute(command)

    assert isinstance(result.outcome, PrimaSalesOrderCreated) and not result.parked
    assert (result.outcome.command_id, result.outcome.sales_order_number, result.outcome.adopted) == (
        command.command_id, "SO-000777", True)
    create, lookup = gw.prima.requests
    assert (create.method, lookup.method, lookup.url.path) == ("POST", "GET", "/v1/sales-orders")
    assert dict(lookup.url.params) == {"external_reference": command.sales_order.external_reference}
    assert "Idempotency-Key" not in lookup.headers


async def test_another_409_is_still_a_rejection(make_gateway):
    gw = make_gateway(Prima(answer(409, "idempotency_key_reused")))
    result = await gw.gateway.execute(create_sales_order())
    assert isinstance(result.outcome, PrimaSalesOrderRejected) and result.outcome.code == "idempotency_key_reused"
    assert len(gw.prima.requests) == 1  # nothing looked up


@pytest.mark.parametrize("lookup", [found(), answer(503), answer(404, "not_found")], ids=["none", "503", "404"])
async def test_a_duplicate_prima_cannot_show_parks_the_command_rather_than_reject_it(make_gateway, lookup):
    """Prima says it holds the order's sales order, but the look-up does not find it (or fails):
    neither a rejection (which would let the order decide again) nor a guess: parked, re-driven."""
    command = create_sales_order()
    gw = make_gateway(Prima(answer(409, "duplicate_external_reference"), lookup))

    result = await gw.gateway.execute(command)

    assert result.parked and isinstance(result.outcome, PrimaSalesOrderParked)
    assert "duplicate_external_reference" in result.outcome.reason
    assert command.command_id in gw.parking.parked


async def test_a_sales_order_of_another_external_reference_is_never_adopted(make_gateway):
    command = create_sales_order()
    other = {**holding(command), "external_reference": "someone-else"}
    gw = make_gateway(Prima(answer(409, "duplicate_external_reference"), found(other)))
    result = await gw.gateway.execute(command)
    assert result.parked


# ------------------------------------------------------------- the circuit breaker's two calls


async def test_the_probe_is_one_cheap_call_and_any_answer_means_prima_is_there(make_gateway):
    gw = make_gateway(Prima(answer(503), answer(404, "not_found")))
    with pytest.raises(PrimaUnavailable):
        await gw.gateway.probe()
    await gw.gateway.probe()  # a refusal is an answer
    assert [(r.method, r.url.path) for r in gw.prima.requests] == [("GET", "/v1/health")] * 2


async def test_a_redrive_is_one_attempt_with_the_commands_own_key_and_publishes_what_prima_answered(make_gateway):
    command = create_sales_order()
    gw = make_gateway(Prima(answer(503), created(200, replayed=True)))

    still_down = await gw.gateway.redrive(command)
    assert not still_down.settled and "503" in still_down.reason and still_down.attempts == 1
    assert gw.published == [] and gw.parking.parked == {}  # nothing published, not parked again

    done = await gw.gateway.redrive(command)
    assert done.settled
    [outcome] = gw.published
    assert isinstance(outcome.message, PrimaSalesOrderCreated) and outcome.message.replayed
    assert outcome.key == order_key(2001)
    assert {r.headers["Idempotency-Key"] for r in gw.prima.requests} == {command.idempotency_key}


async def test_answered_commands_of_a_batch_are_resolved_and_parked_ones_not(make_gateway):
    ok, down = create_sales_order(uk_vat_inclusive(1001)), create_sales_order(us_tax_exclusive(2001))
    gw = make_gateway(Prima(lambda r: (prima_error(503, "unavailable") if b'"2001"' in r.content
                                       else httpx.Response(201, json=sales_order(r)))))
    await gw.gateway.handle(commands_delivered(ok, down))
    assert gw.parking.resolved == [ok.command_id]
    assert set(gw.parking.parked) == {down.command_id}


# ----------------------------------------------------------------------- a batch of commands


async def test_a_batch_publishes_every_outcome_keyed_by_order(make_gateway):
    uk, us = create_sales_order(uk_vat_inclusive(1001)), create_sales_order(us_tax_exclusive(2001))
    gw = make_gateway(Prima(lambda r: (prima_error(422, "unknown_item") if b'"1001"' in r.content
                                       else httpx.Response(201, json=sales_order(r)))))

    await gw.gateway.handle(commands_delivered(uk, us))

    assert {(o.topic, o.key, type(o.message).__name__) for o in gw.published} == {
        (PRIMA_OUTCOMES.name, order_key(1001), "PrimaSalesOrderRejected"),
        (PRIMA_OUTCOMES.name, order_key(2001), "PrimaSalesOrderCreated"),
    }
    assert sorted(r.headers["Idempotency-Key"] for r in gw.prima.requests) == sorted(
        [uk.idempotency_key, us.idempotency_key])


async def test_one_orders_commands_go_in_order_and_different_orders_concurrently(make_gateway):
    """Order 1001 has two commands in the batch (the second after a release): the second starts
    only once the first was answered. Order 2001's command is sent alongside 1001's first."""
    first = create_sales_order(uk_vat_inclusive(1001))
    second = first.model_copy(update={"command_id": uuid4(), "idempotency_key": "shopify-prima:second"})
    other = create_sales_order(us_tax_exclusive(2001))
    log: list[tuple[str, str]] = []  # (event, idempotency key)
    in_flight: set[str] = set()
    most_in_flight = 0

    async def slow_prima(request: httpx.Request) -> httpx.Response:
        nonlocal most_in_flight
        key = request.headers["Idempotency-Key"]
        in_flight.add(key)
        most_in_flight = max(most_in_flight, len(in_flight))
        log.append(("start", key))
        await asyncio.sleep(0.05)
        in_flight.discard(key)
        log.append(("end", key))
        return httpx.Response(201, json=sales_order(request))

    gw = make_gateway(Prima(slow_prima))
    await gw.gateway.handle(commands_delivered(first, other, second))

    assert most_in_flight == 2  # 1001 and 2001 at once
    assert log.index(("end", first.idempotency_key)) < log.index(("start", second.idempotency_key))
    assert log.index(("start", other.idempotency_key)) < log.index(("end", first.idempotency_key))
    outcomes_1001 = [o.message.command_id for o in gw.published if o.key == order_key(1001)]
    assert outcomes_1001 == [first.command_id, second.command_id]  # published in the order sent
    assert len(gw.published) == 3


async def test_retry_parked_command_for_prima_loads_and_sends_the_parked_command(make_gateway):
    command = create_sales_order()
    gw = make_gateway(Prima(answer(503), answer(503), answer(503), created(201)))
    await gw.gateway.handle(commands_delivered(command))
    assert [type(o.message) for o in gw.published] == [PrimaSalesOrderParked]
    gw.published.clear()

    retry = RetryParkedCommand(command_id=uuid4(), requested_by="ops", requested_at=datetime.now(UTC),
                               parked_command_id=command.command_id, gateway="prima")
    not_ours = retry.model_copy(update={"command_id": uuid4(), "gateway": "shopify"})
    unknown = retry.model_copy(update={"command_id": uuid4(), "parked_command_id": uuid4()})
    await gw.gateway.handle(commands_delivered(retry, not_ours, unknown))

    assert gw.parking.retried == [command.command_id]
    assert [type(o.message) for o in gw.published] == [PrimaSalesOrderCreated]
    assert gw.published[0].message.command_id == command.command_id
    resent = gw.prima.requests[-1]
    assert resent.headers["Idempotency-Key"] == command.idempotency_key  # its own key: never a second order
    assert json.loads(resent.content) == command.sales_order.model_dump(mode="json", exclude={"payments"})
    assert len(gw.prima.requests) == 4  # the shopify gateway's and the unknown retry sent nothing


# ------------------------------------------------------------------------ the client alone


@pytest.mark.parametrize(("status", "transient"), [
    (500, True), (502, True), (503, True), (504, True), (408, True), (429, True),
    (400, False), (401, False), (404, False), (409, False), (422, False),
])
def test_prima_client_classifies_statuses(status, transient):
    assert is_transient(status) is transient


async def test_prima_client_raises_the_classified_errors(prima_settings):
    async def prima(request: httpx.Request) -> httpx.Response:
        return {
            "/v1/not-json": httpx.Response(200, content=b"<html>maintenance</html>"),
            "/v1/refused": prima_error(409, "conflict", "already exists"),
            "/v1/plain-error": httpx.Response(404, content=b"nothing here"),
            "/v1/busy": prima_error(429, "rate_limited"),
        }[request.url.path]

    async with PrimaClient(prima_settings, transport=httpx.MockTransport(prima)) as client:
        with pytest.raises(PrimaBadResponse, match="not JSON"):
            await client.call("GET", "/v1/not-json")
        with pytest.raises(PrimaRejected) as rejected:
            await client.call("POST", "/v1/refused", json={}, idempotency_key="k", retry=True)
        assert (rejected.value.status_code, rejected.value.code, rejected.value.reason) == (409, "conflict",
                                                                                            "already exists")
        assert rejected.value.attempts == 1
        with pytest.raises(PrimaRejected) as plain:
            await client.call("GET", "/v1/plain-error")
        assert (plain.value.code, plain.value.reason) == ("http_404", "nothing here")
        with pytest.raises(PrimaUnavailable) as once:
            await client.call("GET", "/v1/busy")  # no retry asked: one attempt
        assert once.value.attempts == 1
        with pytest.raises(PrimaUnavailable) as retried:
            await client.call("GET", "/v1/busy", retry=True)
        assert retried.value.attempts == prima_settings.prima_max_attempts


async def test_prima_client_sends_no_idempotency_key_on_reads(prima_settings):
    seen: list[httpx.Request] = []

    def prima(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [{"sku": "A"}], "next_cursor": None})

    async with PrimaClient(prima_settings, transport=httpx.MockTransport(prima)) as client:
        assert await client.get("/v1/items", limit=10, cursor=None) == {"items": [{"sku": "A"}], "next_cursor": None}
    assert "Idempotency-Key" not in seen[0].headers
    assert dict(seen[0].url.params) == {"limit": "10"}  # None parameters are left out
