"""The Shopify sandbox's shop, in memory: locations, products, variants, inventory items, inventory
levels with their named quantities, adjustment groups, and the record of every API write.

Ids follow Shopify's GID shapes: `gid://shopify/Location/1`, `gid://shopify/Product/N`,
`gid://shopify/ProductVariant/N`, `gid://shopify/InventoryItem/N`, and for a level
`gid://shopify/InventoryLevel/<location number>?inventory_item_id=<item number>` (Shopify's own
format). Products, variants and items are numbered from different bases (8..., 4..., 5...) so that
a client that sends a variant id where an item id belongs gets "not found", as it would on Shopify.

Quantities of a level: `available`, `committed`, `reserved`, `incoming`, `damaged`,
`quality_control`, `safety_stock` are stored; `on_hand` = available + committed + reserved +
damaged + quality_control + safety_stock (incoming is not on hand), so a sale (available -> committed)
leaves on_hand unchanged, as on Shopify.

Everything runs on the event loop of one process: no locks are needed as long as no method awaits.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GID = "gid://shopify/"
PRODUCT_BASE = 8_000_000_000
VARIANT_BASE = 4_000_000_000
ITEM_BASE = 5_000_000_000

STORED_NAMES = ("available", "committed", "reserved", "incoming", "damaged", "quality_control", "safety_stock")
QUANTITY_NAMES = (*STORED_NAMES, "on_hand")
PRODUCT_STATUSES = ("ACTIVE", "ARCHIVED", "DRAFT")

_GID_RE = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?inventory_item_id=(\d+))?$")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_gid(value: Any) -> tuple[str, int, int | None] | None:
    """("InventoryLevel", location, item) / ("Location", 1, None) / None when not a Shopify GID."""
    if not isinstance(value, str):
        return None
    match = _GID_RE.match(value)
    if not match:
        return None
    kind, number, item = match.groups()
    if (item is not None) != (kind == "InventoryLevel"):
        return None
    return kind, int(number), int(item) if item is not None else None


def gid_number(value: Any, kind: str) -> int | None:
    parsed = parse_gid(value)
    if parsed is None or parsed[0] != kind:
        return None
    return parsed[1]


class Location:
    __slots__ = ("num", "name", "is_active", "created_at", "levels")
    typename = "Location"

    def __init__(self, num: int, name: str, is_active: bool, created_at: str) -> None:
        self.num, self.name, self.is_active, self.created_at = num, name, is_active, created_at
        self.levels: dict[int, Level] = {}  # item number -> level

    @property
    def gid(self) -> str:
        return f"{GID}Location/{self.num}"


class Product:
    __slots__ = ("num", "title", "status", "created_at", "updated_at", "variants")
    typename = "Product"

    def __init__(self, num: int, title: str, status: str, created_at: str) -> None:
        self.num, self.title, self.status = num, title, status
        self.created_at = self.updated_at = created_at
        self.variants: list[Variant] = []

    @property
    def gid(self) -> str:
        return f"{GID}Product/{self.num}"


class Variant:
    __slots__ = ("num", "sku", "title", "product", "item", "created_at")
    typename = "ProductVariant"

    def __init__(self, num: int, sku: str, title: str, product: Product, created_at: str) -> None:
        self.num, self.sku, self.title, self.product, self.created_at = num, sku, title, product, created_at
        self.item: InventoryItem = None  # type: ignore[assignment]  # set right after

    @property
    def gid(self) -> str:
        return f"{GID}ProductVariant/{self.num}"


class InventoryItem:
    __slots__ = ("num", "variant", "tracked", "created_at", "levels")
    typename = "InventoryItem"

    def __init__(self, num: int, variant: Variant, tracked: bool, created_at: str) -> None:
        self.num, self.variant, self.tracked, self.created_at = num, variant, tracked, created_at
        self.levels: dict[int, Level] = {}  # location number -> level

    @property
    def sku(self) -> str:
        return self.variant.sku

    @property
    def gid(self) -> str:
        return f"{GID}InventoryItem/{self.num}"

    def sorted_levels(self) -> list[Level]:
        return [self.levels[k] for k in sorted(self.levels)]


class Level:
    __slots__ = ("item", "location", *STORED_NAMES, "created_at", "updated_at")
    typename = "InventoryLevel"

    def __init__(self, item: InventoryItem, location: Location, available: int, created_at: str) -> None:
        self.item, self.location = item, location
        self.available, self.committed, self.reserved, self.incoming = available, 0, 0, 0
        self.damaged, self.quality_control, self.safety_stock = 0, 0, 0
        self.created_at = self.updated_at = created_at

    @property
    def num(self) -> int:  # orders an item's levels by location
        return self.location.num

    @property
    def gid(self) -> str:
        return f"{GID}InventoryLevel/{self.location.num}?inventory_item_id={self.item.num}"

    @property
    def on_hand(self) -> int:
        return (self.available + self.committed + self.reserved + self.damaged + self.quality_control
                + self.safety_stock)

    def quantity(self, name: str) -> int:
        return self.on_hand if name == "on_hand" else getattr(self, name)

    def row(self) -> dict[str, Any]:
        return {"sku": self.item.sku, "inventory_item_id": self.item.gid, "location_id": self.location.gid,
                "inventory_level_id": self.gid, "available": self.available, "on_hand": self.on_hand,
                "committed": self.committed}


@dataclass
class Change:
    name: str
    delta: int
    quantity_after: int
    item: InventoryItem
    location: Location
    ledger_document_uri: str | None = None
    typename: str = "InventoryChange"


@dataclass
class AdjustmentGroup:
    num: int
    created_at: str
    reason: str
    reference_document_uri: str | None
    changes: list[Change] = field(default_factory=list)
    typename: str = "InventoryAdjustmentGroup"

    @property
    def gid(self) -> str:
        return f"{GID}InventoryAdjustmentGroup/{self.num}"


class UnknownLocation(ValueError):
    pass


class Store:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.locations: dict[int, Location] = {}
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.items: dict[int, InventoryItem] = {}
        self.variant_order: list[Variant] = []  # ascending ids (ids only grow)
        self.item_order: list[InventoryItem] = []
        self.product_order: list[Product] = []
        self.by_sku: dict[str, list[Variant]] = {}  # lower-cased SKU -> variants (Shopify allows duplicates)
        self.groups: dict[int, AdjustmentGroup] = {}
        self.adjustments: list[dict[str, Any]] = []
        self._next = {"Location": 1, "Product": PRODUCT_BASE + 1, "ProductVariant": VARIANT_BASE + 1,
                      "InventoryItem": ITEM_BASE + 1, "InventoryAdjustmentGroup": 1}
        self._product_keys: dict[str, Product] = {}

    # ----------------------------------------------------------------- lookups

    def location(self, gid: Any) -> Location | None:
        num = gid_number(gid, "Location")
        return self.locations.get(num) if num is not None else None

    def product(self, gid: Any) -> Product | None:
        num = gid_number(gid, "Product")
        return self.products.get(num) if num is not None else None

    def variant(self, gid: Any) -> Variant | None:
        num = gid_number(gid, "ProductVariant")
        return self.variants.get(num) if num is not None else None

    def item(self, gid: Any) -> InventoryItem | None:
        num = gid_number(gid, "InventoryItem")
        return self.items.get(num) if num is not None else None

    def level(self, gid: Any) -> Level | None:
        parsed = parse_gid(gid)
        if parsed is None or parsed[0] != "InventoryLevel":
            return None
        item = self.items.get(parsed[2])  # type: ignore[arg-type]
        return item.levels.get(parsed[1]) if item else None

    def group(self, gid: Any) -> AdjustmentGroup | None:
        num = gid_number(gid, "InventoryAdjustmentGroup")
        return self.groups.get(num) if num is not None else None

    def variants_with_sku(self, sku: str) -> list[Variant]:
        return self.by_sku.get(sku.lower(), [])

    def levels_of_sku(self, sku: str | None) -> list[Level]:
        variants = self.variants_with_sku(sku) if sku is not None else self.variant_order
        return [level for v in variants for level in v.item.sorted_levels()]

    # ----------------------------------------------------------------- seeding

    def add_location(self, name: str, gid: str | None = None, is_active: bool = True) -> Location:
        if gid is not None:
            num = gid_number(gid, "Location")
            if num is None:
                raise ValueError(f"not a location GID: {gid!r}")
            existing = self.locations.get(num)
            if existing is not None:
                existing.name, existing.is_active = name, is_active
                return existing
            self._next["Location"] = max(self._next["Location"], num + 1)
        else:
            num = self._take("Location")
        location = Location(num, name, is_active, now_iso())
        self.locations[num] = location
        return location

    def add_variants(self, specs: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Seed variants, each with its own product unless `product` (a grouping key) is shared.
        Validates everything first, so a bad entry adds nothing."""
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or not isinstance(spec.get("sku"), str) or not spec["sku"]:
                raise ValueError(f"variants[{i}]: sku (a non-empty string) is required")
            status = spec.get("status", "ACTIVE")
            if status not in PRODUCT_STATUSES:
                raise ValueError(f"variants[{i}]: status must be one of {PRODUCT_STATUSES}")
            levels = spec.get("levels") or {}
            if not isinstance(levels, dict):
                raise ValueError(f"variants[{i}]: levels is a map of location GID to available")
            for loc, qty in levels.items():
                if self.location(loc) is None:
                    raise UnknownLocation(f"variants[{i}]: unknown location {loc!r} (create it with POST /_sandbox/locations)")
                if not isinstance(qty, int) or isinstance(qty, bool):
                    raise ValueError(f"variants[{i}]: available at {loc} must be an integer")
        created = now_iso()
        out = []
        locations = self.locations
        for spec in specs:
            sku = spec["sku"]
            title = spec.get("title") or sku
            key = spec.get("product")
            product = self._product_keys.get(key) if key is not None else None
            if product is None:
                product = Product(self._take("Product"), spec.get("product_title") or title,
                                  spec.get("status", "ACTIVE"), created)
                self.products[product.num] = product
                self.product_order.append(product)
                if key is not None:
                    self._product_keys[key] = product
            variant = Variant(self._take("ProductVariant"), sku, title, product, created)
            item = InventoryItem(self._take("InventoryItem"), variant, bool(spec.get("tracked", True)), created)
            variant.item = item
            product.variants.append(variant)
            self.variants[variant.num] = variant
            self.items[item.num] = item
            self.variant_order.append(variant)
            self.item_order.append(item)
            self.by_sku.setdefault(sku.lower(), []).append(variant)
            for loc, qty in (spec.get("levels") or {}).items():
                location = locations[gid_number(loc, "Location")]  # type: ignore[index]
                level = Level(item, location, qty, created)
                item.levels[location.num] = level
                location.levels[item.num] = level
            out.append({"sku": sku, "variant_id": variant.gid, "product_id": product.gid,
                        "inventory_item_id": item.gid})
        return out

    def stock(self, item: InventoryItem, location: Location, available: int = 0) -> Level:
        level = item.levels.get(location.num)
        if level is None:
            level = Level(item, location, available, now_iso())
            item.levels[location.num] = level
            location.levels[item.num] = level
        return level

    # ----------------------------------------------------------------- writes

    def new_group(self, reason: str, reference_document_uri: str | None) -> AdjustmentGroup:
        group = AdjustmentGroup(self._take("InventoryAdjustmentGroup"), now_iso(), reason, reference_document_uri)
        self.groups[group.num] = group
        return group

    def _take(self, kind: str) -> int:
        num = self._next[kind]
        self._next[kind] = num + 1
        return num


def after_position(seq: list[Any], cursor_num: int, reverse: bool = False) -> int:
    """Index of the first element of `seq` (ordered by .num, descending when reverse) after cursor."""
    if reverse:
        return bisect_right(seq, -cursor_num, key=lambda o: -o.num)
    return bisect_right(seq, cursor_num, key=lambda o: o.num)
