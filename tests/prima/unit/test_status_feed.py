"""The OM link order status feed's rules (services/prima/omlink/status_feed.py), pure: the request
pacing (at most the configured rate, spread evenly, never a burst, also across passes), a pass's
budget, and a Despatched answer -> the PrimaDespatchRecorded the fulfilment flow consumes (the
order's remaining lines, a deterministic despatch, the carrier and tracking Prima gives or none,
flagged)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from contracts.prima.despatches import DespatchLine
from domain.fulfilment.carriers import DEFAULT_CARRIER_MAP, tracking_for
from services.fulfilment import translate
from services.prima.omlink.documents import OrderStatusAnswer
from services.prima.omlink.status_feed import (
    OpenOrder,
    RequestPacer,
    despatch_fact,
    despatched_at,
    pass_budget,
    remaining_lines,
)
from services.shopify.fulfilment_writer import tracking_input

POLLED_AT = datetime(2026, 12, 1, 5, 30, tzinfo=UTC)
ORDER = OpenOrder(shopify_order_id=5923048358213, order_number="SHOP5923048358213")
# the order-fulfilment read model's lines: two tees, and a kit of a tee and two mugs
LINES = [
    {"line_item_id": 13512345678901, "sku": "TEE-BLK-M", "quantity": 2, "components": [], "fulfilled": 0},
    {"line_item_id": 13512345678902, "sku": "KIT", "quantity": 1, "fulfilled": 0,
     "components": [{"sku": "TEE-BLK-M", "units_per_bundle": 1}, {"sku": "MUG-STONE", "units_per_bundle": 2}]},
]


class FakeClock:
    """A monotonic clock that only sleeping moves; records each sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.stop_during_sleep: asyncio.Event | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float, stop: asyncio.Event | None) -> bool:
        self.slept.append(round(seconds, 6))
        if self.stop_during_sleep is not None:
            self.stop_during_sleep.set()
            return True
        self.now += seconds
        return False


async def times_of(pacer: RequestPacer, clock: FakeClock, n: int) -> list[float]:
    sent = []
    for _ in range(n):
        assert await pacer.wait()
        sent.append(round(clock.now - 100.0, 6))
    return sent


# ------------------------------------------------------------------------------------ pacing


async def test_given_two_requests_a_second_when_five_are_asked_at_once_then_they_go_half_a_second_apart():
    clock = FakeClock()
    pacer = RequestPacer(2.0, clock=clock, sleep=clock.sleep)

    assert await times_of(pacer, clock, 5) == [0.0, 0.5, 1.0, 1.5, 2.0]


async def test_given_a_pacer_idle_for_a_minute_when_asked_again_then_no_burst_is_banked():
    clock = FakeClock()
    pacer = RequestPacer(2.0, clock=clock, sleep=clock.sleep)
    await times_of(pacer, clock, 1)

    clock.now += 60.0  # a minute without requests

    sent = await times_of(pacer, clock, 3)
    assert [round(t - sent[0], 6) for t in sent] == [0.0, 0.5, 1.0]  # the first at once, then spread again


async def test_given_a_pass_ended_when_the_next_pass_starts_at_once_then_its_first_request_waits_its_turn():
    clock = FakeClock()
    pacer = RequestPacer(4.0, clock=clock, sleep=clock.sleep)
    await times_of(pacer, clock, 2)  # one pass: at 0 and 0.25

    await times_of(pacer, clock, 1)  # the next pass, started straight away

    assert clock.slept == [0.25, 0.25]


async def test_given_the_poller_stopping_while_a_request_waits_when_woken_then_no_request_is_taken():
    clock = FakeClock()
    pacer = RequestPacer(1.0, clock=clock, sleep=clock.sleep)
    stop = asyncio.Event()
    assert await pacer.wait(stop)
    clock.stop_during_sleep = stop

    assert not await pacer.wait(stop)
    assert not await pacer.wait(stop)  # stopped: not even the wait
    assert clock.slept == [1.0]


def test_given_a_rate_of_zero_when_made_then_refused():
    with pytest.raises(ValueError, match="positive"):
        RequestPacer(0.0)


@pytest.mark.parametrize(("rate", "seconds", "budget"), [(2.0, 30.0, 60), (0.5, 30.0, 15), (0.01, 30.0, 1)])
def test_given_a_rate_when_a_pass_is_sized_then_it_asks_what_the_rate_allows_in_the_pass_and_at_least_one(
        rate, seconds, budget):
    assert pass_budget(rate, seconds) == budget


# ------------------------------------------------------------------------------------ lines


def test_given_nothing_despatched_when_the_order_is_despatched_then_every_unit_of_its_lines_is_covered():
    assert remaining_lines(LINES) == (
        DespatchLine(line_number=None, external_line_id=13512345678901, sku="TEE-BLK-M", quantity=2),
        DespatchLine(line_number=None, external_line_id=13512345678902, sku="TEE-BLK-M", quantity=1),
        DespatchLine(line_number=None, external_line_id=13512345678902, sku="MUG-STONE", quantity=2),
    )


