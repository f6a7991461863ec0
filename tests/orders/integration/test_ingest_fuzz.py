"""Issue 13, item 5 (and issue 8's fuzzing item): the webhook ingest, served by uvicorn on
loopback (real PostgreSQL and Kafka; a scratch database and throwaway topics), takes generated
deliveries: bodies (arbitrary bytes, arbitrary JSON, real orders with one value made hostile,
deep nesting, duplicated keys) and headers (topics, webhook ids, extra X-Shopify-* headers),
signed with the current or the previous secret, a wrong one or none; and requests generated
from its own OpenAPI document by schemathesis, both within the document and outside it.

Expected for every case: an answer (no crash), never a 5xx, 401 for a signature that does not
match, 400 or 413 with a short reason in the error shape for a delivery it does not take, 200
(accepted, duplicate or quarantined) for the rest; and afterwards: nothing stored for a refused
delivery, every fact on the orders topic valid under contracts/validation.py, and none of them
from a delivery that was refused or quarantined. The figures are printed and, under `make fuzz`,
written to FUZZ_REPORT; docs/reliability.md records a run."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode

from contracts.topics import SHOPIFY_ORDERS
from services.platform.kafka import Record, Undecodable, decode_record
from services.shopify.ingest import WEBHOOK_TOPICS
from tests.fuzzing import FUZZ, Tally
from tests.orders.integration.test_ingest_support import (
    SECRET,
    read_topic,
)
from tests.orders.poisons import paid_order

pytestmark = pytest.mark.integration
SECRETS = {"current": SECRET, "previous": "previous", "wrong": "not-the-secret"}
BODY_LIMIT = 64_000




@pytest.fixture(scope="module")
def served(ingest_env, serve_app):
    """The ingest as it runs (uvicorn, its lifespan: pool, broker, sweeper), on loopback."""
    with serve_app(ingest_env.app(webhook_max_body_bytes=BODY_LIMIT, webhook_read_timeout_seconds=5.0),
                   "the ingest") as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the ingest did not connect to Kafka"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


# ------------------------------------------------------------------------------ strategies

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(max_size=20).map(lambda t: t + "\x00"),
    st.just("\ud800"), st.just("x" * 5000), st.just("1e10000000"), st.just("NaN"), st.just("-Infinity"),
    st.just("<script>"), st.just("' OR 1=1 --"), st.just("jane.doe@example.com"),
)
HOSTILE_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.just(2**63), st.just(-(2**63) - 1), st.just(0),
    st.floats(allow_nan=True, allow_infinity=True), st.just(1e16), st.just(10**400),
)
SCALARS = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, HOSTILE_TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=25)
FRESH_ID = st.builds(lambda: str(uuid.uuid4()))  # a new delivery (hypothesis's own uuids repeat a few often)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def hostile_orders(draw) -> bytes:
    """A real-shaped paid order with one to three values replaced by hostile ones (or removed)."""
    order = paid_order(draw(st.integers(min_value=1, max_value=2**53)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(order)))
        parent = order
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(order).encode()


@st.composite
def odd_json(draw) -> bytes:
    kind = draw(st.sampled_from(["deep", "duplicate", "huge number", "truncated"]))
    order = json.dumps(paid_order(draw(st.integers(min_value=1, max_value=2**53))))
    if kind == "deep":
        n = draw(st.integers(1, 3000))
        return b'{"id": 1, "x": ' + b"[" * n + b"]" * n + b"}"
    if kind == "duplicate":
        return (order[:-1] + f', "id": {draw(st.integers(1, 2**62))}}}').encode()
    if kind == "huge number":
        return order.replace('"quantity": 1', '"quantity": 1' + "0" * draw(st.integers(1, 5000)), 1).encode()
    return order[: draw(st.integers(0, len(order) - 1))].encode()


BODIES = st.one_of(
    hostile_orders(), odd_json(), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2000), st.just(json.dumps(paid_order(random.randrange(1, 2**53))).encode()),
)


@st.composite
def deliveries(draw) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, how it is signed)."""
    body = draw(BODIES)
    signing = draw(st.sampled_from(["current", "current", "current", "previous", "wrong", "missing"]))
    headers = {
        "X-Shopify-Topic": draw(st.one_of(st.sampled_from(WEBHOOK_TOPICS), HEADER_TEXT)),
        # mostly fresh ids (a repeated one is a duplicate, answered before the body is read)
        "X-Shopify-Webhook-Id": draw(st.one_of(FRESH_ID, FRESH_ID, HEADER_TEXT,
                                               st.integers(250, 300).map(lambda n: "w" * n))),
        "X-Shopify-Shop-Domain": "fuzz.myshopify.com",
        "Content-Type": "application/json",
    }
    for name in draw(st.lists(st.sampled_from(["X-Shopify-Event-Id", "X-Shopify-Triggered-At",
                                               "X-Shopify-API-Version", "X-Shopify-Extra"]), max_size=2)):
        headers[name] = draw(st.one_of(HEADER_TEXT, st.integers(990, 1010).map(lambda n: "h" * n)))
    if signing in SECRETS:
        headers["X-Shopify-Hmac-Sha256"] = sign(body, SECRETS[signing])
    return body, headers, signing


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# ------------------------------------------------------------------------------ the checks


