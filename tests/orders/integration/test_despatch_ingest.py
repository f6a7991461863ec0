"""Issue 10, item 2: the despatch ingest. The Prima poller's third feed (services/prima/poller.py,
"despatches") reads Prima's despatch notes from `GET /v1/despatches` and publishes one
PrimaDespatchRecorded per change to prima.despatches.v1, keyed by the Shopify order id (the sales
order's external reference); the cursor is stored only once Kafka has acknowledged the page.

Real parts: the Prima sandbox served in-process over HTTP (its own schema in this module's
scratch database, where the cursors live too), the tests' own Kafka broker (a despatch topic and
a dead-letter topic of this module's, deleted at the end), the one Prima client and a FastStream
broker. Prima's failures come from the sandbox's fault switches, Kafka's from `publish`, a
malformed record from the client's transport (the sandbox cannot hold one).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from contracts.platform import DeadLetter
from contracts.prima.despatches import PrimaDespatchRecorded
from sandboxes.prima.app import create_app
from services.platform.kafka import Outgoing, make_broker, publish_all
from services.prima.client import PrimaClient
from services.prima.poller import GROUP, PrimaIngest
from tests.inventory.integration.support import end_offsets, published_since

pytestmark = pytest.mark.integration

SCHEMA = "despatch_ingest_test"
KEY = "despatch-ingest-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ITEMS = [
    {"item_id": "ITM-TEE", "sku": "TEE", "description": "Tee", "item_type": "stock"},
    {"item_id": "ITM-MUG", "sku": "MUG", "description": "Mug", "item_type": "stock"},
    {"item_id": "ITM-KIT", "sku": "KIT", "description": "Tee and two mugs", "item_type": "bundle",
     "components": [{"item_id": "ITM-TEE", "sku": "TEE", "quantity": 1},
                    {"item_id": "ITM-MUG", "sku": "MUG", "quantity": 2}]},
]
PRICES = {"TEE": "10.00", "MUG": "5.00", "KIT": "18.00"}


@pytest.fixture(scope="module")
async def sandbox_url(scratch_url, serve_app):
    with serve_app(create_app(scratch_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as http:
            (await http.post("/_sandbox/reset")).raise_for_status()
            (await http.put("/_sandbox/items", json={"items": ITEMS})).raise_for_status()
        yield url


@pytest.fixture
async def sandbox(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30, headers=AUTH) as http:
        (await http.delete("/_sandbox/faults")).raise_for_status()
        (await http.put("/_sandbox/stock", json={"stock": [
            {"sku": sku, "warehouse": "WH-MAIN", "on_hand": 1000} for sku in ("TEE", "MUG")]})).raise_for_status()
        yield http
        (await http.delete("/_sandbox/faults")).raise_for_status()


@pytest.fixture(scope="module")
async def topics(kafka_bootstrap) -> dict[str, str]:
    """A despatch topic and a dead-letter topic of this module's, on the tests' broker."""
    names = {"despatches": f"test.orders.despatches.{uuid.uuid4().hex[:10]}",
             "letters": f"test.orders.despatch-letters.{uuid.uuid4().hex[:10]}"}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1) for name in names.values()])
        yield names
        await admin.delete_topics(list(names.values()))
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def broker(settings, kafka_bootstrap):
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}), "despatch-ingest-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def make_ingest(settings, scratch_url, scratch_pool, kafka_bootstrap, sandbox_url, sandbox, broker, topics):
    """PrimaIngest instances on this module's topics and this test's cursors (all share them);
    `publish=` replaces the broker's publish, `transport=` the client's HTTP."""
    settings = settings.model_copy(update={
        "database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap, "prima_base_url": sandbox_url,
        "prima_api_key": SecretStr(KEY), "prima_timeout_seconds": 5.0, "prima_poll_page_size": 1000})
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    clients: list[PrimaClient] = []

    def make(publish=None, transport: httpx.AsyncBaseTransport | None = None, **changes: Any) -> PrimaIngest:
        client = PrimaClient(settings.model_copy(update=changes), transport=transport)
        clients.append(client)
        return PrimaIngest(settings.model_copy(update=changes), scratch_pool, client,
                           publish or (lambda out: publish_all(broker, out)), cursor_prefix=prefix,
                           despatch_topic=topics["despatches"], dead_letter_topic=topics["letters"])

    yield make
    for client in clients:
        await client.aclose()
    await scratch_pool.execute("DELETE FROM ingest.prima_cursors WHERE starts_with(feed, $1)", prefix)


@pytest.fixture
async def caught_up(make_ingest) -> PrimaIngest:
    """An ingest that has published every despatch change the sandbox already holds."""
    ingest = make_ingest()
    result = await ingest.poll_once(["despatches"])
    assert result["despatches"].ok, result
    assert await ingest.cursor("despatches") is not None
    return ingest


# ------------------------------------------------------------------------------ helpers


async def sales_order(sandbox: httpx.AsyncClient, **quantities: int) -> tuple[str, str]:
    """A sales order with a line per SKU given (TEE=2, KIT=1, ...) as the integration sends one
    (external_reference = the Shopify order id, external_line_id = the Shopify line id);
    (its number, its external reference)."""
    reference = str(5_900_000_000_000 + uuid.uuid4().int % 10**10)
    lines = [{"line_number": n, "item_id": f"ITM-{sku}", "sku": sku, "description": sku, "quantity": qty,
              "unit_price": PRICES[sku], "discount_amount": "0.00", "tax_amount": "0.00",
              "net_amount": str(Decimal(PRICES[sku]) * qty), "external_line_id": 13_500_000_000_000 + n}
             for n, (sku, qty) in enumerate(quantities.items(), start=1)]
    total = str(sum(Decimal(line["net_amount"]) for line in lines))
    body = {"external_reference": reference, "order_name": "#1001", "currency": "GBP", "taxes_included": True,
            "order_date": "2026-11-30T10:00:00Z", "customer_email": None, "lines": lines, "shipping": None,
            "totals": {"lines_net": total, "shipping_net": "0.00", "tax": "0.00", "total": total}}
    response = await sandbox.post("/v1/sales-orders", json=body, headers={"Idempotency-Key": f"create-{reference}"})
    assert response.status_code == 201, response.text
    return response.json()["sales_order_number"], reference


async def despatch(sandbox: httpx.AsyncClient, number: str, parcels: list[dict], lines: list[dict] | None = None
                   ) -> dict:
    body: dict[str, Any] = {"parcels": parcels, **({"lines": lines} if lines is not None else {})}
    response = await sandbox.post(f"/_sandbox/sales-orders/{number}/despatch", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def facts(records) -> list[PrimaDespatchRecorded]:
    assert all(dict(r.headers)["message_type"] == b"PrimaDespatchRecorded" for r in records)
    return sorted((PrimaDespatchRecorded.model_validate_json(r.value) for r in records), key=lambda f: f.change_id)


class MangledPrima(httpx.AsyncBaseTransport):
    """Prima's despatch pages as the sandbox gives them, each record passed through `change`, and
    `extra` records appended to the first page."""

    def __init__(self, change: Callable[[dict[str, Any]], None], extra: list[Any] | None = None) -> None:
        self.inner, self.change, self.extra = httpx.AsyncHTTPTransport(), change, extra or []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/despatches" or response.status_code != 200:
            return response
        body = json.loads(await response.aread())
        for record in body["despatches"]:
            self.change(record)
        body["despatches"] += self.extra
        self.extra = []
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(200, headers=headers, content=json.dumps(body).encode())

    async def aclose(self) -> None:
        await self.inner.aclose()


# -------------------------------------------------------------------------------- tests


async def test_given_a_despatch_in_two_parcels_when_polled_then_one_fact_keyed_by_the_shopify_order_with_its_parcels(
        caught_up, sandbox, kafka_bootstrap, topics):
    number, reference = await sales_order(sandbox, TEE=1, KIT=1)
    note = await despatch(sandbox, number, [
        {"carrier": "DPD", "tracking_number": "15501234567890",
         "tracking_url": "https://track.dpd.co.uk/parcels/15501234567890",
         "lines": [{"sku": "TEE", "quantity": 2}]},
        {"carrier": "Royal Mail", "tracking_number": "RM123456785GB", "lines": [{"sku": "MUG", "quantity": 2}]}])
    mark = await end_offsets(kafka_bootstrap, topics["despatches"])

    result = await caught_up.poll_once(["despatches"])

    assert (result["despatches"].outcome, result["despatches"].published, result["despatches"].pages) == ("ok", 1, 1)
    [record] = await published_since(kafka_bootstrap, mark)
    assert record.key == reference.encode()
    [fact] = facts([record])
    assert (fact.despatch_id, fact.version, fact.change, fact.change_id) == (note["despatch_id"], 1, "despatched",
                                                                            note["change_id"])
    assert (fact.shopify_order_id, fact.external_reference, fact.sales_order_number) == (int(reference), reference,
                                                                                         number)
    # the tee line, and the kit's line as its components: each with its sales-order and Shopify line
    assert sorted((line.line_number, line.external_line_id, line.sku, line.quantity) for line in fact.lines) == [
        (1, 13_500_000_000_001, "TEE", 1), (2, 13_500_000_000_002, "MUG", 2), (2, 13_500_000_000_002, "TEE", 1)]
    assert [(p.parcel_number, p.carrier, p.tracking_number, p.tracking_url) for p in fact.parcels] == [
        (1, "DPD", "15501234567890", "https://track.dpd.co.uk/parcels/15501234567890"),
        (2, "Royal Mail", "RM123456785GB", None)]
    assert [[(x.sku, x.quantity) for x in p.lines or ()] for p in fact.parcels] == [[("TEE", 2)], [("MUG", 2)]]
    assert fact.despatched_at.isoformat().replace("+00:00", "Z") == note["despatched_at"]
    assert await caught_up.cursor("despatches") == str(note["change_id"])

    # nothing new: nothing published again
    assert (await caught_up.poll_once(["despatches"]))["despatches"].published == 0
    assert len(await published_since(kafka_bootstrap, mark)) == 1


async def test_given_a_partial_despatch_then_the_rest_when_polled_then_two_facts_in_order_on_one_key(
        caught_up, sandbox, kafka_bootstrap, topics):
    number, reference = await sales_order(sandbox, TEE=3, MUG=2)
    mark = await end_offsets(kafka_bootstrap, topics["despatches"])

    first = await despatch(sandbox, number, [{"carrier": "DPD", "tracking_number": "DPD-1"}],
                           lines=[{"sku": "TEE", "quantity": 2}])
    assert (await caught_up.poll_once(["despatches"]))["despatches"].published == 1
    rest = await despatch(sandbox, number, [{"carrier": "DPD", "tracking_number": "DPD-2"}])  # everything left
    assert (await caught_up.poll_once(["despatches"]))["despatches"].published == 1

    records = await published_since(kafka_bootstrap, mark)
    assert {r.key for r in records} == {reference.encode()} and len({r.partition for r in records}) == 1
    in_partition_order = [PrimaDespatchRecorded.model_validate_json(r.value).change_id
                          for r in sorted(records, key=lambda r: r.offset)]
    assert in_partition_order == sorted(in_partition_order)  # a consumer of the key sees them in order
    one, two = facts(records)
    assert (one.despatch_id, two.despatch_id) == (first["despatch_id"], rest["despatch_id"])
    assert [(x.sku, x.quantity) for x in one.lines] == [("TEE", 2)]
    assert sorted((x.sku, x.quantity) for x in two.lines) == [("MUG", 2), ("TEE", 1)]
    assert [p.tracking_number for p in one.parcels] == ["DPD-1"] and [p.parcel_number for p in two.parcels] == [1]
    assert one.change_id < two.change_id and {one.version, two.version} == {1}


async def test_given_tracking_added_later_when_polled_then_a_tracking_updated_fact_with_the_whole_note(
        caught_up, sandbox, kafka_bootstrap, topics):
    number, reference = await sales_order(sandbox, TEE=1, MUG=1)
    note = await despatch(sandbox, number, [{"carrier": "DPD", "tracking_number": "DPD-77"},
                                            {"carrier": "Royal Mail"}])  # the second parcel's number comes later
    mark = await end_offsets(kafka_bootstrap, topics["despatches"])
    await caught_up.poll_once(["despatches"])
    response = await sandbox.post(f"/_sandbox/despatches/{note['despatch_id']}/parcels/2/tracking",
                                  json={"tracking_number": "RM999999999GB",
                                        "tracking_url": "https://www.royalmail.com/track-your-item#/RM999999999GB"})
    assert response.status_code == 200, response.text

    result = await caught_up.poll_once(["despatches"])

    assert (result["despatches"].outcome, result["despatches"].published) == ("ok", 1)
    despatched, updated = facts(await published_since(kafka_bootstrap, mark))
    assert (despatched.change, despatched.version, despatched.parcels[1].tracking_number) == ("despatched", 1, None)
    assert (updated.change, updated.version, updated.despatch_id) == ("tracking_updated", 2, note["despatch_id"])
    assert [(p.parcel_number, p.carrier, p.tracking_number) for p in updated.parcels] == [
        (1, "DPD", "DPD-77"), (2, "Royal Mail", "RM999999999GB")]
    assert updated.parcels[1].tracking_url == "https://www.royalmail.com/track-your-item#/RM999999999GB"
    assert updated.lines == despatched.lines and updated.shopify_order_id == int(reference)


async def test_the_cursor_moves_only_after_kafka_acknowledged_and_a_failed_send_publishes_the_page_again(
        caught_up, make_ingest, sandbox, broker, kafka_bootstrap, topics):
    before = await caught_up.cursor("despatches")
    notes = []
    for _ in range(3):
        number, _reference = await sales_order(sandbox, TEE=1)
        notes.append(await despatch(sandbox, number, [{"carrier": "DPD"}]))
    mark = await end_offsets(kafka_bootstrap, topics["despatches"])
    calls, seen_at_ack = 0, []

    async def second_message_never_acknowledged(messages: list[Outgoing]) -> None:
        """The first send: every message but the second reaches Kafka, then the send fails."""
        nonlocal calls
        calls += 1
        if calls == 1:
            await publish_all(broker, messages[:1] + messages[2:])
            raise KafkaTimeoutError("injected: no acknowledgement")
        await publish_all(broker, messages)  # returns once Kafka acknowledged every message
        seen_at_ack.append(await caught_up.cursor("despatches"))

    flaky = make_ingest(publish=second_message_never_acknowledged)
    failed = await flaky.poll_once(["despatches"])
    assert (failed["despatches"].outcome, failed["despatches"].published) == ("kafka_error", 0)
    assert "injected" in failed["despatches"].error
    assert await caught_up.cursor("despatches") == before  # the cursor stayed

    again = await flaky.poll_once(["despatches"])
    assert (again["despatches"].outcome, again["despatches"].published) == ("ok", 3)
    assert seen_at_ack == [before]  # acknowledged while the stored cursor was still the old one
    assert await caught_up.cursor("despatches") == str(notes[-1]["change_id"])
    published = facts(await published_since(kafka_bootstrap, mark))
    # at least once: the two sent with the failure, then the page again, whole; none skipped
    assert sorted(f.despatch_id for f in published) == sorted(
        [notes[0]["despatch_id"], notes[2]["despatch_id"]] + [n["despatch_id"] for n in notes])


async def test_prima_failing_leaves_the_cursor_and_a_later_poll_publishes(caught_up, make_ingest, sandbox,
                                                                         kafka_bootstrap, topics):
    cursor = await caught_up.cursor("despatches")
    number, reference = await sales_order(sandbox, MUG=1)
    note = await despatch(sandbox, number, [{"carrier": "UPS", "tracking_number": "1Z999AA10123456784"}])
    mark = await end_offsets(kafka_bootstrap, topics["despatches"])

    await sandbox.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": 500, "path_prefix": "/v1/despatches",
                                                 "method": "GET"})
    result = await caught_up.poll_once(["despatches"])
    assert (result["despatches"].outcome, result["despatches"].published) == ("prima_unavailable", 0)
    assert "500" in result["despatches"].error
    slow = make_ingest(prima_timeout_seconds=0.3)
    await sandbox.post("/_sandbox/faults", json={"timeout_next": 1, "timeout_seconds": 1,
                                                 "path_prefix": "/v1/despatches", "method": "GET"})
    result = await slow.poll_once(["despatches"])
    assert result["despatches"].outcome == "prima_unavailable" and "Timeout" in result["despatches"].error
    assert await caught_up.cursor("despatches") == cursor
    assert await published_since(kafka_bootstrap, mark) == []

    result = await caught_up.poll_once(["despatches"])
    assert (result["despatches"].outcome, result["despatches"].published) == ("ok", 1)
    [fact] = facts(await published_since(kafka_bootstrap, mark))
    assert (fact.despatch_id, fact.shopify_order_id) == (note["despatch_id"], int(reference))
    assert await caught_up.cursor("despatches") == str(note["change_id"])


async def test_a_malformed_record_is_dead_lettered_once_and_the_feed_goes_on(caught_up, make_ingest, sandbox,
                                                                            broker, kafka_bootstrap, topics):
    cursor = await caught_up.cursor("despatches")
    bad_number, _ = await sales_order(sandbox, TEE=1)
    bad = await despatch(sandbox, bad_number, [{"carrier": "DPD"}])
    good_number, good_reference = await sales_order(sandbox, MUG=1)
    good = await despatch(sandbox, good_number, [{"carrier": "DPD"}])
    marks = {name: await end_offsets(kafka_bootstrap, topic) for name, topic in topics.items()}

    def mangle(record: dict[str, Any]) -> None:  # a sales order Prima holds under another reference
        if record["despatch_id"] == bad["despatch_id"]:
            record["external_reference"] = "WEB-ORDER-77"

    async def sent_then_unacknowledged(messages: list[Outgoing]) -> None:
        """Kafka takes the page (facts and letters) but the acknowledgement never comes back."""
        await publish_all(broker, messages)
        raise KafkaTimeoutError("injected: no acknowledgement")

    failing = make_ingest(publish=sent_then_unacknowledged, transport=MangledPrima(mangle, extra=["not a note"]))
    assert (await failing.poll_once(["despatches"]))["despatches"].outcome == "kafka_error"
    assert await failing.cursor("despatches") == cursor
    ingest = make_ingest(transport=MangledPrima(mangle, extra=["not a note"]))  # the same page, polled again

    result = await ingest.poll_once(["despatches"])

    assert (result["despatches"].outcome, result["despatches"].published) == ("ok", 1)
    published = facts(await published_since(kafka_bootstrap, marks["despatches"]))
    assert {(f.despatch_id, f.shopify_order_id) for f in published} == {(good["despatch_id"], int(good_reference))}
    letters = [DeadLetter.model_validate_json(r.value) for r in await published_since(kafka_bootstrap,
                                                                                        marks["letters"])]
    # each refused record twice (the page was published twice), as the same letter: one id each
    assert len(letters) == 4 and len({x.dead_letter_id for x in letters}) == 2
    assert {(x.group, x.reason, x.topic, x.headers["message_type"]) for x in letters} == {
        (GROUP, "undecodable", "prima-api:/v1/despatches", "PrimaDespatchRecorded")}
    mangled = next(x for x in letters if x.key_base64 is not None)
    assert "not a Shopify order id" in mangled.error
    assert base64.b64decode(mangled.key_base64) == b"WEB-ORDER-77"
    assert json.loads(base64.b64decode(mangled.value_base64))["despatch_id"] == bad["despatch_id"]
    # the cursor moved past the page, the bad record with it: nothing again on the next poll
    assert await ingest.cursor("despatches") == str(good["change_id"])
    assert (await ingest.poll_once(["despatches"]))["despatches"].published == 0
    assert len(await published_since(kafka_bootstrap, marks["letters"])) == 4
