"""The Prima poller (services/prima/poller.py) against real PostgreSQL and Kafka and an
in-process Prima sandbox, through the one Prima client and a FastStream broker.

Isolation from the running stack: the sandbox and the cursors live in the inventory integration
tests' throwaway database, the facts go to a topic made for this session (deleted afterwards),
and every test's cursors have their own prefix. Failures are injected through the sandbox's
fault switches (Prima), the client's transport (one request of several) and `publish` (Kafka).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from prometheus_client import REGISTRY
from pydantic import SecretStr

from contracts.prima.inventory import (
    BundleComponent,
    PrimaItemChanged,
    PrimaStockLevel,
    sku_key,
)
from contracts.topics import PRIMA_INVENTORY
from sandboxes.prima.app import create_app
from services.platform.kafka import Outgoing, make_broker, publish_all
from services.platform.runner import Worker
from services.prima.client import PrimaClient
from services.prima.poller import PrimaIngest
from tests.inventory.integration.support import end_offsets, published_since

pytestmark = pytest.mark.integration

SCHEMA = "prima_poller_test"
KEY = "ingest-test-key"


@pytest.fixture(scope="session")
async def sandbox_url(scratch_url, serve_app):
    with serve_app(create_app(scratch_url, KEY, schema=SCHEMA), "the sandbox") as url:
        yield url


@pytest.fixture(scope="session")
async def topic(own_topic) -> str:
    return (await own_topic("prima-inventory", like=PRIMA_INVENTORY)).name


@pytest.fixture(scope="session")
async def broker(settings, kafka_bootstrap):
    """A FastStream broker that only publishes (what the poller's main gives it)."""
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}), "prima-poller-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(scope="session")
async def pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def sandbox(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as client:
        r = await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})
        assert r.status_code == 200
        (await client.delete("/_sandbox/faults")).raise_for_status()
        yield client
        (await client.delete("/_sandbox/faults")).raise_for_status()


@pytest.fixture
def ingest_settings(settings, scratch_url, kafka_bootstrap, sandbox_url):
    return settings.model_copy(update={
        "database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap, "prima_base_url": sandbox_url,
        "prima_api_key": SecretStr(KEY), "prima_timeout_seconds": 2.0, "prima_poll_page_size": 1000,
        "prima_poll_interval_seconds": 0.1,
    })


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
async def make_ingest(ingest_settings, pool, broker, topic, prefix, sandbox):
    """PrimaIngest instances on the test topic and this test's cursors; their clients closed
    afterwards. `publish=` replaces the broker's publish, `transport=` the client's HTTP."""
    clients: list[PrimaClient] = []

    async def make(publish=None, transport: httpx.AsyncBaseTransport | None = None, **changes) -> PrimaIngest:
        settings = ingest_settings.model_copy(update=changes)
        client = PrimaClient(settings, transport=transport)
        clients.append(client)
        return PrimaIngest(settings, pool, client, publish or (lambda out: publish_all(broker, out)), topic=topic,
                           cursor_prefix=prefix)

    yield make
    for client in clients:
        await client.aclose()
    await pool.execute("DELETE FROM ingest.prima_cursors WHERE starts_with(feed, $1)", prefix)


@pytest.fixture
async def caught_up(make_ingest, sandbox):
    """An ingest that has already published everything the sandbox holds."""
    ingest = await make_ingest()
    result = await ingest.poll_once()
    assert all(r.ok for r in result.values()), result
    return ingest


# ------------------------------------------------------------------------------ helpers


def stock_facts(records) -> list[PrimaStockLevel]:
    return sorted((PrimaStockLevel.model_validate_json(r.value) for r in records
                   if dict(r.headers)["message_type"] == b"PrimaStockLevel"), key=lambda f: f.change_id)


def item_facts(records) -> list[PrimaItemChanged]:
    return [PrimaItemChanged.model_validate_json(r.value) for r in records
            if dict(r.headers)["message_type"] == b"PrimaItemChanged"]


async def put_stock(sandbox: httpx.AsyncClient, *rows: dict) -> dict:
    r = await sandbox.put("/_sandbox/stock", json={"stock": list(rows)})
    assert r.status_code == 200, r.text
    return r.json()


