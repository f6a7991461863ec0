"""Shopify Admin GraphQL as this integration uses it: the schema and every document sent.

The schema is Shopify's published introspection for 2025-01, extended by `extension.graphql`
with what changed up to the pinned version (changeFromQuantity, @idempotent). Every document the
Shopify gateway and the catalogue reader send is a file in `operations/`, loaded by name with
`document("InventorySetQuantities")`; tests validate each one against this schema, and the
Shopify sandbox executes requests against the same schema.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

from graphql import GraphQLSchema, build_client_schema, extend_schema, parse, validate
from graphql.error import GraphQLError

HERE = Path(__file__).parent
INTROSPECTION = HERE / "shopify-admin-graphql-2025-01.introspection.json.gz"
EXTENSION = HERE / "extension.graphql"
OPERATIONS = HERE / "operations"


@cache
def admin_schema() -> GraphQLSchema:
    with gzip.open(INTROSPECTION, "rt", encoding="utf-8") as handle:
        introspection = json.load(handle)
    base = build_client_schema(introspection.get("data", introspection), assume_valid=True)
    schema = extend_schema(base, parse(EXTENSION.read_text()), assume_valid=True)
    # graphql-core 3.3 rejects some of Shopify's deprecation markings when it validates the
    # schema itself; the schema is Shopify's, so documents are validated against it as it is.
    schema._validation_errors = []  # noqa: SLF001
    return schema


def operation_names() -> list[str]:
    return sorted(path.stem for path in OPERATIONS.glob("*.graphql"))


@cache
def document(name: str) -> str:
    """The text of operations/<name>.graphql (KeyError-like FileNotFoundError if absent)."""
    return (OPERATIONS / f"{name}.graphql").read_text()


def validation_errors(source: str) -> list[GraphQLError]:
    return list(validate(admin_schema(), parse(source)))
