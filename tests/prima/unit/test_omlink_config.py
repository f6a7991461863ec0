"""An OM link installation's configuration (services/prima/omlink/config.py) and Prima's
statuses in the port's words (adapter.port_status)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.prima.omlink.adapter import port_status
from services.prima.omlink.config import ProductRange
from tests.prima.omlink_orders import config


def test_given_the_instance_url_then_the_wsdl_and_the_operations_are_beside_it():
    c = config("https://prima.example.ie/wsa/wsa1/")
    assert c.wsdl_url == "https://prima.example.ie/wsa/wsa1/wsdl?targetURI=urn:omlink"
    assert c.service_url == "https://prima.example.ie/wsa/wsa1"


@pytest.mark.parametrize(("changes", "error"), [
    ({"instance_url": "https://prima.example.ie/wsa/wsa1/wsdl"}, "without the trailing /wsdl"),
    ({"instance_url": "https://prima.example.ie/wsa/wsa1?targetURI=urn:omlink"}, "without the trailing /wsdl"),
    ({"instance_url": "prima.example.ie"}, "URL"),
    ({"encoding": "latin-42"}, "unknown encoding"),
    ({"availability_ranges": []}, "at least one product range"),
    ({"availability_ranges": [{"product_from": "M", "product_to": "A"}]}, "ProductFrom is after ProductTo"),
    ({"availability_ranges": [{"product_to": "M"}, {"product_from": "m"}]}, "overlap"),
    ({"availability_ranges": [{"product_from": "A"}, {"product_from": "N", "product_to": "Z"}]}, "overlap"),
    ({"company_id": ""}, "company_id"),
    ({"sku_matrix": {"pattern": "{MtrxCode1}"}}, "has no {Product}"),
])
def test_given_a_wrong_setting_when_loaded_then_a_clear_error(changes, error):
    with pytest.raises(ValidationError, match=error):
        config(**changes)


def test_given_ranges_apart_then_each_product_is_in_exactly_one():
    c = config(availability_ranges=[{"product_to": "LZZ"}, {"product_from": "M", "product_to": "SZZ"},
                                    {"product_from": "T"}])
    for product in ("ASH", "mug", "TEE", "ZIP"):
        assert sum(r.holds(product) for r in c.availability_ranges) == 1
    assert ProductRange().holds("anything")


@pytest.mark.parametrize(("prima", "port"), [("Despatched", "despatched"), ("Part  Despatched", "picking"),
                                             ("CANCELLED", "cancelled"), ("New", "open"), ("On Hold", "open")])
def test_given_a_prima_status_then_the_ports_status(prima, port):
    assert port_status(prima) == port