async def sandbox_stock(sandbox: httpx.AsyncClient) -> dict[tuple[str, str], dict]:
    rows, after = [], None
    while True:
        page = (await sandbox.get("/v1/stock", params={"limit": 5000, **({"after": after} if after else {})},
                                  headers={"Authorization": f"Bearer {KEY}"})).json()
        rows += page["stock"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return {(r["sku"], r["warehouse"]): r for r in rows}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -------------------------------------------------------------------------------- tests


async def test_a_stock_change_is_published_once_keyed_by_sku(caught_up, sandbox, kafka_bootstrap, topic):
    ingest = caught_up
    cursor_before = await ingest.cursor("stock")
    published_before = metric("shopify_prima_prima_ingest_facts_published_total", feed="stock")
    mark = await end_offsets(kafka_bootstrap, topic)

    await put_stock(sandbox, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 7})
    row = (await sandbox_stock(sandbox))[("TEE-BLK-M", "WH-MAIN")]
    result = await ingest.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published, result["stock"].pages) == ("ok", 1, 1)

    [record] = await published_since(kafka_bootstrap, mark)
    assert record.key == sku_key("TEE-BLK-M") == b"TEE-BLK-M"
    headers = dict(record.headers)
    assert (headers["message_type"], headers["content-type"]) == (b"PrimaStockLevel", b"application/json")
    fact = PrimaStockLevel.model_validate_json(record.value)
    assert (fact.sku, fact.warehouse, fact.available, fact.change_id) == ("TEE-BLK-M", "WH-MAIN", 7, row["change_id"])
    assert fact.changed_at == datetime.fromisoformat(row["changed_at"])
    assert timedelta(0) <= datetime.now(UTC) - fact.polled_at < timedelta(seconds=30)

    # the cursor moved to the change just published
    assert cursor_before is not None and await ingest.cursor("stock") == str(row["change_id"])
    assert metric("shopify_prima_prima_ingest_facts_published_total", feed="stock") == published_before + 1
    assert metric("shopify_prima_prima_ingest_stock_change_id") >= row["change_id"]
    assert metric("shopify_prima_prima_ingest_last_success_timestamp_seconds", feed="stock") > time.time() - 30

    # nothing changed since: nothing published again; an unchanged value is no change either
    await put_stock(sandbox, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 7})
    again = await ingest.poll_once()
    assert (again["stock"].published, again["items"].published) == (0, 0)
    assert len(await published_since(kafka_bootstrap, mark)) == 1


async def test_the_cursor_moves_only_after_kafka_acknowledged_the_page(make_ingest, caught_up, sandbox, broker,
                                                                       pool, prefix):
    before = await caught_up.cursor("stock")
    seen_at_ack: list[tuple[int, str | None]] = []

    async def watched(messages: list[Outgoing]) -> None:
        await publish_all(broker, messages)  # returns once Kafka acknowledged every message
        # at the moment Kafka has acknowledged the page, the stored cursor is still the old one
        seen_at_ack.append((len(messages), await pool.fetchval(
            "SELECT cursor FROM ingest.prima_cursors WHERE feed = $1", f"{prefix}stock")))

    ingest = await make_ingest(publish=watched)
    await put_stock(sandbox, *({"sku": f"SOCK-{n}", "warehouse": "WH-MAIN", "available": n} for n in range(5)))
    result = await ingest.poll_once(["stock"])
    assert result["stock"].published == 5
    assert seen_at_ack == [(5, before)]  # one page: published whole, then its cursor
    assert int(await ingest.cursor("stock")) == int(before) + 5


async def test_several_pages_in_one_poll(make_ingest, sandbox, kafka_bootstrap, topic):
    ingest = await make_ingest(prima_poll_page_size=4)
    await ingest.poll_once(["stock"])  # the seed: 3 records
    mark = await end_offsets(kafka_bootstrap, topic)
    await put_stock(sandbox, *({"sku": f"PAGE-{n:02d}", "warehouse": f"WH-{n % 2}", "available": n} for n in range(10)))
    result = await ingest.poll_once(["stock"])
    assert (result["stock"].published, result["stock"].pages) == (10, 3)
    records = await published_since(kafka_bootstrap, mark)
    facts = stock_facts(records)
    assert [(f.sku, f.warehouse, f.available) for f in facts] == [
        (f"PAGE-{n:02d}", f"WH-{n % 2}", n) for n in range(10)]
    assert all(r.key == f.sku.encode() for r in records for f in [PrimaStockLevel.model_validate_json(r.value)])
    assert await ingest.cursor("stock") == str(facts[-1].change_id)

    # the items feed pages too (Prima's item pages, the ingest's own cursor between polls)
    items = await make_ingest(prima_poll_page_size=2)
    result = await items.poll_once(["items"])
    assert (result["items"].published, result["items"].pages) == (6, 3)  # the six seeded items
    assert (await items.poll_once(["items"]))["items"].published == 0


