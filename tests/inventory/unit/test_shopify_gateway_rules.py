"""The Shopify gateway's rules without I/O: batching, newest-wins per level, idempotency keys,
level ids, userError routing, throttle pacing, the debounce window; and the client and writer
against an in-memory Shopify (httpx.MockTransport, a fake clock and sleep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from contracts.platform import RetryParkedCommand
from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    InventoryLevelStale,
    SetInventoryLevel,
    SetProductStatus,
)
from services.platform.settings import Settings
from services.shopify.admin import (
    ShopifyAuthError,
    ShopifyGraphQLError,
    ShopifyUnavailable,
    ThrottleStatus,
    pacing_wait,
    sku_search_query,
    throttle_backoff,
)
from services.shopify.gateway import DebounceWindow
from services.shopify.inventory_writer import (
    BATCH_URI_PREFIX,
    InventoryWriter,
    MemoryDecisions,
    Pending,
    chunks,
    gid_number,
    idempotency_key,
    level_id,
    newest_per_pair,
    newest_status_per_product,
    quantity_index,
    reference_document_uri,
    set_quantities_input,
    split_user_errors,
)
from tests.inventory.fake_shopify import FakeClock, FakeShopify, cost, fake_admin

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LOC = "gid://shopify/Location/1"


def cmd(item: int = 1, quantity: int = 5, change_from: int | None = 3, at: int = 0, location: str = LOC,
        ref: str | None = None, origin: str = "prima_change") -> SetInventoryLevel:
    return SetInventoryLevel(
        command_id=uuid4(), sku=f"SKU-{item}", inventory_item_id=f"gid://shopify/InventoryItem/{item}",
        location_id=location, quantity=quantity, change_from_quantity=change_from,
        reference_document_uri=ref or f"prima://stock/WH-MAIN/SKU-{item}/{at + 1}",
        issued_at=T0 + timedelta(seconds=at), origin=origin,
    )


def status_cmd(product: int = 1, status: str = "DRAFT", at: int = 0) -> SetProductStatus:
    return SetProductStatus(command_id=uuid4(), sku=f"SKU-{product}", product_id=f"gid://shopify/Product/{product}",
                            status=status, reason="guard", issued_at=T0 + timedelta(seconds=at))


# ------------------------------------------------------------------------- batching rules


def test_newest_command_per_level_wins_and_the_older_are_superseded():
    old, new, other = cmd(1, 5, at=0), cmd(1, 7, at=2), cmd(2, 1, at=1)
    late_but_older = cmd(1, 9, at=1)
    kept, superseded = newest_per_pair([old, other, new, late_but_older])
    assert kept == [new, other]
    assert {c.command_id for c in superseded} == {old.command_id, late_but_older.command_id}


def test_the_same_command_twice_in_a_window_is_not_superseded_by_itself():
    one = cmd(1)
    kept, superseded = newest_per_pair([one, one])
    assert kept == [one] and superseded == []


def test_same_item_at_two_locations_are_two_levels():
    a, b = cmd(1, location=LOC), cmd(1, location="gid://shopify/Location/2")
    kept, superseded = newest_per_pair([a, b])
    assert len(kept) == 2 and not superseded


def test_600_quantities_make_three_batches_of_at_most_250():
    assert [len(c) for c in chunks(list(range(600)), 250)] == [250, 250, 100]
    assert chunks([], 250) == []


def test_newest_status_per_product_wins():
    old, new, other = status_cmd(1, "DRAFT", at=0), status_cmd(1, "ACTIVE", at=2), status_cmd(2, at=1)
    assert newest_status_per_product([new, other, old]) == [new, other]


# -------------------------------------------------------------------- the debounce window

WINDOW_SETTINGS = Settings(inventory_batch_size=3, inventory_debounce_seconds=0.5, inventory_debounce_max_seconds=5.0,
                           inventory_full_sync_debounce_seconds=4.0, inventory_full_sync_debounce_max_seconds=120.0)


def test_a_window_is_full_at_the_prefix_holding_exactly_the_batch_size_of_distinct_levels():
    window = DebounceWindow(WINDOW_SETTINGS)
    a, b, c, d = cmd(1), cmd(2), cmd(3), cmd(4)
    a2, b2 = cmd(1, quantity=9, at=1), cmd(2, quantity=9, at=1)
    assert window.full([a, b]) is None
    assert window.full([a, a2, b, b2]) is None  # repeats of a level are not more levels
    assert window.full([a, b, c]) == 3
    # a repeat of a level already in the prefix goes with it (the newest wins within the batch);
    # the first command of a fourth level starts the next window
    assert window.full([a, b, a2, c, b2, d, a2]) == 5
    assert window.full([a, b, c, a2]) == 4
    # the same item at another location is another level
    assert window.full([a, cmd(1, location="gid://shopify/Location/2"), b]) == 3


def test_only_inventory_levels_fill_a_window():
    window = DebounceWindow(WINDOW_SETTINGS)
    retry = RetryParkedCommand(command_id=uuid4(), requested_by="ops", requested_at=T0, parked_command_id=uuid4(),
                               gateway="shopify")
    assert window.full([cmd(1), status_cmd(1), None, retry, status_cmd(2), cmd(2)]) is None
    assert window.full([cmd(1), status_cmd(1), None, cmd(2), cmd(3)]) == 5


def test_a_window_of_full_comparison_repairs_only_waits_longer():
    window = DebounceWindow(WINDOW_SETTINGS)
    repairs = [cmd(i, origin="full_comparison") for i in range(3)]
    assert window.limits(repairs) == (4.0, 120.0)
    # a record that did not decode (or a re-drive) is not held back: it is dead-lettered at the flush
    assert window.limits([*repairs, None]) == (0.5, 5.0)
    assert window.limits([None]) == (0.5, 5.0)
    assert window.limits([*repairs, cmd(9)]) == (0.5, 5.0)  # one Prima change: the short debounce
    for urgent in (cmd(9, origin="operator"), cmd(9, origin="buffer_change"), status_cmd(9)):
        assert window.limits([*repairs, urgent]) == (0.5, 5.0), urgent


def test_the_cap_of_a_window_is_never_shorter_than_its_quiet_time():
    window = DebounceWindow(WINDOW_SETTINGS.model_copy(update={
        "inventory_debounce_seconds": 2.0, "inventory_debounce_max_seconds": 1.0,
        "inventory_full_sync_debounce_seconds": 9.0, "inventory_full_sync_debounce_max_seconds": 3.0}))
    assert window.limits([cmd(1)]) == (2.0, 2.0)
    assert window.limits([cmd(1, origin="full_comparison")]) == (9.0, 9.0)


# --------------------------------------------------------------------------- idempotency


def test_idempotency_key_is_stable_for_the_same_request_in_any_order():
    items = [Pending(cmd(i), i) for i in range(5)]
    key = idempotency_key(items, "available", "correction")
    assert key == idempotency_key(list(reversed(items)), "available", "correction")
    assert len(key) == 36  # a UUID


def test_idempotency_key_changes_with_change_from_quantity_or_the_commands():
    items = [Pending(cmd(i), i) for i in range(3)]
    key = idempotency_key(items, "available", "correction")
    reread = [Pending(items[0].command, 99), *items[1:]]
    assert idempotency_key(reread, "available", "correction") != key
    assert idempotency_key(items[1:], "available", "correction") != key
    assert idempotency_key(items, "available", "restock") != key


# ------------------------------------------------------------------ referenceDocumentUri


def test_reference_document_uri_of_one_command_is_its_prima_record():
    one = cmd(1, ref="prima://stock/WH-MAIN/SKU-1/42")
    assert reference_document_uri([one]) == "prima://stock/WH-MAIN/SKU-1/42"


def test_reference_document_uri_of_a_batch_names_the_batch_stably():
    batch = [cmd(i) for i in range(3)]
    uri = reference_document_uri(batch)
    assert uri.startswith(BATCH_URI_PREFIX)
    assert reference_document_uri(list(reversed(batch))) == uri
    assert reference_document_uri(batch[:2]) != uri


def test_input_carries_change_from_quantity_and_the_reason():
    items = [Pending(cmd(1, 5), 3), Pending(cmd(2, 0), None)]
    body = set_quantities_input(items, "correction", "prima://x")
    assert body["name"] == "available" and body["reason"] == "correction" and body["referenceDocumentUri"] == "prima://x"
    assert body["quantities"][0] == {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": LOC,
                                     "quantity": 5, "changeFromQuantity": 3}
    assert body["quantities"][1]["changeFromQuantity"] is None  # explicit null: no compare


# ------------------------------------------------------------------------------ level ids


def test_level_id_is_built_from_the_two_gids():
    assert gid_number("gid://shopify/Location/42") == "42"
    assert level_id("gid://shopify/InventoryItem/777", "gid://shopify/Location/42") == \
        "gid://shopify/InventoryLevel/42?inventory_item_id=777"


# -------------------------------------------------------------------------- userErrors


def test_user_errors_are_routed_by_quantity_index():
    errors = [
        {"field": ["input", "quantities", "2", "changeFromQuantity"], "code": "CHANGE_FROM_QUANTITY_STALE", "message": "stale"},
        {"field": ["input", "quantities", "0", "inventoryItemId"], "code": "INVALID_INVENTORY_ITEM", "message": "no item"},
        {"field": ["input", "reason"], "code": "INVALID_REASON", "message": "bad reason"},
    ]
    split = split_user_errors(errors, 3)
    assert list(split.stale) == [2] and list(split.rejected) == [0] and len(split.whole) == 1
    assert quantity_index(["input", "quantities", "17", "quantity"]) == 17
    assert quantity_index(None) is None


# --------------------------------------------------------------------------------- pacing


def test_pacing_waits_for_the_points_the_bucket_lacks():
    status = ThrottleStatus(maximum_available=1000, currently_available=50, restore_rate=100, seen_at=10.0)
    assert pacing_wait(None, 500, 10.0) == 0  # nothing known yet
    assert pacing_wait(status, 40, 10.0) == 0
    assert pacing_wait(status, 250, 10.0) == pytest.approx(2.0)
    assert pacing_wait(status, 250, 11.0) == pytest.approx(1.0)  # restored meanwhile
    assert pacing_wait(status, 250, 13.0) == 0
    assert pacing_wait(status, 250, 13.0, reserved=150) == pytest.approx(0.5)  # requests in flight count
    assert pacing_wait(status, 5000, 10.0) == pytest.approx(9.5)  # more than a bucket: a full bucket
    assert status.available_at(1000.0) == 1000


def test_a_background_reader_waits_until_the_bucket_also_holds_its_headroom():
    # the reconciler leaves half of a 2000-point bucket to the real-time flows
    status = ThrottleStatus(maximum_available=2000, currently_available=1200, restore_rate=100, seen_at=10.0)
    assert pacing_wait(status, 897, 10.0) == 0  # a foreground request of the same cost goes at once
    assert pacing_wait(status, 897, 10.0, headroom=0.5) == pytest.approx((897 + 1000 - 1200) / 100)
    assert pacing_wait(status, 897, 17.0, headroom=0.5) == 0  # 1900 there by then
    assert pacing_wait(status, 1500, 10.0, headroom=0.5) == pytest.approx(8.0)  # never more than a full bucket


def test_a_status_reported_late_does_not_raise_the_estimate():
    known = ThrottleStatus(maximum_available=2000, currently_available=100, restore_rate=100, seen_at=10.0)
    late = ThrottleStatus(maximum_available=2000, currently_available=1500, restore_rate=100, seen_at=11.0)
    assert late.merged(known).currently_available == 200  # 100 + 1 s of restore, not 1500
    lower = ThrottleStatus(maximum_available=2000, currently_available=20, restore_rate=100, seen_at=11.0)
    assert lower.merged(known).currently_available == 20
    assert late.merged(None) is late


def test_throttle_backoff_grows_and_is_capped():
    assert throttle_backoff(0, 0.2, 10, rng=lambda: 1.0) == pytest.approx(0.2)
    assert throttle_backoff(3, 0.2, 10, rng=lambda: 1.0) == pytest.approx(1.6)
    assert throttle_backoff(20, 0.2, 10, rng=lambda: 1.0) == 10
    assert throttle_backoff(20, 0.2, 10, rng=lambda: 0.0) == 5


def test_sku_search_query_quotes_what_needs_it():
    assert sku_search_query(["TEE-BLK-M", "MUG STONE"]) == 'sku:TEE-BLK-M OR sku:"MUG STONE"'


# --------------------------------------------------- client and writer, in-memory Shopify


@pytest.fixture
def fake():
    return FakeShopify()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def admin(fake, clock):
    return fake_admin(fake, clock)


async def test_client_posts_the_named_document_with_the_token(admin, fake):
    fake.script.append(httpx.Response(200, json={"data": {"nodes": []}, "extensions": cost(900)}))
    assert await admin.execute("InventoryLevels", {"ids": []}) == {"nodes": []}
    sent = fake.requests[0]
    assert sent["operationName"] == "InventoryLevels" and "query InventoryLevels" in sent["query"]
    assert admin.endpoint == "http://shopify.test/admin/api/2026-07/graphql.json"
    assert admin.throttle_status.currently_available == 900
    assert admin.stats.points_requested == 10


async def test_client_paces_before_the_bucket_runs_dry(admin, fake, clock):
    fake.script += [httpx.Response(200, json={"data": {"nodes": []}, "extensions": cost(available=5, requested=50)}),
                    httpx.Response(200, json={"data": {"nodes": []}, "extensions": cost(available=900)})]
    await admin.execute("InventoryLevels", {"ids": []})
    await admin.execute("InventoryLevels", {"ids": []})
    assert clock.sleeps == [pytest.approx(0.45)]  # (50 - 5) / 100 per second
    assert admin.stats.throttled == 0


async def test_client_retries_throttled_without_using_up_attempts(admin, fake, clock):
    throttled = httpx.Response(200, json={"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                                          "extensions": cost(available=2, requested=10)})
    fake.script += [throttled] * 5 + [httpx.Response(200, json={"data": {"nodes": []}, "extensions": cost()})]
    assert await admin.execute("InventoryLevels", {"ids": []}) == {"nodes": []}
    assert admin.stats.throttled == 5 and admin.stats.calls == 6  # more than shopify_max_attempts=3
    assert sum(clock.sleeps) > 0


async def test_client_retries_5xx_then_gives_up_typed(admin, fake):
    fake.script += [httpx.Response(503, text="down")] * 3
    with pytest.raises(ShopifyUnavailable) as raised:
        await admin.execute("InventoryLevels", {"ids": []})
    assert raised.value.attempts == 3 and admin.stats.calls == 3


async def test_client_retries_internal_server_error_in_a_200(admin, fake):
    fake.script += [httpx.Response(200, json={"errors": [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}),
                    httpx.Response(200, json={"data": {"nodes": []}, "extensions": cost()})]
    assert await admin.execute("InventoryLevels", {"ids": []}) == {"nodes": []}
    assert admin.stats.transient_errors == 1


async def test_client_does_not_retry_auth_or_validation_errors(admin, fake):
    fake.script.append(httpx.Response(401, text="[API] Invalid API key or access token"))
    with pytest.raises(ShopifyAuthError):
        await admin.execute("InventoryLevels", {"ids": []})
    fake.script.append(httpx.Response(200, json={"errors": [{"message": "Field 'x' doesn't exist",
                                                             "extensions": {"code": "undefinedField"}}]}))
    with pytest.raises(ShopifyGraphQLError):
        await admin.execute("InventoryLevels", {"ids": []})
    assert admin.stats.calls == 2


async def test_client_sends_only_named_documents(admin):
    with pytest.raises(FileNotFoundError):
        await admin.execute("query { shop { name } }")
    assert not hasattr(admin, "execute_text")


async def test_writer_answers_a_stale_compare_and_set_with_shopifys_level_and_writes_nothing(admin, fake):
    """Defect 5: a level that moved since the StockItem decided (a sale Prima has not seen) is not
    overwritten with the command's quantity: the gateway reads it again and says what it is."""
    a, b = cmd(1, quantity=5, change_from=3), cmd(2, quantity=8, change_from=2)
    fake.levels = {(a.inventory_item_id, LOC): 4, (b.inventory_item_id, LOC): 2}  # a moved: a sale
    outcomes = await InventoryWriter(admin, admin.settings).apply([a, b])
    assert fake.levels == {(a.inventory_item_id, LOC): 4, (b.inventory_item_id, LOC): 8}
    by_id = {o.command_id: o for o in outcomes}
    stale = by_id[a.command_id]
    assert isinstance(stale, InventoryLevelStale)
    assert (stale.available, stale.quantity, stale.change_from_quantity) == (4, 5, 3)
    assert isinstance(by_id[b.command_id], InventoryLevelConfirmed)
    assert (by_id[b.command_id].previous_quantity, by_id[b.command_id].stale_retries) == (2, 0)
    assert len(set(fake.keys)) == 2  # the rest of the batch went again: another request
    assert len(fake.calls("InventoryLevels")) == 1


