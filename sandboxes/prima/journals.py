"""Journals in the Prima sandbox: `POST /v1/journals` (idempotent by Idempotency-Key),
`GET /v1/journals?external_reference=`, `GET /v1/journals/{journal_number}`, as
contracts/prima/openapi.yaml documents them, in the sandbox's PostgreSQL schema. The fault
switches (faults.py) apply as to every /v1 route: set `path_prefix` to /v1/journals.

Checks, in this order: the body's shape (422 validation_error: each line a debit or a credit,
not both, line numbers unique, at least two lines); the idempotency key (400 when missing; a key
already used answers 200 with the journal it made when the body is the same, 409
idempotency_key_reused when it differs); the lines balance (422 unbalanced); a reversal names a
journal that exists (422 unknown_journal) and is not reversed already (409 already_reversed);
no other journal has the external reference (409 duplicate_external_reference). A request that
fails changes nothing and does not use its key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .models import Currency, Money
from .store import ApiError, create_tables

DDL = """
INSERT INTO counters VALUES ('journal', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS journals (
    journal_number     text PRIMARY KEY,
    external_reference text NOT NULL UNIQUE,
    idempotency_key    text NOT NULL,
    reverses           text REFERENCES journals (journal_number),
    status             text NOT NULL DEFAULT 'posted',
    body               jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS journals_reversed_once ON journals (reverses) WHERE reverses IS NOT NULL;
CREATE TABLE IF NOT EXISTS journal_idempotency_keys (
    key            text PRIMARY KEY,
    request_hash   text NOT NULL,
    journal_number text REFERENCES journals,
    replays        integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now()
);
"""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JournalLine(_Body):
    line_number: int = Field(ge=1)
    account: str = Field(min_length=1, max_length=40)
    description: str = Field(max_length=2000)
    debit: Money
    credit: Money
    tax_code: str | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _debit_or_credit(self) -> JournalLine:
        if (self.debit > 0) == (self.credit > 0):
            raise ValueError(f"line {self.line_number}: a line is a debit or a credit (one of them positive, "
                             "the other 0)")
        return self


class JournalCreate(_Body):
    external_reference: str = Field(min_length=1, max_length=255)
    journal_date: date
    currency: Currency
    description: str = Field(max_length=2000)
    reverses: str | None = None
    lines: list[JournalLine] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique_line_numbers(self) -> JournalCreate:
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line_number must be unique within the journal")
        return self

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal(0))

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class Posted:
    journal: dict
    replayed: bool


def _hash(body: JournalCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def _journal(row: asyncpg.Record) -> dict:
    body = json.loads(row["body"])
    debit = sum((Decimal(line["debit"]) for line in body["lines"]), Decimal(0))
    credit = sum((Decimal(line["credit"]) for line in body["lines"]), Decimal(0))
    return {**body, "journal_number": row["journal_number"], "status": row["status"],
            "total_debit": f"{debit:.2f}", "total_credit": f"{credit:.2f}",
            "created_at": row["created_at"].isoformat().replace("+00:00", "Z")}


def _duplicate(external_reference: str, existing: str | None) -> ApiError:
    return ApiError("duplicate_external_reference",
                    f"external_reference {external_reference!r} already has journal {existing}")


class Journals:
    """The journals' data, in the sandbox's schema (the pool's search_path)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create_tables(self) -> None:
        await create_tables(self.pool, DDL)

    async def post(self, key: str, body: JournalCreate) -> Posted:
        digest = _hash(body)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetchval(
                    """INSERT INTO journal_idempotency_keys (key, request_hash) VALUES ($1, $2)
                       ON CONFLICT (key) DO NOTHING RETURNING true""", key, digest)
                if not claimed:
                    return Posted(await self._replay(conn, key, digest), replayed=True)
                if body.total_debit != body.total_credit:
                    raise ApiError("unbalanced", f"debits {body.total_debit} != credits {body.total_credit}", 422)
                if body.reverses is not None:
                    if not await conn.fetchval("SELECT true FROM journals WHERE journal_number = $1 FOR UPDATE",
                                               body.reverses):
                        raise ApiError("unknown_journal", f"no journal {body.reverses} to reverse", 422)
                    if reversal := await conn.fetchval("SELECT journal_number FROM journals WHERE reverses = $1",
                                                       body.reverses):
                        raise ApiError("already_reversed", f"journal {body.reverses} is reversed by {reversal}")
                if existing := await conn.fetchval(
                        "SELECT journal_number FROM journals WHERE external_reference = $1", body.external_reference):
                    raise _duplicate(body.external_reference, existing)
                seq = await conn.fetchval(
                    "UPDATE counters SET value = value + 1 WHERE name = 'journal' RETURNING value")
                number = f"JN-{seq:06d}"
                row = await conn.fetchrow(
                    """INSERT INTO journals (journal_number, external_reference, idempotency_key, reverses, body)
                       VALUES ($1, $2, $3, $4, $5) RETURNING *""",
                    number, body.external_reference, key, body.reverses, body.model_dump_json())
                await conn.execute("UPDATE journal_idempotency_keys SET journal_number = $2 WHERE key = $1",
                                   key, number)
                return Posted(_journal(row), replayed=False)
        except asyncpg.UniqueViolationError as exc:  # the same reference or reversal committed meanwhile
            existing = await self.pool.fetchval(
                "SELECT journal_number FROM journals WHERE external_reference = $1", body.external_reference)
            if existing is not None:
                raise _duplicate(body.external_reference, existing) from exc
            raise ApiError("already_reversed", f"journal {body.reverses} is reversed already") from exc

    async def _replay(self, conn: asyncpg.Connection, key: str, digest: str) -> dict:
        stored = await conn.fetchrow(
            "SELECT request_hash, journal_number FROM journal_idempotency_keys WHERE key = $1", key)
        if stored["request_hash"] != digest:
            raise ApiError("idempotency_key_reused",
                           f"Idempotency-Key {key!r} was used for a different journal ({stored['journal_number']})")
        await conn.execute("UPDATE journal_idempotency_keys SET replays = replays + 1 WHERE key = $1", key)
        return _journal(await conn.fetchrow("SELECT * FROM journals WHERE journal_number = $1",
                                            stored["journal_number"]))

    async def get(self, number: str) -> dict | None:
        row = await self.pool.fetchrow("SELECT * FROM journals WHERE journal_number = $1", number)
        return _journal(row) if row else None

    async def find(self, external_reference: str) -> list[dict]:
        rows = await self.pool.fetch("SELECT * FROM journals WHERE external_reference = $1 ORDER BY journal_number",
                                     external_reference)
        return [_journal(r) for r in rows]

    async def count(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM journals")

    async def reset(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("TRUNCATE journal_idempotency_keys, journals")
            await conn.execute("UPDATE counters SET value = 0 WHERE name = 'journal'")


def add_journal_routes(router: FastAPI, auth: list) -> None:
    """The /v1/journals routes, on the app itself (its route list is checked against the
    contract); `auth` is the app's bearer-key dependency."""

    async def journals(request: Request) -> Journals:
        return request.app.state.journals

    @router.post("/v1/journals", dependencies=auth)
    async def post_journal(body: JournalCreate, idempotency_key: str | None = Header(None),
                           db: Journals = Depends(journals)) -> JSONResponse:
        if idempotency_key is None:
            raise ApiError("idempotency_key_missing", "the Idempotency-Key header is required", 400)
        if not 1 <= len(idempotency_key) <= 128:
            raise ApiError("idempotency_key_invalid", "Idempotency-Key must be 1 to 128 characters", 400)
        posted = await db.post(idempotency_key, body)
        if posted.replayed:
            return JSONResponse(posted.journal, 200, headers={"Idempotent-Replayed": "true"})
        return JSONResponse(posted.journal, 201, headers={"Location": f"/v1/journals/{posted.journal['journal_number']}"})

    @router.get("/v1/journals", dependencies=auth)
    async def find_journals(external_reference: str = Query(min_length=1),
                            db: Journals = Depends(journals)) -> dict:
        return {"journals": await db.find(external_reference)}

    @router.get("/v1/journals/{journal_number}", dependencies=auth)
    async def get_journal(journal_number: str, db: Journals = Depends(journals)) -> dict:
        if (found := await db.get(journal_number)) is None:
            raise ApiError("not_found", f"no journal {journal_number}", 404)
        return found