async def test_prima_failing_leaves_the_cursor_and_a_later_poll_publishes(caught_up, make_ingest, sandbox,
                                                                         kafka_bootstrap, topic):
    ingest = caught_up
    cursor = await ingest.cursor("stock")
    failures_before = metric("shopify_prima_prima_ingest_polls_total", feed="stock", outcome="prima_unavailable")
    mark = await end_offsets(kafka_bootstrap, topic)
    await put_stock(sandbox, {"sku": "MUG-STONE", "warehouse": "WH-MAIN", "available": 3})

    await sandbox.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": 500, "path_prefix": "/v1/stock",
                                                 "method": "GET"})
    result = await ingest.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published) == ("prima_unavailable", 0)
    assert "500" in result["stock"].error
    assert await ingest.cursor("stock") == cursor
    assert metric("shopify_prima_prima_ingest_polls_total", feed="stock", outcome="prima_unavailable") \
        == failures_before + 1

    # a timeout is a failure too
    slow = await make_ingest(prima_timeout_seconds=0.3)
    await sandbox.post("/_sandbox/faults", json={"timeout_next": 1, "timeout_seconds": 1, "path_prefix": "/v1/stock",
                                                 "method": "GET"})
    result = await slow.poll_once(["stock"])
    assert result["stock"].outcome == "prima_unavailable" and "Timeout" in result["stock"].error
    assert await ingest.cursor("stock") == cursor
    assert await published_since(kafka_bootstrap, mark) == []

    result = await ingest.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published) == ("ok", 1)
    [fact] = stock_facts(await published_since(kafka_bootstrap, mark))
    assert (fact.sku, fact.available) == ("MUG-STONE", 3)
    assert int(await ingest.cursor("stock")) == fact.change_id


class FailSecondRequest(httpx.AsyncBaseTransport):
    """Prima answering 503 to the second request only, through the client's transport (the sandbox's
    switches fail the next requests, whichever they are)."""

    def __init__(self) -> None:
        self.inner, self.calls = httpx.AsyncHTTPTransport(), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 2:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_failure_on_a_later_page_keeps_the_pages_before_and_skips_nothing(make_ingest, sandbox,
                                                                                  kafka_bootstrap, topic):
    ingest = await make_ingest(prima_poll_page_size=5)
    await ingest.poll_once(["stock"])
    start = int(await ingest.cursor("stock"))
    mark = await end_offsets(kafka_bootstrap, topic)
    await put_stock(sandbox, *({"sku": f"LATER-{n:02d}", "warehouse": "WH-MAIN", "available": n} for n in range(12)))

    flaky = await make_ingest(transport=FailSecondRequest(), prima_poll_page_size=5)  # the same cursors
    result = await flaky.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published, result["stock"].pages) == ("prima_unavailable", 5, 1)
    assert await ingest.cursor("stock") == str(start + 5)  # page 1 is kept

    result = await ingest.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published, result["stock"].pages) == ("ok", 7, 2)
    facts = stock_facts(await published_since(kafka_bootstrap, mark))
    assert [f.sku for f in facts] == [f"LATER-{n:02d}" for n in range(12)]  # each once, none skipped
    assert await ingest.cursor("stock") == str(start + 12)


async def test_kafka_unavailable_leaves_the_cursor(caught_up, make_ingest, sandbox, kafka_bootstrap, topic):
    cursor = await caught_up.cursor("stock")
    failures_before = metric("shopify_prima_prima_ingest_polls_total", feed="stock", outcome="kafka_error")

    async def kafka_down(messages: list[Outgoing]) -> None:
        raise KafkaConnectionError("injected: Unable to bootstrap from [('127.0.0.1', 9)]")

    broken = await make_ingest(publish=kafka_down)
    await put_stock(sandbox, {"sku": "TEE-BLK-L", "warehouse": "WH-MAIN", "available": 2})
    result = await broken.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published) == ("kafka_error", 0)
    assert "KafkaConnectionError" in result["stock"].error
    assert await caught_up.cursor("stock") == cursor
    assert metric("shopify_prima_prima_ingest_polls_total", feed="stock", outcome="kafka_error") == failures_before + 1

    mark = await end_offsets(kafka_bootstrap, topic)
    result = await caught_up.poll_once(["stock"])
    assert result["stock"].published == 1
    [fact] = stock_facts(await published_since(kafka_bootstrap, mark))
    assert (fact.sku, fact.available) == ("TEE-BLK-L", 2)


