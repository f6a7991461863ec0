"""The one client for Prima's API (contracts/prima/openapi.yaml), used by every Prima caller: the
gateway, the poller and the tools.

- auth: `Authorization: Bearer <PRIMA_API_KEY>`; timeouts: PRIMA_TIMEOUT_SECONDS;
- one classification of failures: a transport error (timeout, refused or reset connection), a
  5xx, 408 or 429 is `PrimaUnavailable` (transient: worth retrying); any other 4xx is
  `PrimaRejected` with Prima's error code and message (retrying the same request cannot help); a
  2xx whose body is not what the contract says is `PrimaBadResponse`;
- retries: `call(..., retry=True)` retries PrimaUnavailable with exponential backoff and jitter
  (PRIMA_MAX_ATTEMPTS, PRIMA_BACKOFF_*), then raises it with the number of attempts;
- idempotency: a command's request carries `Idempotency-Key`;
- paging: `pages()` follows Prima's `next_cursor`;
- look-ups: `find_sales_orders(external_reference)` (the gateway adopts what Prima already holds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from services.platform.settings import Settings

ITEMS_PAGE_MAX = 500  # Prima's limit on GET /v1/items


class PrimaError(Exception):
    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class PrimaUnavailable(PrimaError):
    """Prima, or the way to it, failed: not the request's fault. Worth retrying."""


class PrimaRejected(PrimaError):
    """Prima refused the request (a 4xx other than 408/429)."""

    def __init__(self, status_code: int, code: str, message: str, *, attempts: int = 1) -> None:
        super().__init__(f"HTTP {status_code} {code}: {message}", attempts=attempts)
        self.status_code = status_code
        self.code = code
        self.reason = message


class PrimaBadResponse(PrimaError):
    """A 2xx whose body is not what the contract says."""


def is_transient(status_code: int) -> bool:
    return status_code >= 500 or status_code in (408, 429)


def error_of(response: httpx.Response) -> tuple[str, str]:
    """Prima's error code and message from an error body ({"error": {"code", "message"}})."""
    try:
        error = response.json()["error"]
        return str(error.get("code", "error")), str(error.get("message", ""))[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"http_{response.status_code}", response.text[:500]


@dataclass(frozen=True)
class PrimaResponse:
    status_code: int
    body: Any
    headers: httpx.Headers
    attempts: int


class PrimaClient:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(
            base_url=settings.prima_base_url,
            headers={"Authorization": f"Bearer {settings.prima_api_key.get_secret_value()}"},
            timeout=httpx.Timeout(settings.prima_timeout_seconds),
            # no more connections than calls in flight: httpcore looks at every pooled connection
            # on each request
            limits=httpx.Limits(max_connections=settings.prima_concurrency,
                                max_keepalive_connections=settings.prima_concurrency),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> PrimaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _once(self, method: str, path: str, params: dict[str, Any] | None, json: Any,
                    idempotency_key: str | None) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            response = await self.http.request(method, path, params=params, json=json, headers=headers)
        except httpx.TransportError as exc:  # timeouts, refused connections, resets
            raise PrimaUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if is_transient(response.status_code):
            code, message = error_of(response)
            raise PrimaUnavailable(f"{method} {path} answered {response.status_code} {code}: {message}")
        if response.status_code >= 400:
            code, message = error_of(response)
            raise PrimaRejected(response.status_code, code, message)
        return response

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                   idempotency_key: str | None = None, retry: bool = False) -> PrimaResponse:
        """One request (or, with `retry`, up to PRIMA_MAX_ATTEMPTS while Prima is unavailable)."""
        attempts = 0
        s = self.settings
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(s.prima_max_attempts if retry else 1),
                wait=wait_exponential_jitter(multiplier=s.prima_backoff_initial_seconds, max=s.prima_backoff_max_seconds),
                retry=retry_if_exception_type(PrimaUnavailable), reraise=True,
            ):
                with attempt:
                    attempts += 1
                    response = await self._once(method, path, params, json, idempotency_key)
        except PrimaError as exc:
            exc.attempts = attempts
            raise
        try:
            body = response.json() if response.content else None
        except ValueError as exc:
            raise PrimaBadResponse(f"{method} {path}: the body is not JSON: {response.text[:300]!r}",
                                   attempts=attempts) from exc
        return PrimaResponse(response.status_code, body, response.headers, attempts)

    async def get(self, path: str, **params: Any) -> Any:
        return (await self.call("GET", path, params={k: v for k, v in params.items() if v is not None})).body

    async def find_sales_orders(self, external_reference: str) -> list[dict[str, Any]]:
        """The sales orders Prima holds with this external reference (at most one)."""
        body = await self.get("/v1/sales-orders", external_reference=external_reference)
        try:
            return list(body["sales_orders"])
        except (KeyError, TypeError) as exc:
            raise PrimaBadResponse("GET /v1/sales-orders: no 'sales_orders' list in the answer") from exc

    async def pages(self, path: str, field: str, **params: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of a cursor-paged list, until Prima's next_cursor is empty."""
        cursor = params.pop("cursor", None)
        while True:
            body = await self.get(path, cursor=cursor, **params)
            try:
                rows, cursor = body[field], body.get("next_cursor")
            except (KeyError, TypeError, AttributeError) as exc:
                raise PrimaBadResponse(f"GET {path}: no {field!r} list in the page") from exc
            yield rows
            if not cursor:
                return
