"""The Shopify SKU <-> Prima Product + MtrxCode1..4 rule (domain/catalog/matrix.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.catalog.matrix import PrimaItemCode, SkuMatrix, SkuNotMapped

SIZE_ONLY = SkuMatrix(pattern="{Product}-{MtrxCode2}")
COLOUR_AND_SIZE = SkuMatrix(pattern="{Product}-{MtrxCode1}-{MtrxCode2}",
                            table={"MUG-STONE": {"Product": "MUG", "MtrxCode1": "STONE"}})


def test_given_a_size_pattern_when_a_sku_is_read_then_the_product_keeps_its_dashes_and_the_size_is_the_last_part():
    assert SIZE_ONLY.item_code("TEE-BLK-M") == PrimaItemCode("TEE-BLK", mtrx_code2="M")
    assert SIZE_ONLY.sku(PrimaItemCode("TEE-BLK", mtrx_code2="M")) == "TEE-BLK-M"


def test_given_colour_and_size_when_read_both_ways_then_the_sku_comes_back():
    code = COLOUR_AND_SIZE.item_code("TEE-BLK-XL")
    assert code == PrimaItemCode("TEE", "BLK", "XL")
    assert COLOUR_AND_SIZE.sku(code) == "TEE-BLK-XL"


def test_given_a_table_entry_when_its_sku_is_read_then_the_table_wins_over_the_pattern_both_ways():
    assert COLOUR_AND_SIZE.item_code("MUG-STONE") == PrimaItemCode("MUG", "STONE")
    assert COLOUR_AND_SIZE.sku(PrimaItemCode("MUG", "STONE")) == "MUG-STONE"


def test_given_a_sku_that_fits_no_rule_when_read_then_it_is_not_mapped_with_the_pattern_named():
    with pytest.raises(SkuNotMapped) as refused:
        COLOUR_AND_SIZE.item_code("GIFTCARD")
    assert refused.value.subject == "GIFTCARD"
    assert "{Product}-{MtrxCode1}-{MtrxCode2}" in refused.value.reason


def test_given_a_matrix_code_holding_the_separator_when_composed_then_it_is_refused_rather_than_ambiguous():
    with pytest.raises(SkuNotMapped, match="separator"):
        COLOUR_AND_SIZE.sku(PrimaItemCode("TEE", "BLK-RED", "M"))


def test_given_a_prima_item_with_a_code_the_pattern_lacks_when_composed_then_it_is_not_mapped():
    with pytest.raises(SkuNotMapped, match="MtrxCode3"):
        SIZE_ONLY.sku(PrimaItemCode("TEE", "", "M", "LONG"))
    with pytest.raises(SkuNotMapped, match="needs MtrxCode2"):
        SIZE_ONLY.sku(PrimaItemCode("TEE"))


def test_given_a_pattern_reading_into_an_item_the_table_gives_another_sku_then_it_is_not_mapped():
    matrix = SkuMatrix(pattern="{Product}-{MtrxCode2}", table={"LEGACY-1": {"Product": "TEE", "MtrxCode2": "M"}})
    with pytest.raises(SkuNotMapped, match="LEGACY-1"):
        matrix.item_code("TEE-M")
    assert matrix.sku(PrimaItemCode("TEE", mtrx_code2="M")) == "LEGACY-1"


def test_given_only_a_table_when_a_sku_outside_it_is_read_then_it_is_not_mapped():
    matrix = SkuMatrix(table={"A-1": {"Product": "A", "MtrxCode1": "1"}})
    assert matrix.item_code("A-1") == PrimaItemCode("A", "1")
    with pytest.raises(SkuNotMapped, match="no pattern"):
        matrix.item_code("A-2")


@pytest.mark.parametrize(("config", "error"), [
    ({}, "give a pattern"),
    ({"pattern": "{MtrxCode1}-{MtrxCode2}"}, "has no {Product}"),
    ({"pattern": "{Product}{MtrxCode1}"}, "two placeholders touch"),
    ({"pattern": "{Product}-{Size}"}, "unknown placeholder"),
    ({"pattern": "{Product}-{MtrxCode1}-{MtrxCode1}"}, "names a part twice"),
    ({"table": {"A": {"Product": "X"}, "B": {"Product": "X"}}}, "are both Prima item X"),
    ({"table": {"A": {"Product": ""}}}, "at least 1 character"),
    ({"pattern": "{Product}-{MtrxCode1}", "colour": "x"}, "Extra inputs are not permitted"),
])
def test_given_configuration_that_cannot_be_read_both_ways_when_loaded_then_it_is_refused_naming_why(config, error):
    with pytest.raises(ValidationError, match=error):
        SkuMatrix.model_validate(config)


def test_given_the_configuration_as_json_when_loaded_then_it_reads_skus():
    matrix = SkuMatrix.model_validate_json('{"pattern": "{Product}/{MtrxCode1}", "table": {}}')
    assert matrix.item_code("JEANS/INDIGO") == PrimaItemCode("JEANS", "INDIGO")