async def test_a_failed_send_republishes_the_whole_page(make_ingest, caught_up, sandbox, broker, kafka_bootstrap,
                                                        topic):
    cursor = await caught_up.cursor("stock")
    calls = 0

    async def third_send_fails(messages: list[Outgoing]) -> None:
        """The first page: every message sent but the third, which Kafka never acknowledges."""
        nonlocal calls
        calls += 1
        if calls == 1:
            await publish_all(broker, messages[:2] + messages[3:])
            raise KafkaTimeoutError("injected: no acknowledgement")
        await publish_all(broker, messages)

    flaky = await make_ingest(publish=third_send_fails)
    mark = await end_offsets(kafka_bootstrap, topic)
    await put_stock(sandbox, *({"sku": f"FLAKY-{n}", "warehouse": "WH-MAIN", "available": n} for n in range(5)))
    result = await flaky.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published) == ("kafka_error", 0)
    assert "injected" in result["stock"].error
    assert await caught_up.cursor("stock") == cursor

    result = await flaky.poll_once(["stock"])
    assert (result["stock"].outcome, result["stock"].published) == ("ok", 5)
    facts = stock_facts(await published_since(kafka_bootstrap, mark))
    # at least once: the four sent with the failure, then the page again, whole
    assert {f.sku for f in facts} == {f"FLAKY-{n}" for n in range(5)} and len(facts) == 9
    assert int(await caught_up.cursor("stock")) == max(f.change_id for f in facts)


async def test_items_with_bundle_components(caught_up, sandbox, kafka_bootstrap, topic):
    ingest = caught_up
    mark = await end_offsets(kafka_bootstrap, topic)
    r = await sandbox.put("/_sandbox/items", json={"items": [
        {"item_id": "ITM-0020", "sku": "DUO-MUG", "description": "Two mugs", "item_type": "bundle",
         "components": [{"item_id": "ITM-0003", "sku": "MUG-STONE", "quantity": 2}]},
        {"item_id": "ITM-0002", "sku": "TEE-BLK-L", "description": "Organic tee, black, L", "item_type": "stock",
         "active": False},
    ]})
    assert r.status_code == 200
    stored = {i["sku"]: i for i in r.json()["items"]}
    result = await ingest.poll_once(["items"])
    assert (result["items"].outcome, result["items"].published) == ("ok", 2)
    records = await published_since(kafka_bootstrap, mark)
    assert sorted(r.key for r in records) == [b"DUO-MUG", b"TEE-BLK-L"]
    facts = {f.sku: f for f in item_facts(records)}
    duo = facts["DUO-MUG"]
    assert (duo.item_id, duo.item_type, duo.active, duo.description) == ("ITM-0020", "bundle", True, "Two mugs")
    assert duo.components == (BundleComponent(sku="MUG-STONE", quantity=2),)
    assert duo.updated_at == datetime.fromisoformat(stored["DUO-MUG"]["updated_at"])
    assert facts["TEE-BLK-L"].active is False and facts["TEE-BLK-L"].components == ()

    # nothing changed: nothing again, though Prima's changed_since returns the last items again
    assert (await ingest.poll_once(["items"]))["items"].published == 0
    assert len(await published_since(kafka_bootstrap, mark)) == 2


async def test_an_item_committed_late_with_an_earlier_updated_at_is_not_skipped(caught_up, sandbox, scratch_url,
                                                                             kafka_bootstrap, topic):
    """A writer whose transaction began first (updated_at = its start) but commits after another
    writer's item was polled: with a cursor on (updated_at, item_id) the poller had moved past
    it for good. Items carry a change sequence in commit order now, and the cursor is on it."""
    from sandboxes.prima.models import ItemUpsert
    from sandboxes.prima.store import _upsert_items

    mark = await end_offsets(kafka_bootstrap, topic)
    slow = await asyncpg.connect(scratch_url, server_settings={"search_path": SCHEMA})
    transaction = slow.transaction()
    await transaction.start()
    try:
        await _upsert_items(slow, [ItemUpsert(item_id="ITM-LATE", sku="LATE-1", description="late",
                                              item_type="stock")])
        other = asyncio.create_task(sandbox.put("/_sandbox/items", json={"items": [
            {"item_id": "ITM-EARLY", "sku": "EARLY-1", "description": "early", "item_type": "stock"}]}))
        await asyncio.sleep(0.5)  # the other writer commits now, or waits for the slow one
        await caught_up.poll_once(["items"])
    finally:
        await transaction.commit()
        await slow.close()
    assert (await other).status_code == 200
    await caught_up.poll_once(["items"])
    published = [f.sku for f in item_facts(await published_since(kafka_bootstrap, mark))]
    assert sorted(published) == ["EARLY-1", "LATE-1"]
    change_ids = {f.sku: f.change_id for f in item_facts(await published_since(kafka_bootstrap, mark))}
    assert change_ids["LATE-1"] < change_ids["EARLY-1"]  # in commit order: the other writer waited


