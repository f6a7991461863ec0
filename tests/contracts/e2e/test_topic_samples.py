"""End to end on the running stack: the messages on every topic, as another team would receive
them, pass the strict validator the published schemas are checked with (ajv, Ajv2020 strict,
tools/contracts/ajv-check.mjs), and each carries the message_type header its body names.

Traffic the test can rely on is driven through the stack's HTTP edges first, as the other e2e
tests drive it: a paid order (signed orders/paid webhook to the ingest) until it is in Prima, an
operator's release of it (ops API: a ReleaseOrder on the operations topic), and a signed webhook
whose body is not JSON (the ingest quarantines it: a dead letter). The sample of each topic is
what was published since the test began plus up to SAMPLE_PER_PARTITION earlier messages per
partition, read without a consumer group (group_id=None, nothing committed). Topics the test does
not drive (stock, payouts) may be empty on a fresh stack: whatever they hold is validated all
the same."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import export
from contracts.topics import ALL_TOPICS
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import send_webhook
from tests.contracts.standard_tools import ajv_validate, require_tools
from tests.orders.e2e.test_order_to_prima import SKUS, Stack, new_order_id

pytestmark = [pytest.mark.e2e]
SAMPLE_PER_PARTITION = 200
CONTRACTS = {c.topic.name: c for c in export.CONTRACTS}
TIMEOUT = 90.0


async def offsets(bootstrap: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and the end offset of every partition of every topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([t.name for t in ALL_TOPICS])
    finally:
        await admin.close()
    assert [d["topic"] for d in described if d["error_code"] or not d["partitions"]] == [], "every topic is on the stack"
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await reader.start()
    try:
        return await reader.beginning_offsets(partitions), await reader.end_offsets(partitions)
    finally:
        await reader.stop()


async def read_sample(bootstrap: str, since: dict[TopicPartition, int]) -> dict[str, list[Any]]:
    """Each topic's records from min(`since`, end - SAMPLE_PER_PARTITION) to the end as it is now."""
    first, end = await offsets(bootstrap)
    start = {tp: max(first[tp], min(since.get(tp, end[tp]), end[tp] - SAMPLE_PER_PARTITION)) for tp in end}
    wanted = {tp: offset for tp, offset in end.items() if offset > start[tp]}
    records: dict[str, list[Any]] = defaultdict(list)
    if not wanted:
        return records
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                              auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024 * 1024)
    await reader.start()
    try:
        reader.assign(list(wanted))
        for tp in wanted:
            reader.seek(tp, start[tp])
        deadline = time.monotonic() + TIMEOUT
        while any([await reader.position(tp) < offset for tp, offset in wanted.items()]):
            assert time.monotonic() < deadline, "the sample was not read in time"
            for tp, batch in (await reader.getmany(timeout_ms=1000, max_records=5000)).items():
                records[tp.topic] += [r for r in batch if r.offset < wanted[tp]]
    finally:
        await reader.stop()
    return records


def body_of(record: Any) -> Any:
    try:
        return json.loads(record.value)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{record.topic}[{record.partition}]@{record.offset} is not JSON: {exc}") from None


def header(record: Any, name: str) -> str | None:
    values = [v.decode() for k, v in (record.headers or ()) if k == name]
    return values[-1] if values else None


def driven(sample: dict[str, list[Any]], order_id: int, release_id: str, webhook_id: str) -> dict[str, bool]:
    """Whether the messages the test's own traffic must have put on each topic are in the sample."""
    bodies = {topic: [body_of(r) for r in records] for topic, records in sample.items()}
    about_order = {topic: [b for b in found if b.get("shopify_order_id") == order_id
                           or (b.get("order") or {}).get("id") == order_id] for topic, found in bodies.items()}
    letter_key = base64.b64encode(webhook_id.encode()).decode()
    return {
        "shopify.orders.v1": any(b["message_type"] == "ShopifyOrderReceived"
                                 for b in about_order.get("shopify.orders.v1", [])),
        "prima.commands.v1": any(b["message_type"] == "CreateSalesOrder"
                                 for b in about_order.get("prima.commands.v1", [])),
        "prima.outcomes.v1": any(b["message_type"] == "PrimaSalesOrderCreated"
                                 for b in about_order.get("prima.outcomes.v1", [])),
        "shopify-prima.order-events.v1": any(b.get("event_type") == "SalesOrderCreated"
                                             for b in about_order.get("shopify-prima.order-events.v1", [])),
        "shopify-prima.operations.v1": any(b.get("command_id") == release_id and b["message_type"] == "ReleaseOrder"
                                           for b in bodies.get("shopify-prima.operations.v1", [])),
        "shopify-prima.dead-letters.v1": any(b["message_type"] == "DeadLetter" and b.get("key_base64") == letter_key
                                             for b in bodies.get("shopify-prima.dead-letters.v1", [])),
        # the order's SKUs were mapped with the item master, built from Prima's item facts here
        "prima.inventory.v1": bool(bodies.get("prima.inventory.v1")),
    }