async def test_writer_confirms_without_writing_when_shopify_already_has_the_quantity(admin, fake):
    a = cmd(1, quantity=5, change_from=3)
    fake.levels = {(a.inventory_item_id, LOC): 5}
    [outcome] = await InventoryWriter(admin, admin.settings).apply([a])
    assert isinstance(outcome, InventoryLevelConfirmed) and outcome.previous_quantity == 5
    assert len(fake.keys) == 1


async def test_writer_rejects_the_refused_quantity_and_sends_the_rest(admin, fake):
    good, unknown = cmd(1, quantity=5, change_from=3), cmd(2, quantity=1, change_from=0)
    fake.levels = {(good.inventory_item_id, LOC): 3}
    outcomes = await InventoryWriter(admin, admin.settings).apply([good, unknown])
    by_id = {o.command_id: o for o in outcomes}
    assert isinstance(by_id[good.command_id], InventoryLevelConfirmed)
    assert isinstance(by_id[unknown.command_id], InventoryLevelRejected)
    assert by_id[unknown.command_id].code == "INVALID_INVENTORY_ITEM"
    assert fake.levels[(good.inventory_item_id, LOC)] == 5


async def test_writer_gives_up_when_stale_forever_and_on_unavailable(admin, fake):
    a = cmd(1, quantity=5, change_from=3)
    fake.levels = {(a.inventory_item_id, LOC): 3}
    fake.script += [httpx.Response(500)] * 3
    [outcome] = await InventoryWriter(admin, admin.settings).apply([a])
    assert isinstance(outcome, InventoryLevelFailed) and outcome.attempts == 3


