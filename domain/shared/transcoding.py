"""Event-store transcodings for the domain's value types (frozen dataclasses).

The aggregates' events carry domain values (Money, order lines, a sales order, an inventory
push), never dumps of wire models: a new wire version is then a change of the translation at
the edge, not an event-store migration. The eventsourcing library's JSON transcoder stores each
value as {"_type_": name, "_data_": its fields}; `register_values` registers one transcoding per
value type. A tuple field comes back as a tuple (JSON has only lists).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding


def _transcoding(cls: type) -> Transcoding:
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: a stored value type is a frozen dataclass")
    names = tuple(f.name for f in dataclasses.fields(cls))

    class ValueAsDict(Transcoding):
        type = cls
        name = f"{cls.__module__}:{cls.__qualname__}"

        def encode(self, obj: Any) -> dict[str, Any]:
            return {field: getattr(obj, field) for field in names}

        def decode(self, data: dict[str, Any]) -> Any:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    return ValueAsDict()


def register_values(transcoder: JSONTranscoder, *classes: type) -> None:
    for cls in classes:
        transcoder.register(_transcoding(cls))
