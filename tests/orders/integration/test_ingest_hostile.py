"""Issue 13, items 1 and 4, at the webhook edge served in-process (real PostgreSQL and Kafka,
throwaway topics): each hostile body of the issue, validly signed, is kept quarantined with a
short reason and an exception record (its dead letter), and no fact of it is published; the
order sent right behind it is accepted and published as usual. Nothing is a 500.

Before the fix a NUL in a name or SKU, an amount of 1e16, an order id of 2^63, "id": true, a
negative price, a EUR line on a USD order and a duplicated key were accepted and published (and
then stopped the projector), and an amount of 1e10000000 made a 10 MB fact."""

from __future__ import annotations

import json

import pytest

from contracts.platform import DeadLetter
from contracts.shopify.orders import ShopifyOrderReceived
from tests.orders.integration.test_ingest_support import (
    about,
    new_order_id,
    read_topic,
    running,
    signed,
    stored_row,
)
from tests.orders.poisons import WEBHOOK_POISONS, paid_order

pytestmark = pytest.mark.integration




async def test_every_hostile_body_is_quarantined_unpublished_and_the_next_order_goes_through(ingest_env):
    sent: dict[str, tuple[str, str]] = {}  # case -> (webhook id of the poison, of the good order behind it)
    async with running(ingest_env.app()) as client:
        for case, (make, code) in WEBHOOK_POISONS.items():
            body = make(new_order_id(), None)
            poison = signed(body)
            response = await client.post("/webhooks/shopify", content=body, headers=poison)
            assert response.status_code == 200, (case, response.status_code, response.text[:300])
            assert response.json()["status"] == "quarantined" and response.json()["reason"] == code, case
            assert "\x00" not in response.text and len(response.content) < 300, case

            good = json.dumps(paid_order(new_order_id())).encode()
            behind = signed(good)
            answer = await client.post("/webhooks/shopify", content=good, headers=behind)
            assert answer.json()["status"] == "accepted", (case, answer.text)
            sent[case] = (poison["X-Shopify-Webhook-Id"], behind["X-Shopify-Webhook-Id"])

    facts = await read_topic(ingest_env.kafka_bootstrap, ingest_env.orders, lambda m: True, expect=len(sent),
                             settle=1.0)
    published = {ShopifyOrderReceived.model_validate_json(m.value).webhook_id for m in facts}  # each a valid fact
    letters = await read_topic(ingest_env.kafka_bootstrap, ingest_env.dead_letters, lambda m: True,
                               expect=len(sent), settle=1.0)
    lettered = {DeadLetter.model_validate_json(m.value).headers.get("x-shopify-webhook-id") for m in letters}
    for case, (poison_id, good_id) in sent.items():
        assert poison_id not in published, f"{case}: published"
        assert poison_id in lettered, f"{case}: no exception record"
        assert good_id in published, f"{case}: the order behind it was not published"
        row = await stored_row(ingest_env.database_url, poison_id)
        assert row is not None and row["quarantined_at"] is not None, f"{case}: not kept"
        assert WEBHOOK_POISONS[case][1] in row["quarantine_reason"]


async def test_an_amount_like_1e10000000_never_becomes_a_large_message(ingest_env):
    make, _ = WEBHOOK_POISONS["an amount of 1e10000000"]
    body = make(new_order_id(), None)
    assert len(body) < 10_000
    headers = signed(body)
    async with running(ingest_env.app()) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.json()["status"] == "quarantined"
    (letter,) = await read_topic(ingest_env.kafka_bootstrap, ingest_env.dead_letters,
                                 about(headers["X-Shopify-Webhook-Id"]))
    assert len(letter.value) < 20_000