def test_given_units_already_recorded_as_despatched_when_despatched_then_only_the_rest_is_covered():
    recorded = [{"despatch_id": "DN-000001", "status": "fulfilled", "lines": [
        {"sku": "TEE-BLK-M", "quantity": 2, "line_item_id": 13512345678901},
        {"sku": "MUG-STONE", "quantity": 1, "line_item_id": 13512345678902}]}]

    assert remaining_lines(LINES, recorded) == (
        DespatchLine(line_number=None, external_line_id=13512345678902, sku="TEE-BLK-M", quantity=1),
        DespatchLine(line_number=None, external_line_id=13512345678902, sku="MUG-STONE", quantity=1),
    )


# ------------------------------------------------------------------------------------ the fact


def answer(**details: str) -> OrderStatusAnswer:
    return OrderStatusAnswer(ORDER.order_number, "Despatched", details)


def test_given_carrier_and_tracking_when_despatched_then_one_note_of_the_remaining_lines_in_a_tracked_parcel():
    fact = despatch_fact(ORDER, answer(DespatchDate="2026-12-01", Carrier="DPD", TrackingNumber="15501234567890"),
                         remaining_lines(LINES), warehouse="WH-MAIN", polled_at=POLLED_AT)

    assert fact is not None
    assert (fact.despatch_id, fact.version, fact.change_id, fact.change) == ("SHOP5923048358213/D1", 1, 1,
                                                                             "despatched")
    assert (fact.shopify_order_id, fact.external_reference, fact.key) == (
        5923048358213, "5923048358213", b"5923048358213")
    assert fact.sales_order_number == "SHOP5923048358213"
    assert fact.despatched_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert fact.lines == remaining_lines(LINES)
    assert [(p.parcel_number, p.carrier, p.tracking_number) for p in fact.parcels] == [(1, "DPD", "15501234567890")]
    assert fact.tracking_given_by_prima is True
    tracking, warnings = tracking_for(translate.despatch(fact).parcels, DEFAULT_CARRIER_MAP)
    assert (tracking.company, tracking.numbers, warnings) == ("DPD", ("15501234567890",), ())


def test_given_no_despatch_details_when_despatched_then_a_parcel_without_tracking_flagged_and_no_tracking_sent():
    fact = despatch_fact(ORDER, answer(), remaining_lines(LINES), warehouse="WH-MAIN", polled_at=POLLED_AT)

    assert fact is not None
    assert [(p.carrier, p.tracking_number, p.tracking_url) for p in fact.parcels] == [("", None, None)]
    assert fact.tracking_given_by_prima is False
    assert fact.despatched_at == POLLED_AT
    # the fulfilment goes to Shopify without tracking: no trackingInfo at all
    tracking, warnings = tracking_for(translate.despatch(fact).parcels, DEFAULT_CARRIER_MAP)
    assert tracking_input(tracking) is None
    assert warnings == ()


def test_given_a_carrier_without_a_tracking_number_when_despatched_then_the_carrier_is_kept_and_flagged():
    fact = despatch_fact(ORDER, answer(carrier="Royal Mail"), remaining_lines(LINES), warehouse="WH-MAIN",
                         polled_at=POLLED_AT)

    assert fact is not None
    assert [(p.carrier, p.tracking_number) for p in fact.parcels] == [("Royal Mail", None)]
    assert fact.tracking_given_by_prima is False


def test_given_the_same_answer_on_two_passes_when_despatched_then_the_facts_share_the_keys_the_fulfilment_dedupes_on():
    first = despatch_fact(ORDER, answer(Carrier="UPS", TrackingNumber="1Z999"), remaining_lines(LINES),
                          warehouse="WH-MAIN", polled_at=POLLED_AT)
    again = despatch_fact(ORDER, answer(Carrier="UPS", TrackingNumber="1Z999"), remaining_lines(LINES),
                          warehouse="WH-MAIN", polled_at=datetime(2026, 12, 1, 6, 0, tzinfo=UTC))

    assert first is not None and again is not None
    assert (first.despatch_id, first.version, first.change_id) == (again.despatch_id, again.version, again.change_id)


def test_given_nothing_left_to_despatch_when_despatched_then_no_fact():
    assert despatch_fact(ORDER, answer(Carrier="DPD"), (), warehouse="WH-MAIN", polled_at=POLLED_AT) is None


@pytest.mark.parametrize(("given", "expected"), [
    ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
    ("2026-11-30T16:45:00+00:00", datetime(2026, 11, 30, 16, 45, tzinfo=UTC)),
    ("30/11/2026", datetime(2026, 11, 30, tzinfo=UTC)),
    ("next Tuesday", POLLED_AT),
    ("  ", POLLED_AT),
])
def test_given_prima_despatch_date_when_read_then_the_despatch_is_dated_by_it_or_when_seen(given, expected):
    assert despatched_at({"DespatchDate": given}, POLLED_AT) == expected