@pytest.fixture
async def stack_api(stack):
    require_tools()  # fail before any traffic when the validator is not installed
    api = Stack(stack)
    await api.clear_faults()
    yield api
    await api.http.aclose()


async def test_given_traffic_through_the_edges_when_every_topic_is_sampled_then_every_message_is_valid_strictly(
        stack_api: Stack):
    bootstrap = stack_api.s.kafka_bootstrap  # the stack's own broker: read only, no consumer group
    _, before = await offsets(bootstrap)

    order_id = new_order_id()
    response = await stack_api.webhook("orders/paid", random_paid_order(order_id, SKUS, random.Random(order_id)))
    assert response.status_code == 200, response.text
    await stack_api.wait_for_state(order_id, {"in_prima"}, timeout=60)
    release = await stack_api.http.post(f"{stack_api.ops}/orders/{order_id}/release", headers=stack_api.ops_headers)
    assert release.status_code == 202, release.text
    assert release.json()["message_type"] == "ReleaseOrder"
    not_json = await send_webhook(stack_api.http, stack_api.webhook_url, "orders/paid", b"{not json", stack_api.secret)
    assert not_json.status_code == 200 and not_json.json()["status"] == "quarantined", not_json.text

    deadline = time.monotonic() + TIMEOUT
    while True:
        sample = await read_sample(bootstrap, before)
        seen = driven(sample, order_id, release.json()["command_id"], not_json.json()["webhook_id"])
        if all(seen.values()):
            break
        assert time.monotonic() < deadline, f"the test's own traffic is not on every topic it drives: {seen}"
        await asyncio.sleep(1)

    counts: dict[str, int] = {}
    for topic in ALL_TOPICS:
        records = sample.get(topic.name, [])
        counts[topic.name] = len(records)
        if not records:
            continue
        bodies = [body_of(r) for r in records]
        result = ajv_validate(export.SCHEMAS_DIR / f"{topic.name}.json", bodies)
        assert result["count"] == len(records)
        invalid = [(records[i["index"]].partition, records[i["index"]].offset, i["errors"][:3])
                   for i in result["invalid"]]
        assert invalid == [], f"{topic.name}: {len(invalid)} of {len(records)} invalid, first: {invalid[:3]}"
        # the message_type header names the body's model; event_type names the event where set
        wrong = [(r.partition, r.offset, header(r, "message_type"), b.get("message_type"))
                 for r, b in zip(records, bodies, strict=True) if header(r, "message_type") != b.get("message_type")]
        assert wrong == [], f"{topic.name}: message_type header is not the body's: {wrong[:5]}"
        wrong = [(r.partition, r.offset, header(r, "event_type"), b["event_type"]) for r, b in zip(records, bodies, strict=True)
                 if "event_type" in b and header(r, "event_type") not in (None, b["event_type"])]
        assert wrong == [], f"{topic.name}: event_type header is not the body's: {wrong[:5]}"
        if "event_id" in CONTRACTS[topic.name].deduplicate_on:
            # what consumers deduplicate on is one id per event, however often it was relayed
            ids: dict[tuple[str, int], set[str]] = defaultdict(set)
            for b in bodies:
                ids[(b["aggregate_id"], b["aggregate_version"])].add(b["event_id"])
            assert [k for k, found in ids.items() if len(found) > 1] == []

    assert all(counts[t] for t in driven({}, 0, "", "")), counts  # every driven topic was validated
    print("validated per topic:", json.dumps(counts))
