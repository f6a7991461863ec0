"""Issue 13, item 1, at the Prima edge: the poller (services/prima/poller.py) validates every
record of Prima's feeds with the rules every fact meets (contracts/validation.py). A record that
breaks them is published as no fact: it becomes a dead letter of the group "prima-ingest" (the
record with a short error), the good records of the same page are published as usual, and the
cursor moves past the page, so one bad record neither stops the feed nor is dropped silently.

Real Prima sandbox (in-process, its own schema), real PostgreSQL (cursors) and Kafka (throwaway
topics); the hostile values are put into the sandbox's answers by the client's transport, since
the sandbox's own PostgreSQL cannot hold them (a NUL, a bigint beyond int64). Before the fix one
such record made the whole page `bad_data`: the feed stopped there for good, and the records
behind it were never published."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from contracts.platform import DeadLetter
from contracts.prima.inventory import PrimaItemChanged, PrimaStockLevel
from contracts.topics import DEAD_LETTERS, PRIMA_INVENTORY
from sandboxes.prima.app import create_app
from services.platform.kafka import make_broker, publish_all
from services.prima.client import PrimaClient
from services.prima.poller import GROUP, PrimaIngest
from tests.inventory.integration.support import end_offsets, published_since

pytestmark = pytest.mark.integration

SCHEMA = "prima_poller_hostile_test"
KEY = "hostile-ingest-key"

# record -> the same record made hostile (in place); each breaks one rule of contracts/validation.py
STOCK_POISONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "HOSTILE-NUL": lambda r: r.update(sku="HOSTILE-\x00NUL"),
    "HOSTILE-BIG-CHANGE": lambda r: r.update(change_id=2**63),
    "HOSTILE-HUGE-LEVEL": lambda r: r.update(available=2**40),
    "HOSTILE-BOOL-LEVEL": lambda r: r.update(available=True),
    "HOSTILE-NO-WAREHOUSE": lambda r: r.pop("warehouse"),
    "HOSTILE-LONG-WAREHOUSE": lambda r: r.update(warehouse="W" * 10_000),
}
ITEM_POISONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "TEE-BLK-M": lambda r: r.update(description="Organic tee\x00"),
    "MUG-STONE": lambda r: r.update(item_id="I" * 300),
}


class HostilePrima(httpx.AsyncBaseTransport):
    """Prima's answers as the sandbox gives them, with `change` applied to the records of `feed`
    (a list under that key: "stock" or "items"), and `extra` records appended to its first page."""

    def __init__(self, feed: str, change: Callable[[dict[str, Any]], None], extra: list[Any] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.feed, self.change, self.extra = feed, change, extra or []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != f"/v1/{self.feed}" or response.status_code != 200:
            return response
        body = json.loads(await response.aread())
        for record in body[self.feed]:
            self.change(record)
        body[self.feed] += self.extra
        self.extra = []
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(200, headers=headers, content=json.dumps(body).encode())

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
async def sandbox_url(scratch_url, serve_app):
    with serve_app(create_app(scratch_url, KEY, schema=SCHEMA), "the sandbox") as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as client:
        assert (await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).status_code == 200
        yield client


@pytest.fixture(scope="module")
async def topics(own_topic) -> dict[str, str]:
    return {"facts": (await own_topic("hostile-prima-inventory", like=PRIMA_INVENTORY)).name,
            "letters": (await own_topic("hostile-dead-letters", like=DEAD_LETTERS)).name}


@pytest.fixture
async def make_ingest(settings, scratch_url, kafka_bootstrap, sandbox_url, topics, sandbox):
    """A PrimaIngest on the throwaway topics and cursors of its own, whose Prima is HostilePrima."""
    settings = settings.model_copy(update={
        "database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap, "prima_base_url": sandbox_url,
        "prima_api_key": SecretStr(KEY), "prima_timeout_seconds": 5.0, "prima_poll_page_size": 1000})
    broker = make_broker(settings, "prima-poller-hostile-test")
    await broker.start()
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=2)
    clients: list[PrimaClient] = []
    prefix = f"hostile-{uuid.uuid4().hex[:8]}/"

    def make(transport: HostilePrima) -> PrimaIngest:
        client = PrimaClient(settings, transport=transport)
        clients.append(client)
        return PrimaIngest(settings, pool, client, lambda out: publish_all(broker, out), topic=topics["facts"],
                           cursor_prefix=prefix, dead_letter_topic=topics["letters"])

    yield make
    for client in clients:
        await client.aclose()
    await pool.execute("DELETE FROM ingest.prima_cursors WHERE starts_with(feed, $1)", prefix)
    await pool.close()
    await broker.stop()


async def _since(kafka_bootstrap: str, marks: dict[str, Any]) -> dict[str, list]:
    return {name: await published_since(kafka_bootstrap, mark) for name, mark in marks.items()}


async def test_hostile_stock_records_become_dead_letters_and_the_rest_of_the_page_is_published(
        make_ingest, sandbox, kafka_bootstrap, topics):
    good = [f"FINE-{n}" for n in range(3)]
    rows = [{"sku": sku, "warehouse": "WH-MAIN", "available": 5} for sku in [*STOCK_POISONS, *good]]
    assert (await sandbox.put("/_sandbox/stock", json={"stock": rows})).status_code == 200
    hostile = HostilePrima("stock", lambda r: STOCK_POISONS.get(r["sku"], lambda _: None)(r),
                           extra=["not a record", {"sku": "HOSTILE-EMPTY"}])
    ingest = make_ingest(hostile)
    marks = {name: await end_offsets(kafka_bootstrap, topic) for name, topic in topics.items()}

    result = await ingest.poll_once(["stock"])

    assert result["stock"].outcome == "ok", result
    published = await _since(kafka_bootstrap, marks)
    facts = [PrimaStockLevel.model_validate_json(r.value) for r in published["facts"]]
    assert {f.sku for f in facts} >= set(good)  # and the sandbox's seeded levels
    assert not [f for f in facts if f.sku.startswith("HOSTILE")]
    assert result["stock"].published == len(facts)
    letters = [DeadLetter.model_validate_json(r.value) for r in published["letters"]]
    assert len(letters) == len(STOCK_POISONS) + 2  # every hostile record, the two extra ones too
    assert {(x.group, x.reason, x.attempts, x.headers["message_type"]) for x in letters} == {
        (GROUP, "undecodable", 0, "PrimaStockLevel")}
    assert all(len(x.error) < 600 and "\x00" not in x.error and "WWWWWWWWWW" not in x.error for x in letters)
    assert len({x.dead_letter_id for x in letters}) == len(letters)
    # the cursor moved past the page: the next poll publishes nothing again (no letter twice)
    assert await ingest.cursor("stock") is not None
    again = await ingest.poll_once(["stock"])
    assert (again["stock"].outcome, again["stock"].published) == ("ok", 0)
    assert len((await _since(kafka_bootstrap, marks))["letters"]) == len(letters)


async def test_hostile_item_records_become_dead_letters_and_the_cursor_moves_past_them(
        make_ingest, sandbox, kafka_bootstrap, topics):
    ingest = make_ingest(HostilePrima("items", lambda r: ITEM_POISONS.get(r["sku"], lambda _: None)(r)))
    marks = {name: await end_offsets(kafka_bootstrap, topic) for name, topic in topics.items()}

    result = await ingest.poll_once(["items"])  # the six seeded items, two of them made hostile

    assert result["items"].outcome == "ok", result
    published = await _since(kafka_bootstrap, marks)
    facts = [PrimaItemChanged.model_validate_json(r.value) for r in published["facts"]]
    assert len(facts) == 4 and not {f.sku for f in facts} & set(ITEM_POISONS)
    letters = [DeadLetter.model_validate_json(r.value) for r in published["letters"]]
    assert sorted(json.loads(base64.b64decode(x.value_base64))["sku"] for x in letters) == sorted(
        ITEM_POISONS)
    assert {(x.group, x.reason, x.headers["message_type"]) for x in letters} == {(GROUP, "undecodable",
                                                                                  "PrimaItemChanged")}
    # the cursor is past every record of the page, the refused ones too
    cursor = json.loads(await ingest.cursor("items"))
    assert int(cursor["after"]) >= max(f.change_id for f in facts)
    assert (await ingest.poll_once(["items"]))["items"].published == 0
