"""The warehouse cut-off: until when a sales order may still be changed by Shopify's edits and
cancellations (the integration owns this rule: DESIGN.md, ownership rules).

From configuration (settings.order_cutoff, validated at start-up):
- `status`: the first Prima sales-order status at which changes stop. Prima's statuses go
  open -> released_to_warehouse -> picking -> despatched (cancelled apart). With "picking", an
  order released to the warehouse may still be amended until picking starts.
- `daily_time` (optional, with `timezone`): the warehouse also takes each day's orders at this
  local time: a sales order created in Prima before today's time is past the cut-off once that
  time has passed; one created after it, at the same time the next day.

Two places apply it. The Order decides with what it knows (the status Prima last answered, the
time); and every amendment or cancellation it sends names the statuses it is valid for
(`changeable_statuses`), so Prima refuses it if the warehouse moved on meanwhile: the rule holds
even when the status the Order knows is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

# Prima's sales-order statuses in the order the warehouse moves an order through them.
STATUS_FLOW = ("open", "released_to_warehouse", "picking", "despatched")
CANCELLED = "cancelled"
STATUS_ALIASES = {"released": "released_to_warehouse"}


class CutoffRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str = "released_to_warehouse"
    daily_time: time | None = None
    timezone: str = "UTC"

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: object) -> object:
        value = STATUS_ALIASES.get(value, value) if isinstance(value, str) else value
        if value not in STATUS_FLOW[1:]:
            raise ValueError(f"the cut-off status is one of {', '.join(STATUS_FLOW[1:])} (or 'released'), "
                             f"got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Dublin)") from None
        return value

    @property
    def changeable_statuses(self) -> tuple[str, ...]:
        """The statuses before the cut-off: an amendment or cancellation is valid only in these."""
        return STATUS_FLOW[: STATUS_FLOW.index(self.status)]

    def deadline(self, created_in_prima_at: datetime | None) -> datetime | None:
        """When the daily time cuts the sales order off (None without a daily time)."""
        if self.daily_time is None or created_in_prima_at is None:
            return None
        zone = ZoneInfo(self.timezone)
        local = created_in_prima_at.astimezone(zone)
        cut = datetime.combine(local.date(), self.daily_time, tzinfo=zone)
        if local >= cut:
            cut = datetime.combine(local.date() + timedelta(days=1), self.daily_time, tzinfo=zone)
        return cut.astimezone(UTC)

    def passed(self, status: str | None, created_in_prima_at: datetime | None, now: datetime) -> CutoffPassed | None:
        """Why the sales order can no longer be changed, or None while it can."""
        if status == CANCELLED:
            return CutoffPassed(status, None, f"the sales order is {CANCELLED} in Prima")
        if status is not None and status not in self.changeable_statuses:
            return CutoffPassed(status, None, f"the sales order is {status} in Prima (changes stop at {self.status})")
        deadline = self.deadline(created_in_prima_at)
        if deadline is not None and now >= deadline:
            return CutoffPassed(status, deadline, f"the warehouse took it at {deadline.isoformat()} "
                                                  f"(daily cut-off {self.daily_time:%H:%M} {self.timezone})")
        return None


@dataclass(frozen=True)
class CutoffPassed:
    status: str | None
    deadline: datetime | None
    reason: str