async def test_writer_sends_600_commands_in_three_mutations_and_supersedes_older(admin, fake):
    commands = [cmd(i, quantity=i % 7, change_from=None) for i in range(600)]
    older = cmd(0, quantity=99, change_from=None, at=-5)
    fake.levels = {(c.inventory_item_id, LOC): 0 for c in commands}
    writer = InventoryWriter(admin, admin.settings)
    report = await writer.write([older, *commands])
    assert report.mutations == 3 and len(report.outcomes) == 600
    assert [c.command_id for c in report.superseded] == [older.command_id]
    assert len(report.batches) == 3 and all(b.reference_document_uri.startswith(BATCH_URI_PREFIX) for b in report.batches)
    # an older command for a level already written later is superseded too
    again = await writer.write([older])
    assert again.outcomes == [] and again.superseded == [older]


def _stale_answer(n: int = 1) -> httpx.Response:
    errors = [{"field": ["input", "quantities", str(i), "changeFromQuantity"], "code": "CHANGE_FROM_QUANTITY_STALE",
               "message": "stale"} for i in range(n)]
    return httpx.Response(200, json={"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": None,
                                                                         "userErrors": errors}}, "extensions": cost()})


def _level_answer(command: SetInventoryLevel, available: int) -> httpx.Response:
    node = {"id": "x", "item": {"id": command.inventory_item_id}, "location": {"id": command.location_id},
            "quantities": [{"name": "available", "quantity": available}]}
    return httpx.Response(200, json={"data": {"nodes": [node]}, "extensions": cost()})


