"""Everything the Shopify sandbox keeps in its one process: the shop (store.py), the cost buckets,
idempotency records, bulk operations, fault switches and counters."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sandboxes.shopify.bulk import BulkManager
from sandboxes.shopify.cost import PLANS, Bucket
from sandboxes.shopify.fulfillments import FulfillmentBook
from sandboxes.shopify.order_queries import OrderBook
from sandboxes.shopify.payouts import PayoutBook
from sandboxes.shopify.store import Store

IDEMPOTENCY_RETENTION_SECONDS = 24 * 3600  # Shopify keeps @idempotent keys for 24 hours


@dataclass
class Stats:
    requests: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    mutation_calls: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    points_requested: int = 0
    points_actual: int = 0
    quantities_set: int = 0
    bulk_operations: int = 0
    idempotent_replays: int = 0
    stale_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


FAULT_KEYS = ("throttle_storm_seconds", "drain_bucket", "fail_next", "fail_status", "graphql_error_next",
              "concurrent_change_next", "latency_ms")


@dataclass
class Faults:
    """Switches for the Admin API (/admin/api/...) only; a POST replaces all of them."""

    storm_until: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    graphql_error_next: int = 0
    concurrent_change_next: int = 0
    latency_ms: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("http_failures", "graphql_errors", "storm_throttled", "concurrent_changes", "delayed", "drained"), 0))

    def set(self, body: dict[str, Any], bucket: Bucket) -> None:
        unknown = sorted(set(body) - set(FAULT_KEYS))
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {list(FAULT_KEYS)}")
        ints = {k: body.get(k, 0) for k in ("fail_next", "graphql_error_next", "concurrent_change_next", "latency_ms")}
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        storm = body.get("throttle_storm_seconds", 0)
        if not isinstance(storm, (int, float)) or isinstance(storm, bool) or storm < 0:
            raise ValueError("throttle_storm_seconds must be a non-negative number")
        status = body.get("fail_status", 503)
        if status not in (500, 502, 503, 504):
            raise ValueError("fail_status must be 500, 502, 503 or 504")
        self.fail_next, self.graphql_error_next = ints["fail_next"], ints["graphql_error_next"]
        self.concurrent_change_next, self.latency_ms = ints["concurrent_change_next"], ints["latency_ms"]
        self.fail_status = status
        self.storm_until = time.monotonic() + storm if storm else 0.0
        if body.get("drain_bucket"):
            bucket.drain()
            self.counters["drained"] += 1

    def clear(self) -> None:
        self.storm_until, self.fail_next, self.fail_status = 0.0, 0, 503
        self.graphql_error_next = self.concurrent_change_next = self.latency_ms = 0

    def state(self) -> dict[str, Any]:
        return {"faults": {"throttle_storm_remaining_seconds": round(max(0.0, self.storm_until - time.monotonic()), 3),
                           "fail_next": self.fail_next, "fail_status": self.fail_status,
                           "graphql_error_next": self.graphql_error_next,
                           "concurrent_change_next": self.concurrent_change_next, "latency_ms": self.latency_ms},
                "counters": dict(self.counters)}

    async def delay(self) -> None:
        if self.latency_ms:
            self.counters["delayed"] += 1
            await asyncio.sleep(self.latency_ms / 1000)

    def take(self, name: str) -> bool:
        """Consume one of fail_next / graphql_error_next / concurrent_change_next (no await between
        test and decrement, so two requests cannot take the same one)."""
        if getattr(self, name) > 0:
            setattr(self, name, getattr(self, name) - 1)
            counter = {"fail_next": "http_failures", "graphql_error_next": "graphql_errors",
                       "concurrent_change_next": "concurrent_changes"}[name]
            self.counters[counter] += 1
            return True
        return False

    def storming(self) -> bool:
        if self.storm_until and time.monotonic() < self.storm_until:
            self.counters["storm_throttled"] += 1
            return True
        return False


@dataclass
class IdempotencyRecord:
    field: str
    fingerprint: str
    payload: dict[str, Any]
    at: float


class ShopState:
    def __init__(self, access_token: str, plan: str = "standard") -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; plans: {sorted(PLANS)}")
        self.access_token = access_token
        self.plan = plan
        self.store = Store()
        self.orders = OrderBook()  # the shop's orders (order_queries.py)
        self.payouts = PayoutBook()  # Shopify Payments payouts (payouts.py)
        self.fulfillments = FulfillmentBook(self.store, self.orders)  # fulfillment orders (fulfillments.py)
        self.stats = Stats()
        self.faults = Faults()
        self.bulk = BulkManager()
        self._buckets: dict[str, Bucket] = {}
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}

    def bucket(self, token: str) -> Bucket:
        bucket = self._buckets.get(token)
        if bucket is None:
            bucket = self._buckets[token] = Bucket(PLANS[self.plan])
        return bucket

    def set_plan(self, plan: str) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; plans: {sorted(PLANS)}")
        self.plan = plan
        for bucket in self._buckets.values():
            bucket.set_rate(PLANS[plan])

    def remembered(self, token: str, key: str) -> IdempotencyRecord | None:
        record = self._idempotency.get((token, key))
        if record is not None and time.monotonic() - record.at > IDEMPOTENCY_RETENTION_SECONDS:
            del self._idempotency[(token, key)]
            return None
        return record

    def remember(self, token: str, key: str, field_name: str, fingerprint: str, payload: dict[str, Any]) -> None:
        self._idempotency[(token, key)] = IdempotencyRecord(field_name, fingerprint, payload, time.monotonic())

    def reset(self) -> None:
        self.store.reset()
        self.orders.reset()
        self.payouts.reset()
        self.fulfillments.reset()
        self.stats = Stats()
        self.faults = Faults()
        self.bulk.reset()
        self._idempotency.clear()
        for bucket in self._buckets.values():
            bucket.fill()
