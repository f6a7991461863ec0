"""Fault switches: injected errors, timeouts and latency, decided per request.

Two kinds. Before any work: `fail_next` and `timeout_next` answer an error (at once, or after
`timeout_seconds`) and do nothing. After the work: `commit_then_timeout_next` and
`commit_then_drop_next` let the route run (a sales order is created and committed), then hold
the answer for `commit_then_delay_seconds` (a client with a shorter timeout has given up by then)
or close the connection without an answer: Prima did it, the caller never heard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from .models import FaultConfig

Fault = Literal["fail", "timeout"]
AfterWork = Literal["commit_then_timeout", "commit_then_drop"]
COUNTERS = ("failures", "timeouts", "delayed", "commit_then_timeouts", "commit_then_drops")


@dataclass
class Faults:
    config: FaultConfig = field(default_factory=FaultConfig)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def matches(self, method: str, path: str) -> bool:
        return (not path.startswith("/_sandbox")
                and path.startswith(self.config.path_prefix)
                and (self.config.method is None or self.config.method.upper() == method))

    def wants_body(self, method: str, path: str) -> bool:
        """Whether a matching request's body must be read to decide (`body_contains`)."""
        return self.config.body_contains is not None and self.matches(method, path)

    async def apply(self, method: str, path: str, body: bytes | None = None) -> Fault | AfterWork | None:
        """Delay a matching request, then say which fault (if any) it gets: "fail" and
        "timeout" answer instead of the route; the commit_then_* ones after it ran."""
        if not self.matches(method, path):
            return None
        if self.config.body_contains is not None and (
                body is None or self.config.body_contains.encode() not in body):
            return None
        if self.config.latency_ms:
            self.counters["delayed"] += 1
            await asyncio.sleep(self.config.latency_ms / 1000)
        # No await between test and decrement: concurrent requests cannot take the same fault.
        if self.config.fail_next > 0:
            self.config.fail_next -= 1
            self.counters["failures"] += 1
            return "fail"
        if self.config.timeout_next > 0:
            self.config.timeout_next -= 1
            self.counters["timeouts"] += 1
            await asyncio.sleep(self.config.timeout_seconds)
            return "timeout"
        if self.config.commit_then_timeout_next > 0:
            self.config.commit_then_timeout_next -= 1
            self.counters["commit_then_timeouts"] += 1
            return "commit_then_timeout"
        if self.config.commit_then_drop_next > 0:
            self.config.commit_then_drop_next -= 1
            self.counters["commit_then_drops"] += 1
            return "commit_then_drop"
        return None

    def state(self) -> dict:
        return {"faults": self.config.model_dump(), "counters": dict(self.counters)}

    def clear(self) -> None:
        self.config = FaultConfig()

    def reset(self) -> None:
        self.clear()
        self.counters = dict.fromkeys(self.counters, 0)
