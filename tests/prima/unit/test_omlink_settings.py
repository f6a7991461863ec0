"""The settings that choose the Prima port's adapter (services/platform/settings.py): OM link is
refused at start when its configuration is missing or cannot work with the inventory's warehouses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.platform.settings import Settings

OMLINK = {"instance_url": "https://prima.example.ie/wsa/wsa1", "sku_matrix": {"pattern": "{Product}-{MtrxCode1}"}}
LOCATIONS = {"WH-MAIN": "gid://shopify/Location/1", "WH-NORTH": "gid://shopify/Location/2"}


def settings(**values) -> Settings:
    return Settings(_env_file=None, **{"inventory_location_map": LOCATIONS, **values})


def test_given_rest_by_default_then_no_om_link_configuration_is_needed():
    assert settings().prima_adapter == "rest"


def test_given_om_link_with_its_configuration_then_it_is_taken():
    chosen = settings(prima_adapter="omlink", prima_omlink=OMLINK)
    assert (chosen.prima_adapter, str(chosen.prima_omlink.instance_url)) == ("omlink", OMLINK["instance_url"])


def test_given_om_link_without_its_configuration_then_refused_naming_the_variable():
    with pytest.raises(ValidationError, match="SHOPIFY_PRIMA_PRIMA_OMLINK"):
        settings(prima_adapter="omlink")


def test_given_an_adapter_name_that_is_not_one_then_refused():
    with pytest.raises(ValidationError, match="prima_adapter"):
        settings(prima_adapter="soap")


def test_given_a_snapshot_warehouse_no_shopify_location_maps_then_refused():
    with pytest.raises(ValidationError, match="'WH-SOUTH' is not in SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP"):
        settings(prima_adapter="omlink", prima_omlink={**OMLINK, "availability_warehouse": "WH-SOUTH"})


def test_given_orders_held_at_another_warehouse_than_the_snapshots_then_refused():
    with pytest.raises(ValidationError, match="never be released"):
        settings(prima_adapter="omlink", prima_omlink=OMLINK, inventory_allocation_warehouse="WH-NORTH")
