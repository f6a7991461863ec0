"""The OM link availability feed (services/prima/omlink/availability_feed.py): the OM link adapter
(zeep over HTTP) reading ProductAvailableToSell from the Prima sandbox served in-process, the
snapshots in a migrated scratch database on the stack's PostgreSQL, the facts on throwaway topics
of the tests' own Kafka broker through a FastStream broker.

Each test has its own snapshot prefix (its snapshots and items apart from the others'); the
sandbox's stock is reset before each. Failures are injected through the sandbox's fault switches
(Prima) and `publish` (Kafka)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError

from sandboxes.prima.app import create_app
from services.platform.kafka import make_broker, publish_all
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.availability_feed import AvailabilityFeed, unmapped_letter_id
from tests.inventory.integration.support import end_offsets, published_since
from tests.prima.omlink_orders import MATRIX, config
from tests.support import scratch_database, throwaway_topics

KEY = "feed-test-key"
SERVICE = "/wsa/wsa1"
RANGES = [{"product_to": "MZZZZZ"}, {"product_from": "N", "product_to": "TZZZZZ"}, {"product_from": "U"}]
REST_FEED_CHANGE_IDS = 10**15  # far above any change_id the sandbox's REST feed gives in a test run


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    async with scratch_database(database_url, "omlink_feed") as url:
        yield url


@pytest.fixture(scope="module")
async def sandbox_url(scratch_url, serve_app):
    with serve_app(create_app(scratch_url, KEY, schema="omlink_feed_sandbox"), "the Prima sandbox") as url:
        yield url


@pytest.fixture(scope="module")
async def topics(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield {"inventory": await make("omlink.inventory"), "dead_letters": await make("omlink.dead-letters")}


@pytest.fixture(scope="module")
async def broker(settings, kafka_bootstrap):
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}), "omlink-feed-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(scope="module")
async def pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def sandbox(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        assert (await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).status_code == 200
        (await client.delete("/_sandbox/faults")).raise_for_status()
        yield client
        (await client.delete("/_sandbox/faults")).raise_for_status()


@pytest.fixture
async def make_feed(settings, sandbox_url, pool, broker, topics, sandbox):
    """AvailabilityFeeds on this test's snapshots and the test topics; `publish=` replaces Kafka,
    other keywords change the OM link configuration."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    adapters: list[OmLinkAdapter] = []

    def make(publish=None, **changes) -> AvailabilityFeed:
        adapter = OmLinkAdapter(config(f"{sandbox_url}{SERVICE}", **{"availability_ranges": RANGES, **changes}))
        adapters.append(adapter)
        return AvailabilityFeed(settings, pool, adapter, publish or (lambda out: publish_all(broker, out)),
                                topic=topics["inventory"], dead_letter_topic=topics["dead_letters"],
                                snapshot_prefix=prefix)

    make.prefix = prefix
    yield make
    for adapter in adapters:
        await adapter.aclose()


@pytest.fixture
def tap(kafka_bootstrap, topics):
    """`mark = await tap.mark()`, then `await tap.since(mark)`: the messages published meanwhile,
    decoded, per topic ("inventory", "dead_letters")."""
    class Tap:
        async def mark(self) -> dict[str, Any]:
            return {name: await end_offsets(kafka_bootstrap, topic) for name, topic in topics.items()}

        async def since(self, mark: dict[str, Any]) -> dict[str, list[dict]]:
            return {name: [json.loads(r.value) for r in await published_since(kafka_bootstrap, mark[name])]
                    for name in topics}

    return Tap()


async def set_stock(sandbox: httpx.AsyncClient, **levels: int) -> None:
    stock = [{"sku": sku.replace("_", "-"), "warehouse": "WH-MAIN", "available": available}
             for sku, available in levels.items()]
    assert (await sandbox.put("/_sandbox/stock", json={"stock": stock})).status_code == 200


def stock_of(messages: list[dict]) -> dict[str, int]:
    return {m["sku"]: m["available"] for m in messages if m["message_type"] == "PrimaStockLevel"}


def items_of(messages: list[dict]) -> list[str]:
    return [m["sku"] for m in messages if m["message_type"] == "PrimaItemChanged"]


async def snapshot(pool: asyncpg.Pool, prefix: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT sku, available FROM ingest.omlink_availability WHERE range_key LIKE $1",
                            f"{prefix}%")
    return {r["sku"]: r["available"] for r in rows}


