"""Fault switches: injected errors, timeouts and latency, decided per request before any work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from .models import FaultConfig

Fault = Literal["fail", "timeout"]


@dataclass
class Faults:
    config: FaultConfig = field(default_factory=FaultConfig)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("failures", "timeouts", "delayed"), 0))

    def matches(self, method: str, path: str) -> bool:
        return (not path.startswith("/_sandbox")
                and path.startswith(self.config.path_prefix)
                and (self.config.method is None or self.config.method.upper() == method))

    async def apply(self, method: str, path: str) -> Fault | None:
        """Delay a matching request, then say which fault (if any) it gets."""
        if not self.matches(method, path):
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
        return None

    def state(self) -> dict:
        return {"faults": self.config.model_dump(), "counters": dict(self.counters)}

    def clear(self) -> None:
        self.config = FaultConfig()

    def reset(self) -> None:
        self.clear()
        self.counters = dict.fromkeys(self.counters, 0)
