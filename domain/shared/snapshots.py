"""Snapshots of aggregates that come back exactly as they were taken.

The eventsourcing library's own Snapshot stores an aggregate's attributes through the JSON
transcoder, which loses types silently: a StrEnum comes back as a plain str (so `order.state is
OrderState.FAILED` turns false and a parked order would issue a second sales-order command), a
tuple as a list, an int dict key as a str. An aggregate loaded from such a snapshot decides
differently from the same aggregate replayed from its events.

`AggregateSnapshot` packs each attribute with its type (enum members, tuples, sets, dicts with
any keys, dataclass values field by field) and unpacks it on load; what JSON keeps as it is
(str, int, float, bool, None, lists) stays as it is, and the leaves the transcoder knows
(datetime, UUID, Decimal) are left to it. It also records a fingerprint of the aggregate's
class (its source and the library's version): a snapshot taken by other code (an attribute was
added, an event applies differently) is refused (`SnapshotOutdated`) and the aggregate is
replayed from its events instead. `same_state` compares two states strictly (types included);
the application checks every snapshot with it before storing one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
from datetime import datetime
from enum import Enum
from functools import cache
from importlib.metadata import version
from typing import Any, cast

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic, resolve_topic

PLAIN = (str, int, float, bool, type(None))
NOT_STATE = ("_id", "_version", "_pending_events")


class SnapshotOutdated(Exception):
    """The snapshot was taken by another version of the aggregate's class: replay instead."""


class NotSnapshottable(TypeError):
    """An attribute holds a value a snapshot cannot carry exactly."""


@cache
def fingerprint(cls: type) -> str:
    """What the shape of an aggregate's state depends on: the source of its classes (its own and
    its bases') and the eventsourcing library's version."""
    digest = hashlib.sha256(f"eventsourcing {version('eventsourcing')}".encode())
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            source = f"{klass.__module__}:{klass.__qualname__}"
        digest.update(source.encode())
    return digest.hexdigest()[:32]


def pack(value: Any, path: str = "") -> Any:
    """A value as JSON keeps it, with the types JSON would lose made explicit."""
    kind = type(value)
    if isinstance(value, Enum):
        return {"_enum_": [get_topic(kind), pack(value.value, path)]}
    if kind in PLAIN:
        return value
    if kind is list:
        return [pack(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return {"_tuple_": [pack(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if kind is set or kind is frozenset:
        return {f"_{kind.__name__}_": [pack(v, f"{path}{{}}") for v in value]}
    if kind is dict:
        return {"_dict_": [[pack(k, f"{path}<key>"), pack(v, f"{path}[{k!r}]")] for k, v in value.items()]}
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        if any(not f.init for f in fields):
            raise NotSnapshottable(f"{path}: {kind.__qualname__} has fields its constructor does not take")
        return {"_value_": [get_topic(kind),
                            {f.name: pack(getattr(value, f.name), f"{path}.{f.name}") for f in fields}]}
    if isinstance(value, PLAIN + (list, tuple, dict, set, frozenset)):
        raise NotSnapshottable(f"{path}: a {kind.__qualname__} would come back as a {kind.__mro__[1].__name__}")
    return value  # datetime, UUID, Decimal: the transcoder's own transcodings (or its error)


def unpack(value: Any) -> Any:
    if type(value) is list:
        return [unpack(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) != 1:
        raise ValueError(f"not a packed value: {sorted(value)}")
    [(marker, data)] = value.items()
    if marker == "_tuple_":
        return tuple(unpack(v) for v in data)
    if marker == "_set_":
        return {unpack(v) for v in data}
    if marker == "_frozenset_":
        return frozenset(unpack(v) for v in data)
    if marker == "_dict_":
        return {unpack(k): unpack(v) for k, v in data}
    if marker == "_enum_":
        return resolve_topic(data[0])(unpack(data[1]))
    if marker == "_value_":
        return resolve_topic(data[0])(**{name: unpack(v) for name, v in data[1].items()})
    raise ValueError(f"not a packed value: {marker}")


class AggregateSnapshot(Snapshot):
    """A snapshot whose state is {"fingerprint": ..., "attributes": packed attributes}."""

    @classmethod
    def take(cls, aggregate: Any) -> AggregateSnapshot:
        attributes = {name: value for name, value in vars(aggregate).items() if name not in NOT_STATE}
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state={"fingerprint": fingerprint(type(aggregate)), "attributes": pack(attributes)},
        )

    def mutate(self, _: None) -> Aggregate:
        cls = cast(type[Aggregate], resolve_topic(self.topic))
        if self.state.get("fingerprint") != fingerprint(cls):
            raise SnapshotOutdated(f"{cls.__qualname__} {self.originator_id} v{self.originator_version}: "
                                   "taken by another version of the class")
        attributes = unpack(self.state["attributes"])
        attributes.update(_id=self.originator_id, _version=self.originator_version, _pending_events=[])
        aggregate = object.__new__(cls)
        object.__setattr__(aggregate, "__dict__", attributes)
        return aggregate


def state_of(aggregate: Any) -> dict[str, Any]:
    """An aggregate's attributes by name (their order means nothing), without the events it has
    not saved yet."""
    return {name: value for name, value in sorted(vars(aggregate).items()) if name != "_pending_events"}


def same_state(expected: Any, found: Any, path: str = "") -> list[str]:
    """Where two states differ, types included (a tuple is not a list, a StrEnum member is not
    its str, a dict's order counts); an empty list when they are the same."""
    if type(expected) is not type(found):
        return [(f"{path or '.'}: {type(expected).__qualname__} {expected!r} came back as "
                 f"{type(found).__qualname__} {found!r}")]
    if isinstance(expected, dict):
        if list(expected) != list(found):
            return [f"{path or '.'}: keys {list(expected)!r} came back as {list(found)!r}"]
        return [d for k in expected for d in same_state(expected[k], found[k], f"{path}[{k!r}]")]
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(found):
            return [f"{path or '.'}: {len(expected)} items came back as {len(found)}"]
        return [d for i, (a, b) in enumerate(zip(expected, found)) for d in same_state(a, b, f"{path}[{i}]")]
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        return [d for f in dataclasses.fields(expected)
                for d in same_state(getattr(expected, f.name), getattr(found, f.name), f"{path}.{f.name}")]
    if isinstance(expected, datetime):
        same = expected == found and expected.utcoffset() == found.utcoffset()
    elif isinstance(expected, float) and math.isnan(expected):
        same = math.isnan(found)
    else:
        same = expected == found
    return [] if same else [f"{path or '.'}: {expected!r} came back as {found!r}"]