async def test_given_no_snapshot_when_a_pass_runs_then_every_level_is_published_then_only_what_changed(
        sandbox, make_feed, tap, pool):
    await set_stock(sandbox, SOCK_RED_S=7, ZIP_NAVY_L=-2)  # beside the seed: TEE-BLK-M 25, TEE-BLK-L 12, MUG 40
    feed = make_feed()
    mark = await tap.mark()

    first = await feed.poll_once()

    published = (await tap.since(mark))["inventory"]
    everything = {"MUG-STONE": 40, "SOCK-RED-S": 7, "TEE-BLK-L": 12, "TEE-BLK-M": 25, "ZIP-NAVY-L": -2}
    assert (first.outcome, first.pages, first.published) == ("ok", 3, 10)
    assert stock_of(published) == everything
    assert {m["warehouse"] for m in published if m["message_type"] == "PrimaStockLevel"} == {"WH-MAIN"}
    change_ids = [m["change_id"] for m in published]
    assert len(set(change_ids)) == 10
    for sku in everything:  # read back partition by partition: in order per SKU
        of_sku = [m["change_id"] for m in published if m["sku"] == sku]
        assert of_sku == sorted(of_sku)
    assert min(change_ids) >= 10**18 > REST_FEED_CHANGE_IDS  # above what a REST feed gave before a switch
    assert await snapshot(pool, make_feed.prefix) == everything

    mark = await tap.mark()
    quiet = await feed.poll_once()
    assert (quiet.outcome, quiet.published) == ("ok", 0)
    assert (await tap.since(mark)) == {"inventory": [], "dead_letters": []}

    await set_stock(sandbox, TEE_BLK_L=11)
    mark = await tap.mark()
    second = await feed.poll_once()

    (change,) = (await tap.since(mark))["inventory"]
    assert (second.outcome, second.published) == ("ok", 1)
    assert (change["message_type"], change["sku"], change["warehouse"], change["available"]) == (
        "PrimaStockLevel", "TEE-BLK-L", "WH-MAIN", 11)
    assert change["change_id"] > max(change_ids)
    assert (await snapshot(pool, make_feed.prefix))["TEE-BLK-L"] == 11


async def test_given_each_sku_first_seen_then_one_item_fact_before_its_stock_and_never_again(
        sandbox, make_feed, tap, pool):
    await set_stock(sandbox, SOCK_RED_S=7)
    feed = make_feed()
    mark = await tap.mark()

    await feed.poll_once()

    published = (await tap.since(mark))["inventory"]
    items = {m["sku"]: m for m in published if m["message_type"] == "PrimaItemChanged"}
    assert sorted(items) == ["MUG-STONE", "SOCK-RED-S", "TEE-BLK-L", "TEE-BLK-M"]
    assert {sku: (m["item_id"], m["item_type"], m["active"], m["components"]) for sku, m in items.items()} == {
        "MUG-STONE": ("MUG-STONE", "stock", True, []), "SOCK-RED-S": ("SOCK/RED/S", "stock", True, []),
        "TEE-BLK-L": ("TEE/BLK/L", "stock", True, []), "TEE-BLK-M": ("TEE/BLK/M", "stock", True, [])}
    for sku in items:  # the item reaches the item master before its stock (one key, one partition)
        kinds = [m["message_type"] for m in published if m["sku"] == sku]
        assert kinds == ["PrimaItemChanged", "PrimaStockLevel"]

    # SOCK leaves Prima's snapshot (the stock is reset to the seed), then comes back
    assert (await sandbox.post("/_sandbox/reset", params={"stock": "true"})).status_code == 200
    mark = await tap.mark()
    await feed.poll_once()
    gone = (await tap.since(mark))["inventory"]
    assert (stock_of(gone), items_of(gone)) == ({"SOCK-RED-S": 0}, [])
    assert "SOCK-RED-S" not in await snapshot(pool, make_feed.prefix)

    await set_stock(sandbox, SOCK_RED_S=3)
    mark = await tap.mark()
    await feed.poll_once()
    back = (await tap.since(mark))["inventory"]
    assert (stock_of(back), items_of(back)) == ({"SOCK-RED-S": 3}, [])  # its item fact was published once, ever


async def test_given_a_sku_the_item_master_already_has_then_its_item_is_not_described_again(
        sandbox, make_feed, tap, pool):
    sku = f"HAT-GRN-{uuid.uuid4().hex[:6].upper()}"
    await pool.execute(
        "INSERT INTO readmodel.item_master (sku, item_id, description, item_type, active, components, updated_at, "
        "change_id) VALUES ($1, 'ITM-0777', 'Wool hat, green (Prima item feed)', 'bundle', true, '[]', now(), 5)",
        sku)
    await set_stock(sandbox, **{sku.replace("-", "_"): 9})
    mark = await tap.mark()

    await make_feed().poll_once()

    published = (await tap.since(mark))["inventory"]
    assert stock_of(published)[sku] == 9
    assert sku not in items_of(published)
    assert await pool.fetchval("SELECT change_id IS NULL FROM ingest.omlink_items WHERE scope = $1 AND sku = $2",
                               make_feed.prefix, sku)


