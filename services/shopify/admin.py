"""The Shopify Admin GraphQL client: named documents only, paced by Shopify's cost throttle.

Every request is one of the documents in contracts/shopify_admin/operations, sent by name
(`await admin.execute("InventoryLevels", {"ids": [...]})`); there is no way to send other text.

Rate limit (SHOPIFY.md): a leaky bucket of cost points per app and store. Every response carries
`extensions.cost.throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}`; the client
keeps the last one seen and, before a request, estimates what the bucket holds now
(min(maximum, last + restoreRate * elapsed), less what requests in flight may take) and waits
until the request's expected cost fits. Callers sharing a client share that state, so THROTTLED
does not happen in normal operation. When it does (another app on the store, a storm), the
request waits what the bucket needs and is sent again: bounded, and not counted against the
normal attempts.

Failures: HTTP 5xx, 429, 408, timeouts, refused or reset connections and GraphQL errors with
code INTERNAL_SERVER_ERROR are retried with exponential backoff and jitter up to
`shopify_max_attempts`, then `ShopifyUnavailable`. 401/403 (and ACCESS_DENIED) raise
`ShopifyAuthError`, other GraphQL errors `ShopifyGraphQLError`, at once. userErrors are data: the
caller decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from graphql import OperationType, parse
from prometheus_client import Counter, Gauge
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from contracts.shopify_admin import document
from services.platform.settings import Settings

log = logging.getLogger("shopify_prima.shopify_admin")

SHOPIFY_CALLS = Counter(
    "shopify_prima_shopify_calls", "Shopify Admin GraphQL requests, by operation and outcome", ["operation", "outcome"]
)
SHOPIFY_THROTTLED = Counter("shopify_prima_shopify_throttled", "Shopify answers THROTTLED (each retried)")
SHOPIFY_COST_POINTS = Counter(
    "shopify_prima_shopify_query_cost_points", "Shopify query cost points, requested and actual", ["kind"]
)
SHOPIFY_AVAILABLE = Gauge(
    "shopify_prima_shopify_throttle_available_points", "Shopify's currentlyAvailable as last reported"
)
SHOPIFY_PACING_SECONDS = Counter(
    "shopify_prima_shopify_pacing_wait_seconds", "Time spent waiting for the cost bucket before requests"
)

MUTATION_COST = 10  # what Shopify charges a mutation
QUERY_COST_GUESS = 50  # a query never seen before and with no caller estimate
THROTTLE_MAX_RETRIES = 20  # THROTTLED answers one request may get before it is given up
TRANSIENT_CODES = {"INTERNAL_SERVER_ERROR", "IDEMPOTENCY_CONCURRENT_REQUEST", "SERVICE_UNAVAILABLE"}
AUTH_CODES = {"ACCESS_DENIED", "UNAUTHORIZED", "FORBIDDEN"}
SKU_LOOKUP_CHUNK = 20  # SKUs per InventoryItemsBySku query
SKU_LOOKUP_FIRST = 28  # 2 + 28 x 35 = 982 points: under the 1000 a single query may cost


# ------------------------------------------------------------------------------------ errors


class ShopifyError(Exception):
    """Anything that kept a request from giving data."""

    def __init__(self, message: str, *, operation: str = "", attempts: int = 0, errors: list | None = None):
        super().__init__(message)
        self.operation = operation
        self.attempts = attempts
        self.errors = errors or []


class ShopifyUnavailable(ShopifyError):
    """Shopify (or the way to it) kept failing or throttling through every retry."""


class ShopifyThrottled(ShopifyUnavailable):
    """Still THROTTLED after THROTTLE_MAX_RETRIES waits."""


class ShopifyAuthError(ShopifyError):
    """401/403 or ACCESS_DENIED: the token or its scopes are wrong. Never retried."""


class ShopifyGraphQLError(ShopifyError):
    """The request itself is wrong (validation, unknown field, bad variables, 4xx). Never retried."""


class _Transient(Exception):
    def __init__(self, message: str):
        super().__init__(message)


# ---------------------------------------------------------------------------- pacing (pure)


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float
    seen_at: float  # the client's monotonic clock when the response arrived

    def available_at(self, now: float) -> float:
        elapsed = max(0.0, now - self.seen_at)
        return min(self.maximum_available, self.currently_available + self.restore_rate * elapsed)

    def merged(self, previous: ThrottleStatus | None) -> ThrottleStatus:
        """This status, unless what was known before says there is less now: answers to
        concurrent requests can arrive out of the order Shopify charged them, and an earlier
        charge reported late must not raise the estimate."""
        if previous is None:
            return self
        available = min(self.currently_available, previous.available_at(self.seen_at))
        return ThrottleStatus(self.maximum_available, available, self.restore_rate, self.seen_at)

    @classmethod
    def from_extensions(cls, extensions: dict[str, Any] | None, seen_at: float) -> ThrottleStatus | None:
        try:
            status = extensions["cost"]["throttleStatus"]  # type: ignore[index]
            return cls(float(status["maximumAvailable"]), float(status["currentlyAvailable"]),
                       float(status["restoreRate"]), seen_at)
        except (KeyError, TypeError, ValueError):
            return None


def pacing_wait(status: ThrottleStatus | None, cost: float, now: float, reserved: float = 0.0,
                headroom: float = 0.0) -> float:
    """Seconds to wait before a request of `cost` points fits in the bucket, given the last
    throttle status and the points `reserved` by requests in flight. 0 when it fits (or nothing
    is known yet). A cost above the bucket's size waits for a full bucket. `headroom`: the share
    of the bucket a background reader leaves to the others (it waits until the request fits with
    that much to spare)."""
    if status is None or status.restore_rate <= 0:
        return 0.0
    cost = min(cost + headroom * status.maximum_available, status.maximum_available)
    available = status.available_at(now) - reserved
    if available >= cost:
        return 0.0
    return (cost - available) / status.restore_rate


def throttle_backoff(retry: int, initial: float, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """The extra wait after the `retry`-th THROTTLED answer (0-based): exponential with jitter,
    on top of what the bucket itself says it needs (a storm can throttle a request that fits)."""
    return min(maximum, initial * 2 ** retry) * (0.5 + rng() / 2)


def operation_type(name: str) -> str:
    for definition in parse(document(name)).definitions:
        op = getattr(definition, "operation", None)
        if op is not None:
            return "mutation" if op == OperationType.MUTATION else "query"
    return "query"


# ------------------------------------------------------------------------------- the client


@dataclass
class CallStats:
    calls: int = 0  # HTTP requests sent
    ok: int = 0  # requests that gave data
    throttled: int = 0
    transient_errors: int = 0
    pacing_waits: int = 0
    pacing_seconds: float = 0.0
    points_requested: float = 0.0
    points_actual: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    data: dict[str, Any]
    extensions: dict[str, Any]
    attempts: int


class ShopifyAdmin:
    """One shop's Admin GraphQL endpoint. Share one instance between every caller in a process:
    the pacing state is per instance."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        headroom: float = 0.0,
    ):
        self.settings = settings
        # a background reader (the reconciler) leaves this share of the bucket to the flows that
        # answer a customer or a warehouse now (fulfilments, stock): they share one app's bucket, and
        # this client sees the others' use only in its next answer
        self.headroom = headroom
        self.endpoint = (f"{settings.shopify_admin_url.rstrip('/')}/admin/api/"
                         f"{settings.shopify_api_version}/graphql.json")
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(settings.shopify_timeout_seconds))
        self._headers = {
            "X-Shopify-Access-Token": settings.shopify_access_token.get_secret_value(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._status: ThrottleStatus | None = None
        self._reserved = 0.0  # expected cost of requests sent and not yet answered
        self._costs: dict[str, float] = {}  # requestedQueryCost last seen, per operation
        self._known = asyncio.Event()  # set once the first request came back
        self.stats = CallStats()

    # -- lifecycle

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> ShopifyAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- state

    @property
    def throttle_status(self) -> ThrottleStatus | None:
        return self._status

    def expected_cost(self, operation: str) -> float:
        if operation in self._costs:
            return self._costs[operation]
        return MUTATION_COST if operation_type(operation) == "mutation" else QUERY_COST_GUESS

    # -- requests

    async def execute(self, operation: str, variables: dict[str, Any] | None = None, *,
                      expected_cost: float | None = None) -> dict[str, Any]:
        """Send the named document with `variables`; its `data` (userErrors included)."""
        return (await self.request(operation, variables, expected_cost=expected_cost)).data

    async def request(self, operation: str, variables: dict[str, Any] | None = None, *,
                      expected_cost: float | None = None) -> Response:
        """Like execute, with the response's extensions (query cost) and the attempts it took."""
        body = {"query": document(operation), "variables": variables or {}, "operationName": operation}
        attempts = 0
        throttles = 0

        async def attempt() -> Response:
            nonlocal attempts, throttles
            while True:
                attempts += 1
                cost = expected_cost if expected_cost is not None else self.expected_cost(operation)
                outcome, payload = await self._send(operation, body, cost)
                if outcome != "throttled":
                    return payload
                throttles += 1
                if throttles > THROTTLE_MAX_RETRIES:
                    raise ShopifyThrottled(f"{operation}: still THROTTLED after {THROTTLE_MAX_RETRIES} waits",
                                           operation=operation, attempts=attempts)
                await self._sleep(throttle_backoff(throttles - 1, self.settings.shopify_backoff_initial_seconds,
                                                   self.settings.shopify_backoff_max_seconds))

        try:
            async for retry in AsyncRetrying(
                stop=stop_after_attempt(self.settings.shopify_max_attempts),
                wait=wait_exponential_jitter(multiplier=self.settings.shopify_backoff_initial_seconds,
                                             max=self.settings.shopify_backoff_max_seconds,
                                             jitter=self.settings.shopify_backoff_initial_seconds),
                retry=retry_if_exception_type(_Transient),
                sleep=self._sleep,
                reraise=True,
            ):
                with retry:
                    response = await attempt()
        except _Transient as exc:
            SHOPIFY_CALLS.labels(operation, "unavailable").inc()
            raise ShopifyUnavailable(f"{operation}: {exc} (after {attempts} attempts)", operation=operation,
                                     attempts=attempts) from exc
        return Response(response.data, response.extensions, attempts)

    async def _pace(self, cost: float) -> None:
        async with self._lock:
            if self._status is None and self._reserved > 0:
                # the bucket is unknown until the first answer: one request finds out, the rest wait
                try:
                    await asyncio.wait_for(self._known.wait(), self.settings.shopify_timeout_seconds)
                except TimeoutError:
                    pass
            while True:
                wait = pacing_wait(self._status, cost, self._clock(), self._reserved, self.headroom)
                if wait <= 0:
                    break
                wait = min(wait, 60.0)
                self.stats.pacing_waits += 1
                self.stats.pacing_seconds += wait
                SHOPIFY_PACING_SECONDS.inc(wait)
                await self._sleep(wait)
            self._reserved += cost

    def _observe(self, operation: str, extensions: dict[str, Any] | None) -> None:
        status = ThrottleStatus.from_extensions(extensions, self._clock())
        if status is not None:
            self._status = status.merged(self._status)
            SHOPIFY_AVAILABLE.set(status.currently_available)
        cost = (extensions or {}).get("cost") or {}
        requested, actual = cost.get("requestedQueryCost"), cost.get("actualQueryCost")
        if isinstance(requested, int | float):
            self._costs[operation] = float(requested)
            self.stats.points_requested += requested
            SHOPIFY_COST_POINTS.labels("requested").inc(requested)
        if isinstance(actual, int | float):
            self.stats.points_actual += actual
            SHOPIFY_COST_POINTS.labels("actual").inc(actual)

    async def _send(self, operation: str, body: dict[str, Any], cost: float) -> tuple[str, Any]:
        """One HTTP request: ("ok", Response) or ("throttled", None); raises the rest."""
        await self._pace(cost)
        self.stats.calls += 1
        self.stats.by_operation[operation] = self.stats.by_operation.get(operation, 0) + 1
        try:
            try:
                http = await self._client.post(self.endpoint, json=body, headers=self._headers)
            except httpx.TransportError as exc:  # timeouts, refused connections, resets
                self._transient(operation)
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._reserved = max(0.0, self._reserved - cost)
            self._known.set()  # an answer (or none): whoever waited for the first one goes on
        status_code = http.status_code
        if status_code in (401, 403):
            SHOPIFY_CALLS.labels(operation, "auth_error").inc()
            raise ShopifyAuthError(f"{operation}: HTTP {status_code}: {http.text[:300]}", operation=operation)
        if status_code >= 500 or status_code in (408, 429):
            self._transient(operation)
            if status_code == 429:
                # Shopify's REST-style limit or a proxy's: honour Retry-After before the backoff.
                retry_after = _seconds(http.headers.get("Retry-After"))
                if retry_after:
                    await self._sleep(min(retry_after, self.settings.shopify_backoff_max_seconds))
            raise _Transient(f"HTTP {status_code}: {http.text[:300]}")
        try:
            payload = http.json()
        except ValueError as exc:
            if status_code >= 400:
                SHOPIFY_CALLS.labels(operation, "request_error").inc()
                raise ShopifyGraphQLError(f"{operation}: HTTP {status_code}: {http.text[:300]}",
                                          operation=operation) from exc
            self._transient(operation)
            raise _Transient(f"HTTP {status_code} with a body that is not JSON: {http.text[:200]!r}") from exc
        extensions = payload.get("extensions") or {}
        self._observe(operation, extensions)
        errors = payload.get("errors") or []
        if isinstance(errors, dict | str):
            errors = [errors if isinstance(errors, dict) else {"message": errors}]
        codes = {_code(e) for e in errors}
        if "THROTTLED" in codes:
            self.stats.throttled += 1
            SHOPIFY_THROTTLED.inc()
            SHOPIFY_CALLS.labels(operation, "throttled").inc()
            log.info("%s throttled (available %s)", operation, self._status and self._status.currently_available)
            return "throttled", None
        if codes & TRANSIENT_CODES:
            self._transient(operation)
            raise _Transient(f"{operation}: {_messages(errors)}")
        if codes & AUTH_CODES:
            SHOPIFY_CALLS.labels(operation, "auth_error").inc()
            raise ShopifyAuthError(f"{operation}: {_messages(errors)}", operation=operation, errors=errors)
        if errors or status_code >= 400 or not isinstance(payload.get("data"), dict):
            SHOPIFY_CALLS.labels(operation, "graphql_error").inc()
            raise ShopifyGraphQLError(f"{operation}: HTTP {status_code}: {_messages(errors) or 'no data'}",
                                      operation=operation, errors=errors)
        self.stats.ok += 1
        SHOPIFY_CALLS.labels(operation, "ok").inc()
        return "ok", Response(payload["data"], extensions, 0)

    def _transient(self, operation: str) -> None:
        self.stats.transient_errors += 1
        SHOPIFY_CALLS.labels(operation, "transient_error").inc()

    # -- helpers for the catalogue reader

    async def start_bulk_query(self, bulk_document: str = "CatalogInventoryBulk") -> dict[str, Any]:
        """Start a bulk read of a named bulk document; the bulkOperation {id, status}.
        userErrors (e.g. one already running) raise ShopifyGraphQLError with them attached."""
        data = await self.execute("BulkOperationRunQuery", {"query": document(bulk_document)})
        payload = data["bulkOperationRunQuery"]
        if payload.get("userErrors"):
            raise ShopifyGraphQLError(f"bulkOperationRunQuery: {_messages(payload['userErrors'])}",
                                      operation="BulkOperationRunQuery", errors=payload["userErrors"])
        return payload["bulkOperation"]

    async def bulk_operation(self, operation_id: str) -> dict[str, Any] | None:
        """{id, status, errorCode, objectCount, url} of a bulk operation (None if unknown)."""
        return (await self.execute("BulkOperation", {"id": operation_id}))["node"]

    async def wait_for_bulk_operation(self, operation_id: str, *, poll_seconds: float = 1.0,
                                      timeout_seconds: float = 3600.0) -> dict[str, Any]:
        """Poll until the bulk operation leaves CREATED/RUNNING; the final node (check status)."""
        deadline = self._clock() + timeout_seconds
        while True:
            node = await self.bulk_operation(operation_id)
            if node is None:
                raise ShopifyGraphQLError(f"bulk operation {operation_id} not found", operation="BulkOperation")
            if node.get("status") not in ("CREATED", "RUNNING", "CANCELING"):
                return node
            if self._clock() > deadline:
                raise ShopifyUnavailable(f"bulk operation {operation_id} still {node.get('status')} "
                                         f"after {timeout_seconds}s", operation="BulkOperation")
            await self._sleep(poll_seconds)

    async def download_jsonl(self, url: str) -> AsyncIterator[dict[str, Any]]:
        """The lines of a bulk operation's result file, parsed, streamed (no token sent: the URL
        is signed)."""
        async with self._client.stream("GET", url) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def inventory_items_by_sku(self, skus: Iterable[str], *, chunk: int = SKU_LOOKUP_CHUNK,
                                     first: int = SKU_LOOKUP_FIRST) -> list[dict[str, Any]]:
        """Inventory items (with variant, product status and levels) of these SKUs, through the
        InventoryItemsBySku document, `chunk` SKUs a query. Each item costs 35 points (its 10
        levels included), so `first` stays at 28 to keep a query under Shopify's 1000."""
        skus = list(dict.fromkeys(skus))
        nodes: list[dict[str, Any]] = []
        for start in range(0, len(skus), chunk):
            part = skus[start:start + chunk]
            data = await self.execute("InventoryItemsBySku", {"query": sku_search_query(part), "first": first},
                                      expected_cost=2 + first * 35)
            nodes.extend(data["inventoryItems"]["nodes"])
        return nodes


def sku_search_query(skus: Iterable[str]) -> str:
    """Shopify search syntax for these SKUs: sku:A OR sku:"B C" (quoted when not a plain token)."""
    terms = []
    for sku in skus:
        if re.fullmatch(r"[A-Za-z0-9_.\-]+", sku):
            terms.append(f"sku:{sku}")
        else:
            terms.append('sku:"' + sku.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " OR ".join(terms)


def _code(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    return str((error.get("extensions") or {}).get("code") or "")


def _messages(errors: Iterable[Any]) -> str:
    parts = []
    for error in errors:
        if isinstance(error, dict):
            code = _code(error) or error.get("code") or ""
            parts.append(f"{code + ': ' if code else ''}{error.get('message', error)}")
        else:
            parts.append(str(error))
    return "; ".join(parts)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
