"""The Prima gateway's circuit breaker (services/platform/parking.py Redriver with the gateway's
probe and redrive, services/prima/gateway.py) without a network or a database: Prima is an
httpx.MockTransport, the parked commands a fake that keeps the schedule in memory. Nothing is
re-sent while Prima does not answer the probe; once it does, the due commands go out oldest
first with their own keys, and what is still failing waits for its backoff."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from pydantic import BaseModel

from contracts.prima.sales_orders import PrimaSalesOrderCreated, PrimaSalesOrderRejected
from services.platform.kafka import Outgoing
from services.platform.parking import DueCommand, RedriveSchedule
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from tests.orders.builders import create_sales_order, uk_vat_inclusive, us_tax_exclusive

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
SCHEDULE = RedriveSchedule(initial_seconds=5, max_seconds=60, horizon_seconds=3600)


@dataclass
class Row:
    command: Any
    subject: str
    parked_at: datetime
    next_attempt_at: datetime
    redrives: int = 0
    reason: str = ""
    given_up_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass
class FakeParked:
    """ParkedCommands' schedule (services/platform/parking.py) in memory."""

    rows: dict[UUID, Row] = field(default_factory=dict)
    schedule: RedriveSchedule = SCHEDULE

    def add(self, command: Any, parked_at: datetime) -> None:
        self.rows[command.command_id] = Row(command, str(command.shopify_order_id), parked_at,
                                            parked_at + self.schedule.wait(0))

    def _open(self) -> list[Row]:
        return [r for r in self.rows.values() if r.resolved_at is None and r.given_up_at is None]

    async def give_up_expired(self, gateway: str, now: datetime) -> list[dict[str, Any]]:
        expired = [r for r in self._open() if r.parked_at <= now - timedelta(seconds=self.schedule.horizon_seconds)]
        for r in expired:
            r.given_up_at = now
        return [{"command_id": r.command.command_id, "message_type": r.command.message_type, "subject": r.subject,
                 "parked_at": r.parked_at, "redrives": r.redrives, "reason": r.reason} for r in expired]

    async def due(self, gateway: str, now: datetime) -> int:
        return sum(1 for r in self._open() if r.next_attempt_at <= now)

    async def claim_due(self, gateway: str, now: datetime, models: dict[str, type[BaseModel]], *, limit: int,
                        lease_seconds: float) -> list[DueCommand]:
        due = sorted((r for r in self._open() if r.next_attempt_at <= now), key=lambda r: r.parked_at)[:limit]
        for r in due:
            r.next_attempt_at = now + timedelta(seconds=lease_seconds)
        return [DueCommand(r.command, r.subject, r.redrives, r.parked_at) for r in due]

    async def reschedule(self, due: DueCommand, reason: str, attempts: int, now: datetime) -> datetime:
        row = self.rows[due.command.command_id]
        row.redrives, row.reason = row.redrives + 1, reason
        row.next_attempt_at = now + self.schedule.wait(row.redrives)
        return row.next_attempt_at

    async def resolve(self, command_ids: Any) -> None:
        for command_id in command_ids:
            self.rows[command_id].resolved_at = T0


class Prima:
    """Answers by path: the probe from `health`, a create from `create(request)`."""

    def __init__(self) -> None:
        self.up = False
        self.requests: list[httpx.Request] = []
        self.refuse: set[str] = set()  # external references refused with a 422

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.up:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})
        if request.url.path == "/v1/health":
            return httpx.Response(200, json={"status": "ok"})
        body = httpx.Response(200, content=request.content).json()
        if body["external_reference"] in self.refuse:
            return httpx.Response(422, json={"error": {"code": "unknown_item", "message": "item ITM-X is unknown"}})
        return httpx.Response(200, json={"sales_order_number": f"SO-{body['external_reference']}", "status": "open"},
                              headers={"Idempotent-Replayed": "true"})

    def sent(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.requests if r.method == "POST"]


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def rig(settings: Settings):
    s = settings.model_copy(update={"prima_base_url": "http://prima.test", "prima_max_attempts": 3,
                                    "prima_backoff_initial_seconds": 0.001, "prima_backoff_max_seconds": 0.001})
    prima, parked, published, clock = Prima(), FakeParked(), [], Clock()

    async def publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    async with PrimaClient(s, transport=httpx.MockTransport(prima)) as client:
        gateway = PrimaGateway(s, client, parked, publish)  # type: ignore[arg-type]
        redriver = gateway.redriver()
        redriver.clock = clock
        yield prima, parked, published, clock, redriver