async def test_given_kafka_failing_when_a_pass_runs_then_nothing_is_stored_and_the_next_pass_publishes_again(
        sandbox, make_feed, tap, pool, broker):
    feed = make_feed()
    assert (await feed.poll_once()).ok
    before = await snapshot(pool, make_feed.prefix)
    await set_stock(sandbox, TEE_BLK_M=20)
    attempts: list[int] = []

    async def kafka_down(out) -> None:
        attempts.append(len(out))
        raise KafkaTimeoutError("the broker did not acknowledge")

    failed = await make_feed(publish=kafka_down).poll_once()

    assert (failed.outcome, failed.published) == ("kafka_error", 0)
    assert "KafkaTimeoutError" in failed.error
    assert attempts == [1]  # the first page with a difference: TEE-BLK-M, then the pass ended
    assert await snapshot(pool, make_feed.prefix) == before  # TEE-BLK-M still 25

    mark = await tap.mark()
    healed = await feed.poll_once()

    assert (healed.outcome, stock_of((await tap.since(mark))["inventory"])) == ("ok", {"TEE-BLK-M": 20})
    assert (await snapshot(pool, make_feed.prefix))["TEE-BLK-M"] == 20


async def test_given_kafka_failing_on_the_first_pass_then_no_snapshot_and_no_item_is_remembered(
        sandbox, make_feed, tap, pool):
    async def kafka_down(out) -> None:
        raise KafkaTimeoutError("the broker did not acknowledge")

    assert (await make_feed(publish=kafka_down).poll_once()).outcome == "kafka_error"
    assert await snapshot(pool, make_feed.prefix) == {}
    assert await pool.fetchval("SELECT count(*) FROM ingest.omlink_items WHERE scope = $1", make_feed.prefix) == 0

    mark = await tap.mark()
    assert (await make_feed().poll_once()).ok
    published = (await tap.since(mark))["inventory"]
    assert sorted(items_of(published)) == ["MUG-STONE", "TEE-BLK-L", "TEE-BLK-M"]
    assert stock_of(published) == {"MUG-STONE": 40, "TEE-BLK-L": 12, "TEE-BLK-M": 25}


@pytest.mark.parametrize(("status", "times", "outcome"), [(503, 50, "prima_unavailable"), (400, 1, "prima_rejected")])
async def test_given_prima_failing_when_a_pass_runs_then_the_snapshot_is_kept_and_the_change_comes_later(
        sandbox, make_feed, tap, pool, status, times, outcome):
    feed = make_feed()
    assert (await feed.poll_once()).ok
    before = await snapshot(pool, make_feed.prefix)
    await set_stock(sandbox, MUG_STONE=39)
    answer = await sandbox.post("/_sandbox/faults", json={"path_prefix": SERVICE, "method": "POST",
                                                          "fail_next": times, "fail_status": status})
    assert answer.status_code == 200
    mark = await tap.mark()

    failed = await feed.poll_once()

    assert (failed.outcome, failed.pages, failed.published) == (outcome, 0, 0)
    assert await snapshot(pool, make_feed.prefix) == before
    assert await tap.since(mark) == {"inventory": [], "dead_letters": []}

    (await sandbox.delete("/_sandbox/faults")).raise_for_status()
    healed = await feed.poll_once()
    assert (healed.outcome, stock_of((await tap.since(mark))["inventory"])) == ("ok", {"MUG-STONE": 39})


