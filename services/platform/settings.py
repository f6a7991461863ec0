"""Settings for every process, from the environment (prefix SHOPIFY_PRIMA_) or a .env file.

A typo in a variable's value fails at start-up with the variable named; unknown SHOPIFY_PRIMA_*
variables are refused too, so a misspelt name is not silently ignored.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.fulfilment.carriers import CarrierMap
from domain.inventory.buffer import BufferRules
from domain.orders.cutoff import CutoffRule
from domain.orders.mapping import LineRule
from domain.payouts.accounts import AccountMapping
from domain.payouts.clearing import ClearingAccounts
from services.prima.omlink.config import OmLinkConfig

PREFIX = "SHOPIFY_PRIMA_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="forbid")

    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql://shopify_prima:shopify_prima@127.0.0.1:55432/shopify_prima"
    event_store_schema: str = "event_store"
    # Snapshots of the aggregates (issue 8): one every N events, so a load reads the latest
    # snapshot and fewer than N events after it. An Order's events carry the whole order (few,
    # large events); a StockItem or CatalogItem has many small ones.
    orders_snapshot_interval: PositiveInt = 20
    inventory_snapshot_interval: PositiveInt = 100

    shopify_webhook_secret: SecretStr = SecretStr("sandbox-secret")
    shopify_webhook_secret_previous: SecretStr | None = None  # accepted during a rotation

    prima_base_url: str = "http://127.0.0.1:8090"
    prima_api_key: SecretStr = SecretStr("sandbox-key")
    prima_timeout_seconds: PositiveFloat = 5.0
    prima_max_attempts: PositiveInt = 5
    prima_backoff_initial_seconds: PositiveFloat = 0.2
    prima_backoff_max_seconds: PositiveFloat = 5.0
    prima_concurrency: PositiveInt = 8  # calls to Prima in flight at once (commands of different orders)
    # The Prima port's adapter (issue 15; README, "Connecting to your Prima"): "rest", the documented
    # REST contract (contracts/prima/openapi.yaml, PRIMA_BASE_URL), or "omlink", Prima's own SOAP
    # web services (services/prima/omlink; its configuration in PRIMA_OMLINK, JSON, required then).
    prima_adapter: Literal["rest", "omlink"] = "rest"
    prima_omlink: OmLinkConfig | None = None

    # Shopify Admin GraphQL (the sandbox by default; a shop's https://<shop>.myshopify.com in
    # production). The API version is pinned; SHOPIFY.md lists the supported ones.
    shopify_admin_url: str = "http://127.0.0.1:8091"
    shopify_api_version: str = Field(default="2026-07", pattern=r"^20[0-9]{2}-(01|04|07|10)$")
    shopify_access_token: SecretStr = SecretStr("sandbox-token")
    shopify_timeout_seconds: PositiveFloat = 10.0
    shopify_max_attempts: PositiveInt = 6
    shopify_backoff_initial_seconds: PositiveFloat = 0.2
    shopify_backoff_max_seconds: PositiveFloat = 10.0

    # Inventory (DESIGN.md flow 5). Warehouse code in Prima -> Shopify location GID, one to one;
    # a warehouse or location not in this map is an exception, never a guess.
    inventory_location_map: dict[str, str] = {"WH-MAIN": "gid://shopify/Location/1"}
    inventory_buffer: BufferRules = BufferRules()
    inventory_batch_size: int = Field(default=250, ge=1, le=250)  # quantities per mutation
    inventory_debounce_seconds: NonNegativeFloat = 0.5  # quiet time before a batch goes (gateway)
    inventory_debounce_max_seconds: NonNegativeFloat = 5.0  # the longest a Prima change waits for its batch
    inventory_full_sync_debounce_seconds: NonNegativeFloat = 5.0  # the same for a full comparison's repairs
    inventory_full_sync_debounce_max_seconds: NonNegativeFloat = 120.0
    inventory_reason: str = "correction"  # Shopify's reason on every inventorySetQuantities
    inventory_full_sync_interval_seconds: NonNegativeFloat = 3600.0  # 0: only on demand
    publishing_guard_draft: bool = False  # set products whose SKU has no active Prima item to DRAFT
    prima_poll_interval_seconds: PositiveFloat = 1.0
    prima_poll_page_size: int = Field(default=1000, ge=1, le=5000)

    # Kafka consumers (services/platform/kafka.py): messages per batch, and what happens when a
    # handler fails. A failure of a dependency (PostgreSQL, Kafka) is retried until it is back; any
    # other failure is retried handler_max_attempts times, then the message is dead-lettered.
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_batch_wait_ms: int = Field(default=50, ge=1, le=10_000)
    handler_max_attempts: PositiveInt = 5
    handler_backoff_initial_seconds: PositiveFloat = 0.5
    handler_backoff_max_seconds: PositiveFloat = 30.0
    relay_poll_interval_seconds: PositiveFloat = 0.05
    relay_batch_size: PositiveInt = 500

    # Topics (services.setup): the local stack has one broker; a three-broker cluster wants 3 and 2.
    kafka_replication_factor: PositiveInt = 1
    kafka_min_insync_replicas: PositiveInt = 1
    # The largest message a producer sends (its max_request_size): Kafka's own limit (the broker's
    # message.max.bytes, 1 MB by default). The ingest keeps a fact within half of it, so that what
    # the fact becomes (an order event, a dead letter carrying it) fits too (issue 13).
    kafka_max_message_bytes: int = Field(default=1_048_576, ge=65_536)

    # Healing without an operator (issue 8). A parked command is sent again once its target
    # answers (a probe every *_probe_interval_seconds while it does not), with backoff between
    # re-drives, until the horizon after it was parked; then it stays an exception for a person.
    parked_redrive_horizon_seconds: PositiveFloat = 86_400.0
    parked_redrive_initial_seconds: PositiveFloat = 5.0
    parked_redrive_max_seconds: PositiveFloat = 300.0
    prima_probe_interval_seconds: PositiveFloat = 5.0
    shopify_probe_interval_seconds: PositiveFloat = 5.0
    # Quarantined orders whose missing items now exist are released, and SKU-locations whose push
    # failed are decided again, by sweeps this often.
    order_auto_release_interval_seconds: PositiveFloat = 10.0
    inventory_auto_release_interval_seconds: PositiveFloat = 30.0
    # The Prima warehouse whose stock an accepted order takes until Prima has allocated it (None:
    # the first warehouse of INVENTORY_LOCATION_MAP).
    inventory_allocation_warehouse: str | None = None

    # The order lifecycle (issue 9; README, "Configuration"). The warehouse cut-off: changes stop
    # at this Prima sales-order status (released_to_warehouse, picking or despatched), and
    # optionally at a daily local time (domain/orders/cutoff.py), JSON, e.g. {"status": "picking",
    # "daily_time": "14:00", "timezone": "Europe/Dublin"}. Line rules for lines that are not Prima
    # stock items (tips, gift cards sold, custom lines): the first that matches a line's kind
    # and/or title (a glob) books it to a Prima non-stock item (SKU) or an account
    # (domain/orders/mapping.py), JSON list. The goodwill item: the SKU of the Prima non-stock
    # item an amount-only refund's credit memo is booked to.
    order_cutoff: CutoffRule = CutoffRule()
    order_line_rules: tuple[LineRule, ...] = ()
    order_goodwill_item: str | None = Field(default=None, min_length=1, max_length=255)

    # The order reconciler (services/shopify/reconciler.py): every reconciler_interval_seconds it
    # asks Shopify for the orders updated since its watermark less reconciler_overlap_seconds (an
    # order committed or indexed late is read again) and feeds what the integration has not seen;
    # its first run reaches back reconciler_initial_lookback_seconds (Shopify's orders query shows
    # 60 days without the read_all_orders scope). After a failed run it tries again after
    # reconciler_retry_seconds. The orphan watch: a paid order without a sales order after
    # reconciler_orphan_deadline_seconds, and Prima sales orders whose Shopify order does not exist.
    reconciler_interval_seconds: PositiveFloat = 600.0
    # The share of Shopify's API bucket (the app's, shared by every process) the reconciler leaves to
    # the real-time flows: it sends a page only when the bucket holds the page's cost plus this share
    # of its size, so a catch-up run leaves room for fulfilments and stock pushes. It judges the bucket
    # from its own last answer and the restore rate: other processes' use shows at its next answer.
    reconciler_shopify_headroom: float = Field(default=0.5, ge=0.0, le=0.9)
    reconciler_overlap_seconds: NonNegativeFloat = 900.0
    reconciler_initial_lookback_seconds: PositiveFloat = 86_400.0
    reconciler_retry_seconds: PositiveFloat = 60.0
    reconciler_orphan_deadline_seconds: PositiveFloat = 1800.0

    # Payouts (issue 11; README, "Configuration"). The account mapping of the payout journals
    # (domain/payouts/accounts.py: every journal category's Prima account and tax code, tax per
    # jurisdiction; JSON, validated at start). A payout gets its journal once PAID (add IN_TRANSIT
    # to journal it when Shopify sends it). The ingest reads the payouts issued in the last
    # payout_ingest_lookback_days every payout_ingest_interval_seconds (0: only on demand); the
    # decider matches unmatched transactions again every payout_rematch_interval_seconds; a sales
    # order paid payout_unpaid_after_days ago that no payout has paid out is listed.
    payout_accounts: AccountMapping = AccountMapping()
    payout_journal_on: frozenset[str] = frozenset({"PAID"})
    payout_ingest_interval_seconds: NonNegativeFloat = 900.0
    payout_ingest_lookback_days: PositiveInt = 30
    payout_rematch_interval_seconds: PositiveFloat = 300.0
    # a paid payout with charges whose orders are not known yet waits this long for them (matched
    # again by the sweep) before its journal carries those charges on the clearing account
    payout_documents_grace_seconds: NonNegativeFloat = 3600.0
    payout_unpaid_after_days: PositiveInt = 7
    # the clearing account of each other payment gateway (domain/payouts/clearing.py; JSON object
    # gateway -> account, "payouts" for Shopify Payments itself): the month-end report ties sales out
    payout_clearing_accounts: ClearingAccounts = ClearingAccounts()

    # The webhook ingest's edge: bodies above this are refused (413) before the HMAC is computed;
    # a publish to Kafka that takes longer than this answers 503 (Shopify retries); stored
    # deliveries not published after ingest_sweep_after_seconds are published by a sweep.
    webhook_max_body_bytes: PositiveInt = 5_000_000
    webhook_read_timeout_seconds: PositiveFloat = 10.0  # a sender slower than this gets 408 (slowloris)
    ingest_publish_timeout_seconds: PositiveFloat = 2.0
    ingest_sweep_interval_seconds: PositiveFloat = 10.0
    ingest_sweep_after_seconds: PositiveFloat = 30.0

    ingest_host: str = "127.0.0.1"
    ingest_port: PositiveInt = 8081
    ops_api_host: str = "127.0.0.1"
    ops_api_port: PositiveInt = 8080
    # Bearer token the ops API requires on every request but /health and /metrics (reads and
    # writes alike); the CLI sends it. Unset: the ops API refuses to start.
    ops_api_token: SecretStr | None = None
    metrics_host: str = "127.0.0.1"  # where the workers' /metrics listen (0.0.0.0 in containers)
    order_decider_metrics_port: PositiveInt = 9101
    outbox_relay_metrics_port: PositiveInt = 9102
    prima_gateway_metrics_port: PositiveInt = 9103
    projector_metrics_port: PositiveInt = 9104
    stock_decider_metrics_port: PositiveInt = 9105
    shopify_gateway_metrics_port: PositiveInt = 9106
    prima_ingest_metrics_port: PositiveInt = 9107
    catalog_reader_metrics_port: PositiveInt = 9108
    reconciler_metrics_port: PositiveInt = 9111
    payout_ingest_metrics_port: PositiveInt = 9112
    payout_decider_metrics_port: PositiveInt = 9113
    fulfilment_decider_metrics_port: PositiveInt = 9114
    # Fulfilment (issue 10): whether Shopify emails the customer when a despatch becomes a
    # fulfilment (fulfillmentCreate notifyCustomer, and on a later tracking update), and Prima's
    # carrier names -> Shopify's tracking companies, over the defaults of domain/fulfilment/carriers.py
    # (each value spelt as Shopify lists it, else refused). JSON: {"Parcel Force 48": "Parcelforce"}.
    fulfilment_notify_customer: bool = True
    fulfilment_carrier_map: dict[str, str] = {}
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlparse(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("database_url must be a postgresql:// URL")
        return value

    @field_validator("shopify_api_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        if value < "2026-07":
            raise ValueError(f"Shopify API version {value} lacks what this integration needs "
                             "(changeFromQuantity required, @idempotent): use 2026-07 or later")
        return value

    @field_validator("payout_journal_on")
    @classmethod
    def _journal_statuses(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - {"PAID", "IN_TRANSIT"})
        if unknown or "PAID" not in value:
            raise ValueError(f"payout_journal_on is PAID, optionally with IN_TRANSIT; got {sorted(value)}")
        return value

    @field_validator("fulfilment_carrier_map")
    @classmethod
    def _shopify_carriers(cls, value: dict[str, str]) -> dict[str, str]:
        CarrierMap(value)  # raises, naming each company Shopify does not list
        return value

    @field_validator("inventory_location_map")
    @classmethod
    def _one_to_one(cls, value: dict[str, str]) -> dict[str, str]:
        locations = list(value.values())
        doubled = sorted({loc for loc in locations if locations.count(loc) > 1})
        if doubled:
            raise ValueError(f"each Shopify location is fed by one warehouse; {doubled} appear twice")
        bad = sorted(loc for loc in locations if not loc.startswith("gid://shopify/Location/"))
        if bad:
            raise ValueError(f"locations are Shopify GIDs (gid://shopify/Location/<id>), got {bad}")
        return value

    @model_validator(mode="after")
    def _omlink_configured(self) -> Settings:
        if self.prima_adapter != "omlink":
            return self
        if self.prima_omlink is None:
            raise ValueError(f"{PREFIX}PRIMA_ADAPTER=omlink needs {PREFIX}PRIMA_OMLINK (the OM link configuration, "
                             "JSON: instance_url, sku_matrix, order_codes, ...; README, 'Connecting to your Prima')")
        warehouse = self.prima_omlink.availability_warehouse
        if warehouse not in self.inventory_location_map:
            raise ValueError(f"{PREFIX}PRIMA_OMLINK availability_warehouse {warehouse!r} is not in "
                             f"{PREFIX}INVENTORY_LOCATION_MAP: its stock would reach no Shopify location")
        allocation = self.inventory_allocation_warehouse or next(iter(self.inventory_location_map))
        if allocation != warehouse:
            raise ValueError(f"{PREFIX}INVENTORY_ALLOCATION_WAREHOUSE ({allocation!r}) is not the OM link "
                             f"availability_warehouse ({warehouse!r}): orders would hold units at a warehouse "
                             "whose stock OM link never reports, and the holds would never be released")
        return self

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Settings:
        known = {PREFIX + name.upper() for name in type(self).model_fields}
        known |= {PREFIX + "PRIMA_SANDBOX_HOST", PREFIX + "PRIMA_SANDBOX_PORT", PREFIX + "SHOPIFY_SANDBOX_HOST",
                  PREFIX + "SHOPIFY_SANDBOX_PORT", PREFIX + "STATE_DIR",
                  PREFIX + "SHOPIFY_SANDBOX_PLAN"}
        unknown = sorted(k for k in os.environ if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}: check the spelling")
        return self

    def eventsourcing_env(self, create_tables: bool = False) -> dict[str, str]:
        """The eventsourcing library's PostgreSQL settings, from database_url. Only
        `services.setup` creates the tables: concurrent DDL from several services races."""
        url = urlparse(self.database_url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/"),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "",
            "POSTGRES_PASSWORD": url.password or "",
            "POSTGRES_SCHEMA": self.event_store_schema,
            "CREATE_TABLE": "y" if create_tables else "n",
            "POSTGRES_POOL_SIZE": "5",
            # read by each application under its own name (domain/shared/application.py)
            "ORDERS_SNAPSHOT_INTERVAL": str(self.orders_snapshot_interval),
            "INVENTORY_SNAPSHOT_INTERVAL": str(self.inventory_snapshot_interval),
        }


def use_env_file(path: str | os.PathLike[str]) -> None:
    """Put a KEY=VALUE file's variables (deploy/local/stack.env) into the environment, except
    those already set there: how the tests and benchmarks see the stack's configuration."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            name, sep, value = line.rstrip("\n").partition("=")
            if sep and not name.startswith("#") and name.strip() and name.strip() not in os.environ:
                os.environ[name.strip()] = value


@lru_cache
def get_settings() -> Settings:
    return Settings()