async def test_nothing_is_resent_while_the_probe_fails_and_the_outage_is_logged_once(rig, caplog):
    prima, parked, published, clock, redriver = rig
    command = create_sales_order(uk_vat_inclusive(1001))
    parked.add(command, T0)

    clock.now = T0 + timedelta(seconds=1)
    await redriver.once()
    assert prima.requests == []  # not due yet: not even a probe

    caplog.set_level(logging.WARNING, "shopify_prima.parking")
    for second in range(6, 60, 5):
        clock.now = T0 + timedelta(seconds=second)
        await redriver.once()
    assert {r.url.path for r in prima.requests} == {"/v1/health"}  # probes only
    assert prima.sent() == [] and published == []
    assert parked.rows[command.command_id].redrives == 0  # an outage costs no re-drive
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1

    prima.up = True
    await redriver.once()
    assert prima.sent() == [command.idempotency_key]  # its own key
    [outcome] = published
    assert isinstance(outcome.message, PrimaSalesOrderCreated) and outcome.message.command_id == command.command_id
    assert parked.rows[command.command_id].resolved_at is not None
    assert any("available again" in r.getMessage() for r in caplog.records)


async def test_due_commands_go_oldest_first_and_a_refusal_is_published_and_resolved(rig):
    prima, parked, published, clock, redriver = rig
    newer, older = create_sales_order(uk_vat_inclusive(1001)), create_sales_order(us_tax_exclusive(2001))
    refused = create_sales_order(uk_vat_inclusive(3003))
    parked.add(newer, T0 + timedelta(seconds=2))
    parked.add(older, T0)
    parked.add(refused, T0 + timedelta(seconds=1))
    prima.up, prima.refuse = True, {"3003"}

    clock.now = T0 + timedelta(seconds=10)
    await redriver.once()

    assert prima.sent() == [older.idempotency_key, refused.idempotency_key, newer.idempotency_key]
    assert [type(o.message) for o in published] == [PrimaSalesOrderCreated, PrimaSalesOrderRejected,
                                                    PrimaSalesOrderCreated]
    assert all(r.resolved_at is not None for r in parked.rows.values())


async def test_a_redrive_that_fails_waits_for_its_backoff_and_the_horizon_gives_up(rig, caplog):
    prima, parked, published, clock, redriver = rig
    command = create_sales_order(uk_vat_inclusive(1001))
    parked.add(command, T0)

    async def probe() -> None:  # Prima answers the probe, but the create keeps failing
        return None

    redriver.probe = probe
    waits = []
    clock.now = T0 + timedelta(seconds=5)
    for _ in range(5):
        await redriver.once()
        row = parked.rows[command.command_id]
        waits.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at
    assert waits == [10, 20, 40, 60, 60]  # initial 5 s after parking, then doubling up to the cap
    assert len(prima.sent()) == 5 and published == []

    clock.now = T0 + timedelta(seconds=SCHEDULE.horizon_seconds)
    caplog.set_level(logging.ERROR, "shopify_prima.parking")
    await redriver.once()
    row = parked.rows[command.command_id]
    assert row.given_up_at is not None and row.resolved_at is None
    assert len(prima.sent()) == 5  # given up: not sent again, it needs a person
    assert any("given up" in r.getMessage() for r in caplog.records)
    clock.now += timedelta(hours=1)
    await redriver.once()
    assert len(prima.sent()) == 5


def test_the_schedule_doubles_from_the_initial_wait_up_to_the_cap():
    assert [SCHEDULE.wait(n).total_seconds() for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert replace(SCHEDULE, max_seconds=300).wait(10) == timedelta(seconds=300)