async def test_a_first_poll_reads_items_changed_together_out_of_item_id_order(make_ingest, sandbox, kafka_bootstrap,
                                                                                topic):
    """Found while building bundle expansion: the first items poll sent no `after`, so Prima
    answered in (updated_at, item_id) order; items changed in one transaction share updated_at,
    and when their item ids do not follow their change ids the page was refused as "not in
    change_id order", on every poll, for good. The first poll asks from change 0."""
    r = await sandbox.put("/_sandbox/items", json={"items": [
        {"item_id": "ITM-0099", "sku": "ZED-1", "description": "changed first", "item_type": "stock"},
        {"item_id": "ITM-0098", "sku": "ZED-2", "description": "changed second", "item_type": "stock"},
    ]})
    assert r.status_code == 200, r.text
    mark = await end_offsets(kafka_bootstrap, topic)
    ingest = await make_ingest()  # no cursor: a first poll
    result = await ingest.poll_once(["items"])
    assert (result["items"].outcome, result["items"].published) == ("ok", 8)  # six seeded, two new
    assert {"ZED-1", "ZED-2"} <= {f.sku for f in item_facts(await published_since(kafka_bootstrap, mark))}
    assert (await ingest.poll_once(["items"]))["items"].published == 0  # the cursor moved past them


async def test_the_seeded_bundle_on_a_first_poll(make_ingest, kafka_bootstrap, topic):
    mark = await end_offsets(kafka_bootstrap, topic)
    ingest = await make_ingest()
    result = await ingest.poll_once()
    assert (result["items"].published, result["stock"].published) == (6, 3)
    facts = {f.sku: f for f in item_facts(await published_since(kafka_bootstrap, mark))}
    assert facts["GIFT-SET-TEE-MUG"].components == (BundleComponent(sku="TEE-BLK-M", quantity=1),
                                                    BundleComponent(sku="MUG-STONE", quantity=2))
    assert facts["GIFT-WRAP"].item_type == "service" and facts["CAP-RETIRED"].active is False


async def test_run_polls_until_stopped(make_ingest, sandbox, ingest_settings):
    ingest = await make_ingest()
    worker = Worker("prima-poller-test", ingest_settings)
    stop = worker.stop
    task = asyncio.create_task(ingest.run(worker))
    try:
        deadline = time.monotonic() + 20
        while (await ingest.cursor("stock")) is None:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        answer = await put_stock(sandbox, {"sku": "RUN-1", "warehouse": "WH-MAIN", "available": 1})
        while await ingest.cursor("stock") != str(answer["last_change_id"]):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_one_hundred_thousand_stock_facts(make_ingest, sandbox, kafka_bootstrap, topic):
    ingest = await make_ingest(prima_poll_page_size=5000)
    await ingest.poll_once(["stock"])
    await put_stock(sandbox, *({"sku": f"BULK-{n:06d}", "warehouse": f"WH-{n % 3}", "available": n % 89}
                               for n in range(100_000)))
    mark = await end_offsets(kafka_bootstrap, topic)
    started = time.perf_counter()
    result = await ingest.poll_once(["stock"])
    took = time.perf_counter() - started
    print(f"\n100,000 stock facts fetched, published (acks=all) and cursored in {took:.2f} s "
          f"({result['stock'].pages} pages of 5000, {100_000 / took:,.0f} facts/s)")
    assert (result["stock"].outcome, result["stock"].published, result["stock"].pages) == ("ok", 100_000, 20)
    end = await end_offsets(kafka_bootstrap, topic)
    assert sum(end[tp] - mark[tp] for tp in end) == 100_000
