"""The Shopify gateway against the Shopify sandbox over HTTP (uvicorn on a free loopback port):
the writer's batches, compare-and-set, throttling and failures; ShopifyGateway with parking in
PostgreSQL (the inventory integration tests' throwaway database); and the whole
consume-window-write-publish-commit loop on real Kafka, on topics of its own."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr, TypeAdapter

from contracts.platform import RetryParkedCommand
from contracts.prima.inventory import sku_key
from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    InventoryLevelStale,
    ProductStatusSet,
    SetInventoryLevel,
    SetProductStatus,
    ShopifyOutcome,
)
from contracts.topics import SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES
from services.platform.kafka import Delivery, Outgoing, make_broker, publish_all
from services.shopify.admin import ShopifyAdmin
from services.shopify.gateway import ShopifyGateway, consumer
from services.shopify.inventory_writer import (
    BATCH_URI_PREFIX,
    InventoryWriter,
    Pending,
    idempotency_key,
    set_quantities_input,
)
from tests.inventory.integration.support import end_offsets, eventually, published_since

pytestmark = pytest.mark.integration

TOKEN = "sandbox-token"
LOC = "gid://shopify/Location/1"


def _sandbox_app():
    """The Shopify sandbox's FastAPI app (Admin GraphQL + control endpoints), in-process."""
    from sandboxes.shopify import app as sandbox

    return sandbox.create_app(ingest_url="http://127.0.0.1:9/webhooks/shopify", secret="sandbox-secret")


@pytest.fixture(scope="session")
async def shopify_url(serve_app):
    with serve_app(_sandbox_app(), "the Shopify sandbox") as url:
        yield url


@pytest.fixture
async def sandbox(shopify_url):
    async with httpx.AsyncClient(base_url=shopify_url, timeout=30) as control:
        (await control.post("/_sandbox/reset")).raise_for_status()
        (await control.delete("/_sandbox/faults")).raise_for_status()
        (await control.post("/_sandbox/plan", json={"plan": "standard"})).raise_for_status()
        (await control.post("/_sandbox/locations", json={"locations": [{"id": LOC, "name": "Main"}]})).raise_for_status()
        (await control.post("/_sandbox/stats/reset")).raise_for_status()
        yield control


@pytest.fixture
def gw_settings(settings, shopify_url, database_url, kafka_bootstrap):
    return settings.model_copy(update={
        "shopify_admin_url": shopify_url, "shopify_access_token": SecretStr(TOKEN),
        "shopify_backoff_initial_seconds": 0.05, "shopify_backoff_max_seconds": 0.5, "shopify_max_attempts": 4,
        "inventory_debounce_seconds": 0.3, "database_url": database_url, "kafka_bootstrap": kafka_bootstrap,
    })


@pytest.fixture
async def admin(gw_settings):
    async with ShopifyAdmin(gw_settings) as client:
        yield client


@pytest.fixture(scope="module")
async def pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=3)
    yield pool
    await pool.close()


