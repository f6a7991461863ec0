"""Every GraphQL document the integration sends is valid against Shopify's Admin schema
(2025-01 introspection + contracts/shopify_admin/extension.graphql)."""

import pytest
from graphql import parse

from contracts.shopify_admin import admin_schema, document, operation_names, validation_errors


@pytest.mark.parametrize("name", operation_names())
def test_document_is_valid_against_the_admin_schema(name):
    assert validation_errors(document(name)) == []


def test_every_operation_the_integration_uses_is_a_file():
    assert {"InventorySetQuantities", "InventoryLevels", "BulkOperationRunQuery", "BulkOperation",
            "CatalogInventoryBulk", "ProductSetStatus", "Locations", "InventoryItemsBySku"} <= set(
        operation_names())


def test_named_operations_match_their_file_names():
    for name in operation_names():
        ops = [d for d in parse(document(name)).definitions if hasattr(d, "operation")]
        assert len(ops) == 1, name
        if ops[0].name is not None:
            assert ops[0].name.value == name


def test_the_extension_adds_compare_and_set_and_idempotency():
    schema = admin_schema()
    assert "changeFromQuantity" in schema.get_type("InventoryQuantityInput").fields
    assert "CHANGE_FROM_QUANTITY_STALE" in schema.get_type("InventorySetQuantitiesUserErrorCode").values
    assert schema.get_directive("idempotent") is not None


def test_a_wrong_field_is_caught():
    bad = document("InventorySetQuantities").replace("referenceDocumentUri\n", "referenceDocumentURL\n")
    assert validation_errors(bad)
