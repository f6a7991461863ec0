"""The Prima sandbox's journals (sandboxes/prima/journals.py) against real PostgreSQL, served by
uvicorn on a free loopback port, in a schema of their own: posted once per idempotency key,
balanced to the cent, one per external reference, reversed once, behind the same fault
switches, and answered with exactly the fields contracts/prima/openapi.yaml documents."""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml

from sandboxes.prima.app import create_app

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("SHOPIFY_PRIMA_DATABASE_URL",
                              "postgresql://shopify_prima:shopify_prima@127.0.0.1:55432/shopify_prima")
SCHEMA = f"prima_journals_test_{uuid4().hex[:8]}"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[3] / "contracts" / "prima" / "openapi.yaml").read_text())

JOURNAL = {
    "external_reference": "shopify-payout:700001",
    "journal_date": "2026-11-12",
    "currency": "USD",
    "description": "Shopify payout 700001 of 2026-11-12",
    "reverses": None,
    "lines": [
        {"line_number": 1, "account": "1010", "description": "Bank", "debit": "115.04", "credit": "0.00",
         "tax_code": None},
        {"line_number": 2, "account": "4000", "description": "Sales", "debit": "0.00", "credit": "100.00",
         "tax_code": None},
        {"line_number": 3, "account": "4100", "description": "Shipping", "debit": "0.00", "credit": "10.00",
         "tax_code": None},
        {"line_number": 4, "account": "2200", "description": "Sales tax: VAT 8%", "debit": "0.00", "credit": "8.80",
         "tax_code": "TAX"},
        {"line_number": 5, "account": "6100", "description": "Fees", "debit": "3.76", "credit": "0.00",
         "tax_code": None},
    ],
}


def journal(**changes) -> dict:
    body = deepcopy(JOURNAL)
    body.update(changes)
    return body


@pytest.fixture(scope="module")
async def base_url(serve_app):
    async def drop() -> None:
        conn = await asyncpg.connect(DATABASE_URL)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await conn.close()

    await drop()
    with serve_app(create_app(DATABASE_URL, KEY, schema=SCHEMA), "the Prima sandbox") as url:
        yield url
    await drop()


@pytest.fixture
async def client(base_url):
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        assert (await c.post("/_sandbox/reset")).status_code == 200
        yield c


async def post(client: httpx.AsyncClient, body: dict, key: str = "journal-1") -> httpx.Response:
    return await client.post("/v1/journals", json=body, headers={**AUTH, "Idempotency-Key": key})


async def count(client: httpx.AsyncClient) -> int:
    return (await client.get("/_sandbox/stats")).json()["journals"]


async def test_a_balanced_journal_is_posted_once_whatever_is_repeated(client):
    first = await post(client, JOURNAL)
    assert first.status_code == 201, first.text
    posted = first.json()
    assert posted["journal_number"] == "JN-000001" and posted["status"] == "posted"
    assert first.headers["Location"] == "/v1/journals/JN-000001"
    assert (posted["total_debit"], posted["total_credit"]) == ("118.80", "118.80")
    assert {k: posted[k] for k in JOURNAL} == JOURNAL  # amounts come back as the same strings

    again = await post(client, JOURNAL)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.json() == posted
    other_body = await post(client, journal(description="changed"))
    assert (other_body.status_code, other_body.json()["error"]["code"]) == (409, "idempotency_key_reused")
    other_key = await post(client, JOURNAL, key="journal-2")
    assert (other_key.status_code, other_key.json()["error"]["code"]) == (409, "duplicate_external_reference")
    assert await count(client) == 1

    assert (await client.get("/v1/journals/JN-000001", headers=AUTH)).json() == posted
    found = await client.get("/v1/journals", params={"external_reference": "shopify-payout:700001"}, headers=AUTH)
    assert found.json() == {"journals": [posted]}
    assert (await client.get("/v1/journals/JN-999999", headers=AUTH)).json()["error"]["code"] == "not_found"


async def test_an_unbalanced_or_malformed_journal_is_refused_and_does_not_use_its_key(client):
    lines = deepcopy(JOURNAL["lines"])
    lines[0]["debit"] = "115.05"
    refused = await post(client, journal(lines=lines))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unbalanced"
    assert "118.81" in refused.json()["error"]["message"]

    both = deepcopy(JOURNAL["lines"])
    both[1]["debit"] = "1.00"
    for bad in (journal(lines=both), journal(lines=JOURNAL["lines"][:1]), journal(currency="usd"),
                journal(lines=[{**JOURNAL["lines"][0], "debit": "-1.00"}, *JOURNAL["lines"][1:]])):
        answer = await post(client, bad)
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "validation_error"), bad
    missing_key = await client.post("/v1/journals", json=JOURNAL, headers=AUTH)
    assert missing_key.json()["error"]["code"] == "idempotency_key_missing"
    assert (await client.post("/v1/journals", json=JOURNAL, headers={"Idempotency-Key": "k"})).status_code == 401
    assert await count(client) == 0

    fixed = await post(client, JOURNAL)  # the refused requests did not consume the key
    assert fixed.status_code == 201


async def test_a_posted_journal_is_reversed_once_by_a_reversing_journal(client):
    number = (await post(client, JOURNAL)).json()["journal_number"]
    swapped = [{**line, "debit": line["credit"], "credit": line["debit"]} for line in JOURNAL["lines"]]
    reversal = journal(external_reference="shopify-payout:700001:reversal", reverses=number, lines=swapped)

    unknown = await post(client, {**reversal, "reverses": "JN-424242"}, key="reverse-1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_journal")
    done = await post(client, reversal, key="reverse-1")
    assert done.status_code == 201 and done.json()["reverses"] == number
    twice = await post(client, {**reversal, "external_reference": "another"}, key="reverse-2")
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "already_reversed")


async def test_the_fault_switches_apply_to_journals(client):
    await client.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": 503, "path_prefix": "/v1/journals"})
    failed = await post(client, JOURNAL)
    assert (failed.status_code, failed.json()["error"]["code"]) == (503, "injected_fault")
    assert await count(client) == 0
    await client.post("/_sandbox/faults", json={"commit_then_drop_next": 1, "path_prefix": "/v1/journals"})
    with pytest.raises(httpx.HTTPError):
        await post(client, JOURNAL)  # Prima posted it; the answer never came
    assert await count(client) == 1
    replay = await post(client, JOURNAL)  # the same key again: the journal it posted, no second one
    assert replay.status_code == 200 and await count(client) == 1


async def test_what_the_sandbox_answers_has_exactly_the_documented_fields(client):
    schemas = OPENAPI["components"]["schemas"]
    posted = (await post(client, JOURNAL)).json()
    assert set(posted) == set(schemas["Journal"]["properties"]) == set(schemas["Journal"]["required"])
    assert set(posted["lines"][0]) == set(schemas["JournalLine"]["properties"])
    assert set(JOURNAL) == set(schemas["JournalCreate"]["required"])
    stats = (await client.get("/_sandbox/stats")).json()
    documented = OPENAPI["paths"]["/_sandbox/stats"]["get"]["responses"]["200"]["content"]["application/json"]
    assert set(documented["schema"]["required"]) <= set(stats)