class Published:
    """The gateway's `publish`, into a list (the Kafka path is the last test's)."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def __call__(self, messages: list[Outgoing]) -> None:
        self.messages.extend(messages)


async def make_catalog(sandbox: httpx.AsyncClient, n: int, level: int = 10, prefix: str | None = None) -> list[dict]:
    prefix = prefix or f"T{uuid.uuid4().hex[:6]}"
    variants = [{"sku": f"{prefix}-{i:04d}", "status": "ACTIVE", "levels": {LOC: level}} for i in range(n)]
    response = await sandbox.post("/_sandbox/catalog", json={"variants": variants})
    response.raise_for_status()
    created = response.json()
    return created["variants"] if isinstance(created, dict) else created


def command_for(variant: dict, quantity: int, change_from: int | None, at: datetime | None = None) -> SetInventoryLevel:
    return SetInventoryLevel(
        command_id=uuid.uuid4(), sku=variant["sku"], inventory_item_id=variant["inventory_item_id"],
        location_id=LOC, quantity=quantity, change_from_quantity=change_from,
        reference_document_uri=f"prima://stock/WH-MAIN/{variant['sku']}/1",
        issued_at=at or datetime.now(UTC),
    )


async def level(sandbox: httpx.AsyncClient, sku: str) -> int:
    rows = (await sandbox.get("/_sandbox/inventory", params={"sku": sku})).json()
    [row] = [r for r in rows if r["location_id"] == LOC]
    return row["available"]


async def levels(sandbox: httpx.AsyncClient, skus: list[str]) -> dict[str, int]:
    values = await asyncio.gather(*(level(sandbox, sku) for sku in skus))
    return dict(zip(skus, values, strict=True))


async def stats(sandbox: httpx.AsyncClient) -> dict:
    return (await sandbox.get("/_sandbox/stats")).json()


def set_calls(s: dict) -> int:
    return (s.get("mutation_calls") or {}).get("inventorySetQuantities", 0)


# ------------------------------------------------------------------------------- batching


async def test_a_batch_of_250_sets_250_levels_in_one_call(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 250, level=10)
    commands = [command_for(v, i % 40, 10) for i, v in enumerate(variants)]
    outcomes = await InventoryWriter(admin, gw_settings).apply(commands)
    assert len(outcomes) == 250 and all(isinstance(o, InventoryLevelConfirmed) for o in outcomes)
    assert {o.previous_quantity for o in outcomes} == {10}
    assert len({o.adjustment_group_id for o in outcomes}) == 1 and outcomes[0].adjustment_group_id
    assert set_calls(await stats(sandbox)) == 1
    assert await levels(sandbox, [v["sku"] for v in variants]) == {v["sku"]: i % 40 for i, v in enumerate(variants)}


async def test_600_commands_make_three_calls(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 600, level=3)
    commands = [command_for(v, 7, 3) for v in variants]
    outcomes = await InventoryWriter(admin, gw_settings).apply(commands)
    assert sum(isinstance(o, InventoryLevelConfirmed) for o in outcomes) == 600
    assert set_calls(await stats(sandbox)) == 3
    assert set((await levels(sandbox, [v["sku"] for v in variants[::50]])).values()) == {7}


async def test_newest_command_per_level_wins(sandbox, admin, gw_settings):
    [variant] = await make_catalog(sandbox, 1, level=4)
    now = datetime.now(UTC)
    older, newer = command_for(variant, 1, 4, now - timedelta(seconds=1)), command_for(variant, 9, 4, now)
    report = await InventoryWriter(admin, gw_settings).write([newer, older])
    assert [o.command_id for o in report.outcomes] == [newer.command_id]
    assert report.superseded == [older]
    assert await level(sandbox, variant["sku"]) == 9


async def test_one_reference_for_one_command_and_a_batch_uri_for_many(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 3, level=0)
    writer = InventoryWriter(admin, gw_settings)
    single = await writer.write([command_for(variants[0], 1, 0)])
    assert single.batches == []  # the adjustment carries the Prima record itself
    many = await writer.write([command_for(v, 2, 0) for v in variants[1:]])
    [batch] = many.batches
    assert batch.reference_document_uri.startswith(BATCH_URI_PREFIX)
    assert {c["reference_document_uri"] for c in batch.commands} == {
        f"prima://stock/WH-MAIN/{v['sku']}/1" for v in variants[1:]}


# ------------------------------------------------------------------------ compare-and-set


async def test_a_concurrent_change_is_re_read_and_reported_not_overwritten(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 5, level=10)
    (await sandbox.post("/_sandbox/faults", json={"concurrent_change_next": 1})).raise_for_status()
    commands = [command_for(v, 25, 10) for v in variants]
    outcomes = await InventoryWriter(admin, gw_settings).apply(commands)
    stale = [o for o in outcomes if isinstance(o, InventoryLevelStale)]
    assert len(stale) >= 1 and all(isinstance(o, (InventoryLevelConfirmed, InventoryLevelStale)) for o in outcomes)
    now = await levels(sandbox, [v["sku"] for v in variants])
    for o in stale:
        assert now[o.sku] == o.available != 25  # what Shopify has, left as it is
    assert {now[o.sku] for o in outcomes if isinstance(o, InventoryLevelConfirmed)} <= {25}
    s = await stats(sandbox)
    assert s["stale_errors"] == len(stale)
    assert set_calls(s) == (2 if len(stale) < len(outcomes) else 1)  # the rest of the batch went again


async def test_a_sale_prima_has_not_seen_is_not_overwritten(sandbox, admin, gw_settings, pool):
    """Defect 5: Shopify sold 2 (10 -> 8) while the command still compares against 10. The old
    gateway re-read and wrote 30 anyway, giving the sold units back; now it answers with 8 and
    the StockItem decides again (with the order it accepted)."""
    [variant] = await make_catalog(sandbox, 1, level=10)
    (await sandbox.put("/_sandbox/inventory", json={"levels": [
        {"sku": variant["sku"], "location_id": LOC, "available": 8}]})).raise_for_status()
    [outcome] = await ShopifyGateway(gw_settings, admin, pool, Published()).execute([command_for(variant, 30, 10)])
    assert isinstance(outcome, InventoryLevelStale)
    assert (outcome.available, outcome.quantity, outcome.change_from_quantity) == (8, 30, 10)
    assert await level(sandbox, variant["sku"]) == 8


async def test_an_older_command_after_a_newer_one_is_superseded_after_a_restart(sandbox, admin, gw_settings, pool):
    """Defect 5: the newest decision per level is kept in gateway.inventory_decisions, so a
    gateway started afresh (a restart, or another instance after a rebalance) that receives an
    older command again does not move the level back to it."""
    [variant] = await make_catalog(sandbox, 1, level=4)
    now = datetime.now(UTC)
    older, newer = command_for(variant, 1, 4, now - timedelta(seconds=1)), command_for(variant, 9, 4, now)
    [done] = await ShopifyGateway(gw_settings, admin, pool, Published()).execute([newer])
    assert isinstance(done, InventoryLevelConfirmed) and await level(sandbox, variant["sku"]) == 9

    restarted = ShopifyGateway(gw_settings, admin, pool, Published())
    report = await restarted.writer.write([older])  # redelivered after the restart
    assert (report.outcomes, report.superseded) == ([], [older])
    assert await level(sandbox, variant["sku"]) == 9
    row = await pool.fetchrow("SELECT * FROM gateway.inventory_decisions WHERE inventory_item_id = $1",
                              variant["inventory_item_id"])
    assert (row["command_id"], row["issued_at"], row["quantity"]) == (newer.command_id, newer.issued_at, 9)

    # the newer command itself, redelivered, is taken up again (and confirmed: already there)
    [again] = await ShopifyGateway(gw_settings, admin, pool, Published()).execute([newer])
    assert isinstance(again, InventoryLevelConfirmed)


async def test_two_gateways_at_once_never_take_an_older_decision_up_over_a_newer_one(pool):
    """A rebalance can leave two gateways with commands of one level: taking up is one statement,
    a row is replaced only by a command not older than it."""
    from services.shopify.gateway import PostgresDecisions

    item = f"gid://shopify/InventoryItem/{uuid.uuid4().int % 10**12}"
    now = datetime.now(UTC)
    variant = {"sku": "RACE", "inventory_item_id": item}
    commands = [command_for(variant, n, 0, now + timedelta(milliseconds=n)) for n in range(20)]
    decisions = PostgresDecisions(pool)
    results = await asyncio.gather(*(decisions.take_up([c]) for c in reversed(commands)))
    row = await pool.fetchrow("SELECT command_id, quantity FROM gateway.inventory_decisions WHERE inventory_item_id = $1",
                              item)
    assert (row["command_id"], row["quantity"]) == (commands[-1].command_id, 19)
    assert results[0] == set()  # the newest, whenever it came, was never superseded
    assert await decisions.take_up([commands[3]]) == {commands[3].command_id}


# ------------------------------------------------------------------------------ throttling


async def test_a_drained_bucket_and_a_throttle_storm_are_ridden_out(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 20, level=1)
    (await sandbox.post("/_sandbox/faults", json={"drain_bucket": True, "throttle_storm_seconds": 1.0})).raise_for_status()
    writer = InventoryWriter(admin, gw_settings)
    outcomes = await writer.apply([command_for(v, 2, 1) for v in variants])
    assert all(isinstance(o, InventoryLevelConfirmed) for o in outcomes)
    assert (await stats(sandbox))["throttled"] >= 1
    assert admin.stats.throttled >= 1
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {2}


async def test_pacing_keeps_thirty_batches_at_the_standard_plan_unthrottled(sandbox, admin, gw_settings):
    """Standard plan: 100 points/s, a bucket of 2000. Thirty mutations (10 points each) and five
    re-reads of 100 levels (400 points each) at once ask for 2300 points: more than the bucket
    holds, so the client must wait for it, and Shopify never has to say THROTTLED."""
    variants = await make_catalog(sandbox, 500, level=0)
    small = InventoryWriter(admin, gw_settings.model_copy(update={"inventory_batch_size": 10}))
    writes = [small.apply([command_for(v, 5, 0) for v in variants[i:i + 10]]) for i in range(0, 300, 10)]
    reads = [small.read_levels([(v["inventory_item_id"], LOC) for v in variants[i:i + 100]]) for i in range(0, 500, 100)]
    results = await asyncio.gather(*writes, *reads)
    outcomes = [o for batch in results[:30] for o in batch]
    assert len(outcomes) == 300 and all(isinstance(o, InventoryLevelConfirmed) for o in outcomes)
    assert all(len(found) == 100 and None not in found.values() for found in results[30:])
    s = await stats(sandbox)
    assert set_calls(s) == 30 and s["points_requested"] > 2000
    assert s["throttled"] == 0 and admin.stats.throttled == 0
    assert admin.stats.pacing_waits >= 1  # the bucket ran low and the client waited instead


# ------------------------------------------------------------------------------- failures


async def test_shopify_500s_at_first_are_retried_then_confirmed(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 3, level=1)
    (await sandbox.post("/_sandbox/faults", json={"fail_next": 2, "fail_status": 500})).raise_for_status()
    outcomes = await InventoryWriter(admin, gw_settings).apply([command_for(v, 4, 1) for v in variants])
    assert all(isinstance(o, InventoryLevelConfirmed) for o in outcomes)
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {4}


async def test_permanent_failure_is_reported_failed_and_parked(sandbox, admin, gw_settings, pool):
    variants = await make_catalog(sandbox, 2, level=1)
    (await sandbox.post("/_sandbox/faults", json={"fail_next": 1000, "fail_status": 503})).raise_for_status()
    commands = [command_for(v, 4, 1) for v in variants]
    published = Published()
    gateway = ShopifyGateway(gw_settings, admin, pool, published)
    outcomes = await gateway.execute(commands)
    assert all(isinstance(o, InventoryLevelFailed) for o in outcomes) and len(outcomes) == 2
    assert outcomes[0].attempts == gw_settings.shopify_max_attempts
    rows = await pool.fetch("SELECT * FROM gateway.parked_commands WHERE command_id = ANY($1::uuid[])",
                            [c.command_id for c in commands])
    assert len(rows) == 2
    assert {r["gateway"] for r in rows} == {"shopify"}
    assert {r["subject"] for r in rows} == {json.loads(r["command"])["sku"] for r in rows} == {
        v["sku"] for v in variants}
    assert {r["message_type"] for r in rows} == {"SetInventoryLevel"}
    assert all(r["attempts"] == gw_settings.shopify_max_attempts and "HTTP 503" in r["reason"] for r in rows)
    (await sandbox.delete("/_sandbox/faults")).raise_for_status()
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {1}

    # the operator's RetryParkedCommand: the parked command is loaded and sent again
    retry = RetryParkedCommand(command_id=uuid.uuid4(), requested_by="ops", requested_at=datetime.now(UTC),
                               parked_command_id=commands[0].command_id, gateway="shopify")
    await gateway.handle([Delivery(retry, "shopify-prima.operations.v1", 0, 0, None)])
    [out] = published.messages
    assert isinstance(out.message, InventoryLevelConfirmed) and out.message.command_id == commands[0].command_id
    assert await level(sandbox, variants[0]["sku"]) == 4
    assert await pool.fetchval("SELECT retried_at IS NOT NULL FROM gateway.parked_commands WHERE command_id = $1",
                               commands[0].command_id)


async def test_a_parked_push_is_resolved_once_a_newer_push_of_its_level_is_answered(sandbox, admin, gw_settings,
                                                                                    pool):
    """Issue 8: the stock decider decides a failed push again by itself; once Shopify confirms
    that newer push, the parked one is nobody's work any more (no operator asked to retry it),
    while a parked push of another level stays parked."""
    variants = await make_catalog(sandbox, 2, level=1)
    (await sandbox.post("/_sandbox/faults", json={"fail_next": 1000, "fail_status": 503})).raise_for_status()
    first = [command_for(v, 4, 1) for v in variants]
    gateway = ShopifyGateway(gw_settings, admin, pool, Published())
    failed = await gateway.execute(first)
    assert [type(o) for o in failed] == [InventoryLevelFailed, InventoryLevelFailed], failed
    (await sandbox.delete("/_sandbox/faults")).raise_for_status()

    newer = command_for(variants[0], 6, 1, datetime.now(UTC) + timedelta(milliseconds=1))
    [outcome] = await gateway.execute([newer])
    assert isinstance(outcome, InventoryLevelConfirmed)
    resolved = {r["command_id"]: r["resolved_at"] is not None for r in await pool.fetch(
        "SELECT command_id, resolved_at FROM gateway.parked_commands WHERE command_id = ANY($1::uuid[])",
        [c.command_id for c in first])}
    assert resolved == {first[0].command_id: True, first[1].command_id: False}
    assert await level(sandbox, variants[0]["sku"]) == 6


async def test_a_parked_push_is_re_driven_by_itself_once_shopify_answers(sandbox, admin, gw_settings, pool):
    """Issue 8: no operator needed. While Shopify fails, the re-driver's probe fails and nothing
    is sent; once Shopify answers, the parked push is sent again (compare-and-set), its
    confirmation published and the row resolved. A parked push whose level has since had a newer
    decision taken up is superseded (resolved, nothing written)."""
    settings = gw_settings.model_copy(update={"parked_redrive_initial_seconds": 0.01})
    variants = await make_catalog(sandbox, 2, level=1)
    (await sandbox.post("/_sandbox/faults", json={"fail_next": 1000, "fail_status": 503})).raise_for_status()
    published = Published()
    gateway = ShopifyGateway(settings, admin, pool, published)
    commands = [command_for(v, 4, 1) for v in variants]
    await gateway.execute(commands)
    await asyncio.sleep(0.05)
    redriver = gateway.redriver()
    assert await redriver.once() is False  # Shopify still down: the probe fails, nothing re-driven
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {1}

    (await sandbox.delete("/_sandbox/faults")).raise_for_status()
    # a newer decision for the second level is taken up meanwhile (and fails): the parked one is old
    newer = command_for(variants[1], 9, 1, datetime.now(UTC) + timedelta(milliseconds=1))
    await gateway.writer.decisions.take_up([newer])
    published.messages.clear()
    await redriver.once()
    assert [type(m.message) for m in published.messages] == [InventoryLevelConfirmed]
    assert published.messages[0].message.command_id == commands[0].command_id
    assert await levels(sandbox, [v["sku"] for v in variants]) == {variants[0]["sku"]: 4, variants[1]["sku"]: 1}
    rows = await pool.fetch("SELECT resolved_at IS NOT NULL AS resolved FROM gateway.parked_commands "
                            "WHERE command_id = ANY($1::uuid[])", [c.command_id for c in commands])
    assert [r["resolved"] for r in rows] == [True, True]


async def test_a_user_error_on_one_quantity_rejects_it_and_confirms_the_others(sandbox, admin, gw_settings):
    variants = await make_catalog(sandbox, 4, level=2)
    unknown = {"sku": "NO-SUCH-ITEM", "inventory_item_id": "gid://shopify/InventoryItem/987654321"}
    commands = [command_for(v, 6, 2) for v in variants]
    commands.insert(2, command_for(unknown, 6, 2))
    outcomes = {o.command_id: o for o in await InventoryWriter(admin, gw_settings).apply(commands)}
    rejected = outcomes[commands[2].command_id]
    assert isinstance(rejected, InventoryLevelRejected) and rejected.code and rejected.reason
    others = [outcomes[c.command_id] for c in commands if c is not commands[2]]
    assert all(isinstance(o, InventoryLevelConfirmed) for o in others)
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {6}


# ----------------------------------------------------------------------------- idempotency


async def test_the_same_request_with_the_same_key_applies_once(sandbox, admin, gw_settings):
    [variant] = await make_catalog(sandbox, 1, level=0)
    items = [Pending(command_for(variant, 5, None), None)]
    reference = "prima://stock/WH-MAIN/x/1"
    variables = {"input": set_quantities_input(items, gw_settings.inventory_reason, reference),
                 "idempotencyKey": idempotency_key(items, "available", gw_settings.inventory_reason, reference)}
    first = await admin.execute("InventorySetQuantities", variables)
    assert first["inventorySetQuantities"]["userErrors"] == []
    # a sale meanwhile; then the very same request again (a retry after a lost answer)
    (await sandbox.put("/_sandbox/inventory", json={"levels": [
        {"sku": variant["sku"], "location_id": LOC, "available": 3}]})).raise_for_status()
    again = await admin.execute("InventorySetQuantities", variables)
    assert again["inventorySetQuantities"]["inventoryAdjustmentGroup"] == \
        first["inventorySetQuantities"]["inventoryAdjustmentGroup"]
    assert await level(sandbox, variant["sku"]) == 3  # not applied a second time
    s = await stats(sandbox)
    assert set_calls(s) == 2 and s["idempotent_replays"] == 1


# ------------------------------------------------------------------------- product status


async def test_set_product_status(sandbox, admin, gw_settings, pool):
    [variant] = await make_catalog(sandbox, 1, level=0)
    command = SetProductStatus(command_id=uuid.uuid4(), sku=variant["sku"], product_id=variant["product_id"],
                               status="DRAFT", reason="no active Prima item", issued_at=datetime.now(UTC))
    [outcome] = await ShopifyGateway(gw_settings, admin, pool, Published()).execute([command])
    assert isinstance(outcome, ProductStatusSet) and outcome.status == "DRAFT"


# ----------------------------------------------------------------------- through Kafka


async def through_kafka(settings, pool, own_topic, kafka_bootstrap, commands: list[SetInventoryLevel],
                       wanted: set[uuid.UUID]) -> dict[uuid.UUID, tuple]:
    """Run the gateway's consumer (a debounce window over its commands topic) on a real FastStream
    broker, with topics of its own; publish `commands` all at once; wait until the `wanted`
    commands are answered on the outcomes topic and the window's offsets are committed past
    every command (a restart of the group would not see them again). The outcomes by command id,
    with their records."""
    commands_topic = await own_topic("shopify-commands", like=SHOPIFY_COMMANDS)
    outcomes_topic = await own_topic("shopify-outcomes", like=SHOPIFY_OUTCOMES)
    group = f"shopify-gateway-test-{uuid.uuid4().hex[:8]}"
    mark = await end_offsets(kafka_bootstrap, outcomes_topic.name)
    broker = make_broker(settings, group)
    async with ShopifyAdmin(settings) as admin:
        gateway = ShopifyGateway(settings, admin, pool, lambda out: publish_all(broker, out),
                                 outcomes_topic=outcomes_topic.name)
        consumer(broker, settings, gateway, group=group, topic=commands_topic)
        await broker.start()
        try:
            await publish_all(broker, [Outgoing(commands_topic.name, sku_key(c.sku), c) for c in commands])
            sent = await end_offsets(kafka_bootstrap, commands_topic.name)
            assert sum(sent.values()) == len(commands)

            async def answered() -> bool:
                records = await published_since(kafka_bootstrap, mark)
                return {outcome_of(r).command_id for r in records} >= wanted

            async def committed() -> bool:
                check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
                await check.start()
                try:
                    found = {tp: await check.committed(tp) for tp in sent}
                finally:
                    await check.stop()
                return all(offset == 0 or (found[tp] or 0) >= offset for tp, offset in sent.items())

            await eventually(answered, "the outcomes of every command", 60)
            await eventually(committed, "the windows' offsets committed", 30)
        finally:
            await broker.stop()
    return {outcome_of(r).command_id: (r, outcome_of(r)) for r in await published_since(kafka_bootstrap, mark)}


async def test_commands_from_kafka_become_outcomes_on_kafka(sandbox, gw_settings, pool, own_topic, kafka_bootstrap):
    variants = await make_catalog(sandbox, 30, level=5, prefix=f"KT{uuid.uuid4().hex[:6]}")
    now = datetime.now(UTC)
    superseded = command_for(variants[0], 1, 5, now - timedelta(seconds=1))
    commands = [superseded] + [command_for(v, 11, 5, now) for v in variants]
    wanted = {c.command_id for c in commands[1:]}
    # all at once: the older command for variants[0] and the newer one share a window
    seen = await through_kafka(gw_settings, pool, own_topic, kafka_bootstrap, commands, wanted)
    assert set(seen) == wanted  # every command answered, the superseded one by the newer one
    assert {type(o).__name__ for _, o in seen.values()} == {"InventoryLevelConfirmed"}
    assert all(r.key == sku_key(o.sku) and dict(r.headers)["message_type"] == b"InventoryLevelConfirmed"
               for r, o in seen.values())
    assert set((await levels(sandbox, [v["sku"] for v in variants])).values()) == {11}
    assert set_calls(await stats(sandbox)) == 1  # 30 levels in one window: one mutation


async def test_600_commands_from_kafka_go_out_in_full_batches_of_250(sandbox, gw_settings, pool, own_topic,
                                                                    kafka_bootstrap):
    """A window is flushed as soon as it holds 250 levels; the rest waits for the next one."""
    prefix = f"KB{uuid.uuid4().hex[:6]}"
    variants = await make_catalog(sandbox, 600, level=0, prefix=prefix)
    commands = [command_for(v, 3, 0) for v in variants]
    settings = gw_settings.model_copy(update={"inventory_debounce_seconds": 1.0})
    seen = await through_kafka(settings, pool, own_topic, kafka_bootstrap, commands, {c.command_id for c in commands})
    assert len(seen) == 600 and all(isinstance(o, InventoryLevelConfirmed) for _, o in seen.values())
    assert set_calls(await stats(sandbox)) == 3
    sizes = await pool.fetch(
        "SELECT jsonb_array_length(commands) AS n FROM gateway.shopify_inventory_batches "
        "WHERE commands->0->>'sku' LIKE $1", f"{prefix}-%")
    assert sorted(r["n"] for r in sizes) == [100, 250, 250]


OUTCOMES = TypeAdapter(ShopifyOutcome)


def outcome_of(record) -> ShopifyOutcome:
    return OUTCOMES.validate_json(record.value)


# ------------------------------------------------------------- the client's catalogue helpers


async def test_bulk_read_and_sku_lookup_through_the_client(sandbox, admin):
    variants = await make_catalog(sandbox, 3, level=7)
    operation = await admin.start_bulk_query("CatalogInventoryBulk")
    done = await admin.wait_for_bulk_operation(operation["id"], poll_seconds=0.1, timeout_seconds=30)
    assert done["status"] == "COMPLETED" and done["url"]
    lines = [line async for line in admin.download_jsonl(done["url"])]
    skus = {line.get("sku") for line in lines}
    assert {v["sku"] for v in variants} <= skus
    found = await admin.inventory_items_by_sku([v["sku"] for v in variants])
    assert {n["sku"] for n in found} == {v["sku"] for v in variants}
    assert all(n["inventoryLevels"]["nodes"][0]["quantities"][0]["quantity"] == 7 for n in found)