EVER_ACCEPTED: set[str] = set()  # webhook ids accepted by any test of the module (they share the topic)
EVER_KEPT: set[str] = set()  # webhook ids answered 200 (stored) by any test of the module (they share the store)


class Run:
    """One fuzz test's deliveries and what they were answered."""

    def __init__(self, name: str) -> None:
        self.tally = Tally(name)
        self.accepted: set[str] = set()
        self.refused: set[str] = set()  # answered 4xx: nothing may be stored
        self.quarantined: set[str] = set()  # kept, but no fact may be published

    def send(self, client: httpx.Client, body: bytes, headers: dict[str, str], signing: str) -> None:
        try:
            response = client.post("/webhooks/shopify", content=body, headers=headers)
        except httpx.TransportError:
            self.tally.crashed()
            raise AssertionError("no answer (the ingest dropped the connection)") from None
        self.tally.answered(response.status_code)
        webhook_id = headers.get("X-Shopify-Webhook-Id", "")
        assert response.status_code < 500, (response.status_code, response.text[:300])
        assert len(response.content) < 600, response.content[:600]
        if signing in ("wrong", "missing"):
            assert response.status_code == 401, response.text[:300]
        if response.status_code >= 400:
            assert response.status_code in (400, 401, 413), response.status_code
            error = response.json()["error"]
            assert set(error) == {"code", "message"} and error["code"], error
            for value in headers.values():  # nothing sent is echoed back
                assert len(value) < 30 or value not in response.text, "a header was echoed"
            self.refused.add(webhook_id)
            self.tally.counts[f"refused {error['code']}"] += 1
            return
        status = response.json()["status"]
        assert status in ("accepted", "duplicate", "quarantined"), status
        self.tally.counts[status] += 1
        EVER_KEPT.add(webhook_id)
        (self.accepted if status == "accepted" else self.quarantined if status == "quarantined" else set()).add(
            webhook_id)
        if status == "accepted":
            EVER_ACCEPTED.add(webhook_id)

    def verify_published(self, env) -> None:
        """Every fact on the orders topic is valid, and none is of a refused or quarantined delivery."""
        messages = asyncio.run(read_topic(env.kafka_bootstrap, env.orders, lambda m: True,
                                          expect=10**9, timeout=5.0))
        accepts = SHOPIFY_ORDERS.message_types  # an order's fact, a refund's, an order edit's
        invalid, published = 0, set()
        for m in messages:
            record = Record(SHOPIFY_ORDERS.name, 0, 0, m.key, m.value, [(k, v.encode()) for k, v in m.headers.items()])
            try:
                published.add(decode_record(record, accepts).webhook_id)
            except Undecodable:
                invalid += 1
        self.tally.counts["published facts"] = len(messages)
        self.tally.counts["published invalid facts"] = invalid
        wrongly = published & ((self.refused | self.quarantined) - EVER_ACCEPTED)
        self.tally.counts["published for an invalid delivery"] = len(wrongly)
        stored = asyncio.run(_stored(env.database_url, sorted(self.refused - EVER_KEPT)))
        self.tally.counts["stored for a refused delivery"] = stored
        assert invalid == 0 and not wrongly and stored == 0, self.tally.figures()


async def _stored(database_url: str, webhook_ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM ingest.raw_webhooks WHERE webhook_id = ANY($1::text[])",
                                   webhook_ids)
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ the tests


def test_generated_deliveries_get_a_reason_never_a_5xx_and_nothing_invalid_is_published(served, ingest_env):
    run = Run("ingest: generated bodies and headers (hypothesis)")

    @FUZZ
    @given(deliveries())
    def deliver(delivery: tuple[bytes, dict[str, str], str]) -> None:
        run.send(served, *delivery)

    deliver()
    run.verify_published(ingest_env)
    figures = run.tally.record()
    assert figures["5xx"] == 0 and figures["crashes"] == 0
    assert run.tally.counts["accepted"] > 0 and run.tally.counts["quarantined"] > 0  # both paths were reached


def test_requests_generated_from_the_ingests_openapi_get_a_reason_never_a_5xx(served, ingest_env):
    schema = schemathesis.openapi.from_dict(served.get("/openapi.json").json())
    operation = schema["/webhooks/shopify"]["POST"]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    run = Run("ingest: schemathesis, from its OpenAPI (positive and negative)")

    @FUZZ
    @given(cases, st.sampled_from(["current", "current", "previous", "wrong", "as generated"]), st.booleans())
    def deliver(case: Any, signing: str, fresh_id: bool) -> None:
        body = case.body if isinstance(case.body, (bytes, str)) else json.dumps(case.body, default=str)
        body = body.encode() if isinstance(body, str) else body
        headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
        if fresh_id or "X-Shopify-Webhook-Id" not in headers:  # else mostly duplicates of a few generated ids
            headers["X-Shopify-Webhook-Id"] = str(uuid.uuid4())
        if signing in SECRETS:
            headers["X-Shopify-Hmac-Sha256"] = sign(body, SECRETS[signing])
        try:
            httpx.Headers(headers).raw  # noqa: B018 - a header httpx cannot send is not a case for the server
        except (UnicodeEncodeError, ValueError):
            return
        run.send(served, body, headers, "wrong" if signing == "wrong" else signing)

    deliver()
    run.verify_published(ingest_env)
    figures = run.tally.record()
    assert figures["5xx"] == 0 and figures["crashes"] == 0