async def test_given_an_item_the_sku_matrix_cannot_name_then_one_stable_dead_letter_resolved_once_mapped(
        sandbox, make_feed, tap, pool):
    await set_stock(sandbox, ODD=5)
    mark = await tap.mark()

    first = await make_feed().poll_once()

    (letter,) = (await tap.since(mark))["dead_letters"]
    letter_id = str(unmapped_letter_id(f"{make_feed.prefix}N..TZZZZZ", "ODD"))
    assert first.ok
    assert (letter["message_type"], letter["dead_letter_id"], letter["group"], letter["reason"]) == (
        "DeadLetter", letter_id, "prima-ingest", "undecodable")
    assert "Prima item ODD cannot be named by the SKU matrix" in letter["error"]
    assert "needs MtrxCode1, which is empty" in letter["error"]
    assert "ODD" not in await snapshot(pool, make_feed.prefix)

    mark = await tap.mark()
    await make_feed().poll_once()
    assert (await tap.since(mark))["dead_letters"] == []  # the same item, the same open letter: not again

    mapped = {**MATRIX, "table": {**MATRIX["table"], "ODD": {"Product": "ODD"}}}
    mark = await tap.mark()
    fixed = await make_feed(sku_matrix=mapped).poll_once()

    published = await tap.since(mark)
    assert fixed.ok
    assert [(m["message_type"], m["dead_letter_id"]) for m in published["dead_letters"]] == [
        ("DeadLetterRedriven", letter_id)]
    assert (items_of(published["inventory"]), stock_of(published["inventory"])) == (["ODD"], {"ODD": 5})
    assert await pool.fetchval("SELECT count(*) FROM ingest.omlink_unmapped WHERE range_key LIKE $1",
                               f"{make_feed.prefix}%") == 0


async def order_sent(pool: asyncpg.Pool, order_id: int, skus: list[str], *, confirmed_at: datetime | None) -> None:
    """An OM link order as the order read models show it: sent to Prima (and confirmed by its
    answer at `confirmed_at`, or not yet), with its lines."""
    await pool.execute(
        """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, first_received_at, last_event_at,
               last_event_version, prima_sales_order_number, sent_at, in_prima_at)
           VALUES ($1, '#1', $2, now() - interval '2 minutes', now(), 3, $3, now() - interval '2 minutes', $4)
           ON CONFLICT (shopify_order_id) DO UPDATE SET state = EXCLUDED.state, in_prima_at = EXCLUDED.in_prima_at,
               prima_sales_order_number = EXCLUDED.prima_sales_order_number, last_event_at = EXCLUDED.last_event_at""",
        order_id, "in_prima" if confirmed_at else "sent", f"SHOP{order_id}" if confirmed_at else None, confirmed_at)
    await pool.execute(
        """INSERT INTO readmodel.order_fulfilment (shopify_order_id, state, lines, opened_at, updated_at,
               last_event_version) VALUES ($1, 'awaiting_despatch', $2::jsonb, now(), now(), 1)
           ON CONFLICT (shopify_order_id) DO NOTHING""",
        order_id, json.dumps([{"sku": sku, "quantity": 1, "fulfilled": 0, "components": []} for sku in skus]))


def named(messages: list[dict]) -> set[tuple[str, str, int]]:
    return {(m["allocated_for"], m["sku"], m["available"]) for m in messages
            if m["message_type"] == "PrimaStockLevel" and m["allocated_for"] is not None}


async def test_given_orders_prima_confirmed_before_the_snapshot_then_each_is_named_once_on_its_skus(
        sandbox, make_feed, tap, pool):
    """An order holds its units back in Shopify until a stock fact names it (allocated_for): a pass
    names the orders Prima confirmed before it began, whatever their numbers, once each, on each
    of their SKUs at the level just read; an order not confirmed yet, or confirmed after the pass
    began (a lower-numbered order that reached Prima late), waits for a later pass."""
    now = datetime.now(UTC)
    early = 9_200_000_000 + uuid.uuid4().int % 10**8 * 10
    waiting, late = early + 5, early - 5
    await order_sent(pool, early, ["TEE-BLK-M", "MUG-STONE"], confirmed_at=now - timedelta(minutes=1))
    await order_sent(pool, waiting, ["MUG-STONE"], confirmed_at=None)
    await order_sent(pool, late, ["TEE-BLK-L"], confirmed_at=now + timedelta(hours=1))  # after the pass began
    feed = make_feed()
    mark = await tap.mark()

    assert (await feed.poll_once()).ok

    first = named((await tap.since(mark))["inventory"])
    assert {f for f in first if f[0] in {str(early), str(waiting), str(late)}} == {
        (str(early), "TEE-BLK-M", 25), (str(early), "MUG-STONE", 40)}

    await order_sent(pool, waiting, ["MUG-STONE"], confirmed_at=datetime.now(UTC) - timedelta(seconds=30))
    mark = await tap.mark()

    assert (await feed.poll_once()).ok

    second = named((await tap.since(mark))["inventory"])
    assert {f for f in second if f[0] in {str(early), str(waiting), str(late)}} == {(str(waiting), "MUG-STONE", 40)}
    assert not [m for m in (await tap.since(mark))["inventory"] if m["allocated_for"] is None]  # no level changed
