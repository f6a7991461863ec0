"""The Admin API mutations the integration sends: inventorySetQuantities, productUpdate,
bulkOperationRunQuery, with Shopify's validation, userErrors and idempotency.

inventorySetQuantities (https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities):
- `name` is available or on_hand (INVALID_NAME); `reason` is one of Shopify's documented reasons
  (INVALID_REASON); referenceDocumentUri must be a URI (INVALID_REFERENCE_DOCUMENT).
- At most 250 quantities: more is a top-level MAX_INPUT_SIZE_EXCEEDED error, nothing runs.
- Per quantity: unknown item (INVALID_INVENTORY_ITEM) or location (INVALID_LOCATION); the same
  item and location twice (NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR); the item not stocked
  there (ITEM_NOT_STOCKED_AT_LOCATION, until 2026-10 where Shopify stocks it); negative
  (INVALID_QUANTITY_NEGATIVE) or above 1,000,000,000 (INVALID_QUANTITY_TOO_HIGH).
- Compare-and-set, from 2026-04: every quantity must carry changeFromQuantity (absent ->
  COMPARE_QUANTITY_REQUIRED on ["input","quantities","<i>","changeFromQuantity"]: Shopify documents
  "omitting changeFromQuantity returns an error" without a dedicated code, and no
  CHANGE_FROM_QUANTITY_REQUIRED exists up to 2026-10, so the existing "compare quantity required"
  code is used); an explicit null opts out; a value different from the persisted quantity ->
  CHANGE_FROM_QUANTITY_STALE on the same field. Before 2026-04: changeFromQuantity if given, else
  compareQuantity unless ignoreCompareQuantity (COMPARE_QUANTITY_REQUIRED / COMPARE_QUANTITY_STALE).
- Atomic: any userError and nothing changes. Success: one InventoryAdjustmentGroup whose changes
  list the set quantity and the one it moves with it (available and on_hand), every adjustment
  recorded for GET /_sandbox/adjustments.
- @idempotent(key:) is required from 2026-04 (a top-level error without it: Shopify "will result in
  an error at runtime"). A key seen before (24 h retention) with the same arguments returns the
  first response again and applies nothing, also when that response carried userErrors; with
  different arguments -> userError IDEMPOTENCY_KEY_PARAMETER_MISMATCH ("The same idempotency key
  cannot be used with different operation parameters."), nothing applied. So after a
  CHANGE_FROM_QUANTITY_STALE a retry with new changeFromQuantity values needs a new key.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graphql import GraphQLError
from graphql.execution.values import get_directive_values

from sandboxes.shopify.resolvers import MUTATIONS, Ctx
from sandboxes.shopify.store import Change, now_iso

REASONS = ("correction", "cycle_count_available", "damaged", "movement_created", "movement_received",
           "movement_updated", "other", "promotion", "quality_control", "received", "reservation_created",
           "reservation_deleted", "reservation_updated", "restock", "safety_stock", "shrinkage")
MAX_INPUT_ARRAY = 250
MAX_QUANTITY = 1_000_000_000
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def _error(field: list[str] | None, message: str, code: str | None) -> dict[str, Any]:
    return {"field": field, "message": message, "code": code}


def _count(ctx: Ctx, name: str) -> None:
    calls = ctx.state.stats.mutation_calls
    calls[name] = calls.get(name, 0) + 1


def idempotency_key(info: Any) -> str | None:
    directive = info.schema.get_directive("idempotent")
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values) if directive else None
    return values["key"] if values else None


def inventory_set_quantities(args: dict[str, Any], ctx: Ctx, info: Any) -> dict[str, Any]:
    _count(ctx, "inventorySetQuantities")
    state, store = ctx.state, ctx.store
    key = idempotency_key(info)
    if key is None and ctx.version >= "2026-04":
        raise GraphQLError("The @idempotent directive is required for this mutation from API version 2026-04: "
                           "add @idempotent(key: \"<unique key>\") to inventorySetQuantities.",
                           extensions={"code": "BAD_REQUEST"})
    data = args["input"]
    quantities = data["quantities"]
    if len(quantities) > MAX_INPUT_ARRAY:
        raise GraphQLError(f"The input array size of {len(quantities)} is greater than the maximum allowed of "
                           f"{MAX_INPUT_ARRAY}.", extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"})
    fingerprint = json.dumps(args, sort_keys=True, separators=(",", ":"))
    if key is not None:
        record = state.remembered(ctx.token, key)
        if record is not None:
            if record.field == "inventorySetQuantities" and record.fingerprint == fingerprint:
                state.stats.idempotent_replays += 1
                return record.payload
            return {"inventoryAdjustmentGroup": None, "userErrors": [_error(
                None, "The same idempotency key cannot be used with different operation parameters.",
                "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")]}

    if state.faults.take("concurrent_change_next"):  # another writer (a sale) gets there first
        for q in quantities:
            item, location = store.item(q["inventoryItemId"]), store.location(q["locationId"])
            level = item.levels.get(location.num) if item and location else None
            if level is not None:
                level.available -= 1
                level.committed += 1
                level.updated_at = now_iso()

    payload = _set_quantities(ctx, data, key)
    if key is not None:
        state.remember(ctx.token, key, "inventorySetQuantities", fingerprint, payload)
    return payload


def _set_quantities(ctx: Ctx, data: dict[str, Any], key: str | None) -> dict[str, Any]:
    state, store = ctx.state, ctx.store
    cas_required = ctx.version >= "2026-04"
    auto_stock = ctx.version >= "2026-10"
    errors: list[dict[str, Any]] = []
    name, reason, reference = data["name"], data["reason"], data.get("referenceDocumentUri")
    name_ok = name in ("available", "on_hand")
    if not name_ok:
        errors.append(_error(["input", "name"], "The quantity name must be either 'available' or 'on_hand'.", "INVALID_NAME"))
    if reason not in REASONS:
        errors.append(_error(["input", "reason"], "The specified reason is invalid.", "INVALID_REASON"))
    if reference is not None and not _URI.match(reference):
        errors.append(_error(["input", "referenceDocumentUri"], "The specified reference document is invalid.",
                             "INVALID_REFERENCE_DOCUMENT"))
    seen: set[tuple[int, int]] = set()
    targets = []
    stale = 0
    for i, q in enumerate(data["quantities"]):
        at = ["input", "quantities", str(i)]
        item = store.item(q["inventoryItemId"])
        if item is None:
            errors.append(_error([*at, "inventoryItemId"], "The specified inventory item could not be found.",
                                 "INVALID_INVENTORY_ITEM"))
            continue
        location = store.location(q["locationId"])
        if location is None:
            errors.append(_error([*at, "locationId"], "The specified location could not be found.", "INVALID_LOCATION"))
            continue
        if (item.num, location.num) in seen:
            errors.append(_error(at, "The combination of inventoryItemId and locationId must be unique.",
                                 "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"))
            continue
        seen.add((item.num, location.num))
        level = item.levels.get(location.num)
        if level is None and not auto_stock:
            errors.append(_error([*at, "locationId"], "The specified inventory item is not stocked at the location.",
                                 "ITEM_NOT_STOCKED_AT_LOCATION"))
            continue
        quantity = q["quantity"]
        if quantity < 0:
            errors.append(_error([*at, "quantity"], "The quantity can't be negative.", "INVALID_QUANTITY_NEGATIVE"))
            continue
        if quantity > MAX_QUANTITY:
            errors.append(_error([*at, "quantity"], "The total quantity can't be higher than 1,000,000,000.",
                                 "INVALID_QUANTITY_TOO_HIGH"))
            continue
        current = (level.quantity(name) if level else 0) if name_ok else None
        if cas_required or q.get("changeFromQuantity") is not None:
            if "changeFromQuantity" not in q:
                errors.append(_error([*at, "changeFromQuantity"],
                                     "The changeFromQuantity argument must be given to each quantity; pass null to "
                                     "opt out of the compare-and-set check.", "COMPARE_QUANTITY_REQUIRED"))
                continue
            expected = q["changeFromQuantity"]
            if expected is not None and name_ok and expected != current:
                stale += 1
                errors.append(_error([*at, "changeFromQuantity"],
                                     "The changeFromQuantity value does not match persisted value.",
                                     "CHANGE_FROM_QUANTITY_STALE"))
                continue
        elif not data.get("ignoreCompareQuantity"):
            if q.get("compareQuantity") is None:
                errors.append(_error([*at, "compareQuantity"], "The compareQuantity argument must be given to each "
                                     "quantity or ignored using ignoreCompareQuantity.", "COMPARE_QUANTITY_REQUIRED"))
                continue
            if name_ok and q["compareQuantity"] != current:
                errors.append(_error([*at, "compareQuantity"], "The compareQuantity value does not match persisted value.",
                                     "COMPARE_QUANTITY_STALE"))
                continue
        targets.append((item, location, level, quantity))
    if errors:
        state.stats.stale_errors += stale
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}

    group = store.new_group(reason, reference)
    other = "on_hand" if name == "available" else "available"
    for item, location, level, quantity in targets:
        if level is None:
            level = store.stock(item, location)
        before, other_before = level.quantity(name), level.quantity(other)
        if name == "available":
            level.available = quantity
        else:  # on_hand: the unavailable and committed parts stay, available takes the difference
            level.available = quantity - (level.on_hand - level.available)
        level.updated_at = group.created_at
        delta = quantity - before
        group.changes.append(_change(name, delta, quantity, level, reference))
        group.changes.append(_change(other, level.quantity(other) - other_before, level.quantity(other), level, reference))
        store.adjustments.append({
            "sku": item.sku, "inventory_item_id": item.gid, "location_id": location.gid, "name": name,
            "before": before, "after": quantity, "delta": delta, "reason": reason,
            "reference_document_uri": reference, "idempotency_key": key, "adjustment_group_id": group.gid,
            "at": group.created_at,
        })
    state.stats.quantities_set += len(targets)
    return {"inventoryAdjustmentGroup": group, "userErrors": []}


def _change(name: str, delta: int, after: int, level: Any, reference: str | None) -> Change:
    return Change(name, delta, after, level.item, level.location, reference)


def product_update(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "productUpdate")
    data = args.get("product") or {}
    product = ctx.store.product(data.get("id")) if data.get("id") is not None else None
    if product is None:
        return {"product": None, "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}
    if data.get("title") is not None:
        if not data["title"].strip():
            return {"product": None, "userErrors": [{"field": ["title"], "message": "Title can't be blank"}]}
        product.title = data["title"]
    if data.get("status") is not None:
        product.status = data["status"]
    product.updated_at = now_iso()
    return {"product": product, "userErrors": []}


def bulk_operation_run_query(args: dict[str, Any], ctx: Ctx, _info: Any) -> dict[str, Any]:
    _count(ctx, "bulkOperationRunQuery")
    operation, errors = ctx.state.bulk.start(args["query"], ctx)
    if operation is not None:
        ctx.state.stats.bulk_operations += 1
    return {"bulkOperation": operation, "userErrors": errors}


MUTATIONS.update({
    "inventorySetQuantities": inventory_set_quantities,
    "productUpdate": product_update,
    "bulkOperationRunQuery": bulk_operation_run_query,
})
