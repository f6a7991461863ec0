"""Every state a test drives an aggregate into must survive a snapshot.

`SnapshotCheck.install` wraps the eventsourcing library's two ways an aggregate changes in a
decision (creation and `trigger_event`, which every `@event` method goes through): after each
event, the aggregate is snapshotted as the application does it (AggregateSnapshot, through the
transcoder of the application that snapshots that class), decoded, and compared with the
aggregate, types included. The conftest of each flow's tests installs it for every test, so the
states reached by every scenario the tests build (today's and those added later, new states of
Order included) are checked without a list of states to keep up to date.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import pytest
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import Mapper

from domain.shared.snapshots import AggregateSnapshot, same_state, state_of


@cache
def mappers() -> dict[type, Mapper]:
    """Aggregate class -> the mapper (transcoder) of the application that snapshots it."""
    from domain.inventory.application import InventoryApplication
    from domain.orders.application import OrderApplication

    found: dict[type, Mapper] = {}
    for application in (OrderApplication, InventoryApplication):
        app = application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        for cls in app.snapshotting_intervals:
            found[cls] = app.mapper
    return found


def round_trip(aggregate: Any, snapshot_class: type = AggregateSnapshot) -> list[str]:
    """How the aggregate differs after a snapshot's round trip (empty: not at all)."""
    mapper = mappers()[type(aggregate)]
    try:
        back = mapper.to_domain_event(mapper.to_stored_event(snapshot_class.take(aggregate))).mutate(None)
    except Exception as error:  # noqa: BLE001
        return [f"{type(error).__name__}: {error}"]
    return same_state(state_of(aggregate), state_of(back))


class SnapshotCheck:
    def __init__(self) -> None:
        self.checked: Counter[str] = Counter()  # aggregate class -> states checked
        self.failures: list[str] = []

    def check(self, aggregate: Any, after: str) -> None:
        if type(aggregate) not in mappers():
            return  # no application snapshots this class
        self.checked[type(aggregate).__name__] += 1
        for difference in round_trip(aggregate):
            self.failures.append(f"{type(aggregate).__name__} v{aggregate.version} after {after}: {difference}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        create = BaseAggregate.__dict__["_create"].__func__
        trigger = BaseAggregate.trigger_event
        check = self.check

        def _create(cls: type, event_class: type, **kwargs: Any) -> Any:
            aggregate = create(cls, event_class, **kwargs)
            check(aggregate, event_class.__name__)
            return aggregate

        def trigger_event(self: Any, event_class: type, **kwargs: Any) -> None:
            trigger(self, event_class, **kwargs)
            check(self, event_class.__name__)

        monkeypatch.setattr(BaseAggregate, "_create", classmethod(_create))
        monkeypatch.setattr(BaseAggregate, "trigger_event", trigger_event)

    def verify(self) -> None:
        if self.failures:
            shown = "\n".join(dict.fromkeys(self.failures))
            pytest.fail(f"states that a snapshot does not bring back as they were:\n{shown}", pytrace=False)
