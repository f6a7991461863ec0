"""Buffer, bundle and desired-level rules (domain/inventory/buffer.py, bundle.py): pure."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from domain.inventory.buffer import BufferRules, desired_level
from domain.inventory.bundle import bundle_available

JAN = datetime(2026, 1, 15, 12, tzinfo=UTC)
BLACK_FRIDAY = datetime(2026, 11, 27, 9, tzinfo=UTC)

RULES = BufferRules.model_validate({
    "default": 2,
    "skus": {"MUG-STONE": 0, "TEE-BLK-M": 5},
    "groups": [{"name": "tees", "match": "TEE-*", "buffer": 3}, {"name": "all-caps", "match": "CAP-*", "buffer": 4}],
    "peak": [{"name": "black-friday", "start": "2026-11-27T00:00:00Z", "end": "2026-11-30T00:00:00Z",
              "default": 6, "skus": {"TEE-BLK-M": 8}}],
})


def test_global_default_applies_to_a_sku_with_no_rule():
    assert RULES.buffer_for("SOCK-1", JAN) == (2, "default")


def test_a_group_beats_the_default_and_a_sku_beats_its_group():
    assert RULES.buffer_for("TEE-BLK-L", JAN) == (3, "group tees")
    assert RULES.buffer_for("TEE-BLK-M", JAN) == (5, "sku TEE-BLK-M")
    assert RULES.buffer_for("MUG-STONE", JAN) == (0, "sku MUG-STONE")


def test_the_first_matching_group_wins():
    rules = BufferRules.model_validate({"groups": [{"name": "a", "match": "X-*", "buffer": 1},
                                                   {"name": "b", "match": "X-1*", "buffer": 9}]})
    assert rules.buffer_for("X-10", JAN) == (1, "group a")


def test_during_the_peak_window_its_rules_win():
    assert RULES.buffer_for("TEE-BLK-M", BLACK_FRIDAY) == (8, "peak black-friday: sku TEE-BLK-M")
    assert RULES.buffer_for("TEE-BLK-L", BLACK_FRIDAY) == (6, "peak black-friday: default")
    assert RULES.buffer_for("SOCK-1", BLACK_FRIDAY) == (6, "peak black-friday: default")


def test_the_window_is_half_open_start_included_end_excluded():
    assert RULES.buffer_for("SOCK-1", datetime(2026, 11, 27, tzinfo=UTC)).units == 6
    assert RULES.buffer_for("SOCK-1", datetime(2026, 11, 30, tzinfo=UTC)).units == 2


def test_a_window_without_a_default_falls_through_to_the_normal_rules():
    rules = BufferRules.model_validate({"default": 1, "peak": [
        {"name": "tees-only", "start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z",
         "groups": [{"name": "tees", "match": "TEE-*", "buffer": 7}]}]})
    assert rules.buffer_for("TEE-1", BLACK_FRIDAY) == (7, "peak tees-only: group tees")
    assert rules.buffer_for("MUG-1", BLACK_FRIDAY) == (1, "default")


@pytest.mark.parametrize("bad", [
    {"default": -1},
    {"skus": {"A": -2}},
    {"groups": [{"name": "a", "match": "A*", "buffer": 1}, {"name": "a", "match": "B*", "buffer": 1}]},
    {"peak": [{"name": "p", "start": "2026-11-28T00:00:00Z", "end": "2026-11-27T00:00:00Z"}]},
    {"peak": [{"name": "p", "start": "2026-11-27T00:00:00", "end": "2026-11-28T00:00:00"}]},  # naive times
    {"peak": [{"name": "p", "start": "2026-11-27T00:00:00Z", "end": "2026-11-29T00:00:00Z"},
              {"name": "q", "start": "2026-11-28T00:00:00Z", "end": "2026-11-30T00:00:00Z"}]},
    {"defualt": 3},  # a typo is refused, not ignored
])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValidationError):
        BufferRules.model_validate(bad)


def test_desired_is_available_minus_buffer():
    assert desired_level(10, 3) == 7


@pytest.mark.parametrize("available", [-5, 0, 2, 3])
def test_desired_is_clamped_at_zero(available):
    assert desired_level(available, 3) == max(0, available - 3)
    assert desired_level(available, 3) >= 0


def test_bundle_level_is_the_scarcest_component():
    assert bundle_available({"TEE": 1, "MUG": 2}, {"TEE": 10, "MUG": 7}) == 3
    assert bundle_available({"TEE": 1, "MUG": 2}, {"TEE": 2, "MUG": 7}) == 2


def test_bundle_with_a_missing_or_negative_component_allows_none():
    assert bundle_available({"TEE": 1, "MUG": 1}, {"TEE": 5}) == 0
    assert bundle_available({"TEE": 1, "MUG": 1}, {"TEE": 5, "MUG": -3}) == 0


def test_bundle_needs_components_with_positive_units():
    with pytest.raises(ValueError):
        bundle_available({}, {})
    with pytest.raises(ValueError):
        bundle_available({"TEE": 0}, {"TEE": 4})