async def test_an_older_command_after_a_newer_one_was_taken_up_is_superseded_in_a_later_window(admin, fake):
    newer, older = cmd(1, quantity=9, change_from=4, at=0), cmd(1, quantity=2, change_from=4, at=-5)
    fake.levels = {(newer.inventory_item_id, LOC): 4}
    writer = InventoryWriter(admin, admin.settings, decisions=MemoryDecisions())
    assert [type(o) for o in await writer.apply([newer])] == [InventoryLevelConfirmed]
    report = await writer.write([older])
    assert (report.outcomes, report.superseded) == ([], [older])
    assert fake.levels[(newer.inventory_item_id, LOC)] == 9
    again = await writer.write([newer])  # the newer one redelivered is not superseded by itself
    assert [type(o) for o in again.outcomes] == [InventoryLevelConfirmed]


async def test_an_error_about_the_whole_request_rejects_every_quantity(admin, fake):
    a, b = cmd(1), cmd(2)
    fake.script.append(httpx.Response(200, json={"data": {"inventorySetQuantities": {
        "inventoryAdjustmentGroup": None,
        "userErrors": [{"field": ["input", "reason"], "code": "INVALID_REASON", "message": "bad reason"}]}},
        "extensions": cost()}))
    outcomes = await InventoryWriter(admin, admin.settings).apply([a, b])
    assert [type(o) for o in outcomes] == [InventoryLevelRejected, InventoryLevelRejected]
    assert {o.code for o in outcomes} == {"INVALID_REASON"}
