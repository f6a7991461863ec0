"""Carrier names: Prima's carrier name -> Shopify's tracking company, and the tracking info a
fulfilment carries.

Shopify builds the tracking URL itself for the companies it knows, and only if the company is
sent exactly as it lists it (capitalisation matters: the `company` field of
FulfillmentTrackingInfo in the Admin GraphQL schema, ../shared/reference). The rule:

- A carrier is looked up by its name folded (case, spaces, dots, hyphens ignored): first in the
  configured map, then in the default map below (common UK/EU/US names and their aliases: Hermes
  is now Evri, "DHL" is DHL Express), then in Shopify's list itself; the first match gives
  Shopify's name. A configured name must be one of Shopify's (a typo would silently lose the
  link), else the map is refused.
- An unknown carrier is sent with its name as Prima gives it, and each parcel's URL (Shopify
  cannot build one). Without a URL it is still sent, and the command carries a warning.
- fulfillmentCreate takes one company for all its numbers: the parcels' numbers in parcel order,
  the company of the first parcel; parcels of another carrier make the URLs needed (warned if
  one is missing). URLs are sent only when every number has one (`urls` pairs by position).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from domain.fulfilment.values import Parcel, TrackingInfo

# Shopify's supported tracking companies (FulfillmentTrackingInfo.company, Admin GraphQL 2025-01):
# every country's, then the UK/IE/DE/FR/NL/US ones this shop may see.
SHOPIFY_TRACKING_COMPANIES: tuple[str, ...] = (
    "4PX", "AGS", "Amazon", "Amazon Logistics UK", "An Post", "Anjun Logistics", "APC", "Asendia USA",
    "Australia Post", "Bonshaw", "BPost", "BPost International", "Canada Post", "Canpar", "CDL Last Mile",
    "China Post", "Chronopost", "Chukou1", "Colissimo", "Comingle", "Coordinadora", "Correios", "Correos",
    "CTT", "CTT Express", "Cyprus Post", "Delnext", "Deutsche Post", "DHL eCommerce", "DHL eCommerce Asia",
    "DHL Express", "DPD", "DPD Local", "DPD UK", "DTD Express", "DX", "Eagle", "Estes", "Evri", "FedEx",
    "First Global Logistics", "First Line", "FSC", "Fulfilla", "GLS", "Iceland Post", "IDEX", "Israel Post",
    "La Poste", "Lasership", "Latvia Post", "Logisters", "Lone Star Overnight", "M3 Logistics", "Meteor Space",
    "Mondial Relay", "New Zealand Post", "NinjaVan", "OnTrac", "Packeta", "Pago Logistics", "Pitney Bowes",
    "Portal PostNord", "Poste Italiane", "PostNL", "PostNord DK", "PostNord NO", "PostNord SE", "Purolator",
    "Qxpress", "Qyun Express", "Royal Mail", "Royal Shipments", "Sendle", "SF Express", "SFC Fulfillment",
    "Singapore Post", "Southwest Air Cargo", "StarTrack", "Step Forward Freight", "Swiss Post",
    "TForce Final Mile", "Tinghao", "TNT", "Toll IPEC", "United Delivery Service", "UPS", "USPS", "Venipak",
    "We Post", "Whistl", "Wizmo", "WMYC", "Xpedigo", "XPO Logistics", "YiFan Express", "YunExpress",
    # shops in the United Kingdom, Ireland, Germany, France, the Netherlands, the United States
    "Parcelforce", "Yodel", "DHL Parcel", "Tuffnells", "Fastway", "DPD Ireland", "DHL", "Hermes",
    "Deutsche Post (DE)", "Deutsche Post (EN)", "Swiship", "Colis Privé", "Alliance Air Freight",
    "Pilot Freight", "LSO", "Old Dominion", "Pandion", "R+L Carriers",
)

# Prima's usual names (folded) -> Shopify's. Shopify's own names match themselves without an entry.
DEFAULT_CARRIERS: Mapping[str, str] = {
    "royal mail": "Royal Mail", "royal mail tracked": "Royal Mail", "royal mail tracked 24": "Royal Mail",
    "royal mail tracked 48": "Royal Mail", "royal mail special delivery": "Royal Mail", "rm": "Royal Mail",
    "parcelforce worldwide": "Parcelforce", "parcel force": "Parcelforce",
    "dpd": "DPD", "dpd uk": "DPD UK", "dpd local": "DPD Local", "dpd ireland": "DPD Ireland",
    "ups": "UPS", "united parcel service": "UPS",
    "fedex": "FedEx", "fed ex": "FedEx", "federal express": "FedEx",
    "dhl": "DHL Express", "dhl express": "DHL Express", "dhl parcel uk": "DHL Parcel", "dhl ecommerce": "DHL eCommerce",
    "evri": "Evri", "hermes": "Evri", "hermes uk": "Evri", "myhermes": "Evri",
    "usps": "USPS", "us postal service": "USPS", "united states postal service": "USPS",
    "yodel": "Yodel", "gls": "GLS", "tnt": "TNT", "postnl": "PostNL", "la poste": "La Poste",
    "an post": "An Post", "deutsche post": "Deutsche Post", "ontrac": "OnTrac", "amazon logistics": "Amazon",
}


def fold(name: str) -> str:
    """A carrier name for look-up: lower case, dots and hyphens as spaces, spaces collapsed."""
    return " ".join(re.sub(r"[.\-_]", " ", name).casefold().split())


_SHOPIFY_FOLDED = {fold(name): name for name in SHOPIFY_TRACKING_COMPANIES}


@dataclass(frozen=True)
class CarrierMap:
    """Prima's carrier names -> Shopify's tracking companies: `configured` (Prima's name ->
    Shopify's name) over the defaults."""

    configured: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wrong = sorted(v for v in self.configured.values() if fold(v) not in _SHOPIFY_FOLDED
                       or _SHOPIFY_FOLDED[fold(v)] != v)
        if wrong:
            raise ValueError(f"not a tracking company as Shopify lists it (capitalisation matters): {wrong}")

    def company(self, carrier: str) -> str | None:
        """Shopify's name for Prima's `carrier`; None: Shopify does not know it."""
        key = fold(carrier)
        configured = {fold(k): v for k, v in self.configured.items()}
        return configured.get(key) or DEFAULT_CARRIERS.get(key) or _SHOPIFY_FOLDED.get(key)


DEFAULT_CARRIER_MAP = CarrierMap()


def tracking_for(parcels: Iterable[Parcel], carriers: CarrierMap) -> tuple[TrackingInfo, tuple[str, ...]]:
    """The tracking info of these parcels (in parcel order), and the warnings it is sent with."""
    parcels = sorted(parcels, key=lambda p: p.parcel_number)
    if not parcels:
        return TrackingInfo(company=None, numbers=()), ()
    first = parcels[0]
    company = carriers.company(first.carrier)
    known = company is not None
    company = company or first.carrier
    mixed = len({carriers.company(p.carrier) or fold(p.carrier) for p in parcels}) > 1
    warnings: list[str] = []
    # Shopify takes `urls` as URL! (an absolute http(s) URL): one it would refuse is left out, warned
    for p in parcels:
        if p.tracking_url and not _web_url(p.tracking_url):
            warnings.append(f"parcel {p.parcel_number}: tracking url {p.tracking_url!r} is not an http(s) URL: "
                            "left out")
    parcels = [p if not p.tracking_url or _web_url(p.tracking_url) else replace(p, tracking_url=None)
               for p in parcels]
    numbered = [p for p in parcels if p.tracking_number]
    urls_needed = not known or mixed
    every_url = all(p.tracking_url for p in numbered)
    for p in numbered:
        if urls_needed and not p.tracking_url:
            why = "an unknown carrier" if carriers.company(p.carrier) is None else f"a carrier other than {company}"
            warnings.append(f"parcel {p.parcel_number}: {p.carrier!r} is {why} and has no tracking url")
    if mixed:
        warnings.append(f"parcels of several carriers sent under one company, {company}")
    urls = tuple(p.tracking_url or "" for p in numbered) if numbered and every_url else ()
    return TrackingInfo(company=company, numbers=tuple(p.tracking_number or "" for p in numbered), urls=urls), \
        tuple(warnings)


def _web_url(url: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace (what Shopify's URL scalar takes)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in url)
