"""A bundle's (kit's) available-to-sell, from its components' (DESIGN.md flow 5).

A bundle can be sold as many times as its scarcest component allows: the minimum, over the
components, of floor(component available / units of it in one bundle). A component with no
known stock, or with negative stock in Prima, allows none.
"""

from __future__ import annotations

from collections.abc import Mapping


def bundle_available(components: Mapping[str, int], available: Mapping[str, int]) -> int:
    """`components`: component SKU -> units per bundle (> 0); `available`: component SKU ->
    Prima available at one warehouse (absent = unknown = 0)."""
    if not components:
        raise ValueError("a bundle has at least one component")
    levels = []
    for sku, per_bundle in components.items():
        if per_bundle <= 0:
            raise ValueError(f"component {sku}: units per bundle must be positive, got {per_bundle}")
        levels.append(max(0, available.get(sku, 0)) // per_bundle)
    return min(levels)
