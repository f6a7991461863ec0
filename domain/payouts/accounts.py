"""The account mapping for payout journals: which Prima account (and tax code) each journal
category posts to. The integration owns it (DESIGN.md); it comes from configuration
(settings.payout_accounts, JSON in SHOPIFY_PRIMA_PAYOUT_ACCOUNTS) and is validated at start-up:
every category must have an account, an unknown category or key is refused by name (a typo never
posts to a wrong account), and account codes are plain codes.

    {"categories": {"bank": {"account": "1010"}, "sales": {"account": "4000", "tax_code": "S"}, ...},
     "tax": {"default": {"account": "2200", "tax_code": "VAT"},
             "by_title": {"CA State Tax": {"account": "2210", "tax_code": "CA"}}}}

Tax is kept apart per title and rate (Shopify's tax lines name the jurisdiction, e.g. "VAT" or
"CA State Tax"): each (title, rate) is its own line, posted to the title's account and tax code,
else to the default tax account.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.payouts.categories import Category


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Account(_Config):
    account: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    tax_code: str | None = Field(default=None, min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=200)  # the journal line's text (default: the category)


class TaxAccounts(_Config):
    default: Account
    by_title: dict[str, Account] = {}  # Shopify tax line title (the jurisdiction) -> account

    def for_title(self, title: str | None) -> Account:
        return self.by_title.get(title or "", self.default)


# A chart of accounts for the sandbox and the local stack: a deployment sets its own.
DEFAULT_CATEGORY_ACCOUNTS: dict[str, dict[str, str]] = {
    Category.BANK: {"account": "1010", "description": "Bank: Shopify Payments payout"},
    Category.SALES: {"account": "4000", "description": "Sales"},
    Category.SHIPPING: {"account": "4100", "description": "Shipping income"},
    Category.DISCOUNTS: {"account": "4900", "description": "Discounts"},
    Category.TAX: {"account": "2200", "description": "Sales tax"},
    Category.GIFT_CARDS: {"account": "2400", "description": "Gift cards sold (liability)"},
    Category.TIPS: {"account": "2410", "description": "Tips"},
    Category.UNMATCHED_CHARGES: {"account": "1290", "description": "Shopify charges awaiting their order"},
    Category.REFUNDS: {"account": "4950", "description": "Refunds"},
    Category.PROCESSING_FEES: {"account": "6100", "description": "Shopify Payments processing fees"},
    Category.CHARGEBACKS: {"account": "4960", "description": "Chargebacks"},
    Category.DISPUTE_FEES: {"account": "6110", "description": "Dispute fees"},
    Category.RESERVES: {"account": "1280", "description": "Shopify Payments reserve"},
    Category.ADJUSTMENTS: {"account": "6190", "description": "Shopify Payments adjustments"},
    Category.SHIPPING_LABELS: {"account": "6200", "description": "Shipping labels"},
    Category.DUTIES: {"account": "6210", "description": "Duties and import taxes"},
    Category.BILLING: {"account": "6120", "description": "Shopify billing"},
    Category.CHANNELS: {"account": "6130", "description": "Sales channels and programmes"},
    Category.TRANSFERS: {"account": "1295", "description": "Balance transfers"},
    Category.FINANCING: {"account": "2500", "description": "Shopify Capital"},
    Category.RETRIED_PAYOUTS: {"account": "1270", "description": "Payouts returned and paid again"},
    Category.TAX_ADJUSTMENTS: {"account": "2290", "description": "Tax adjustments"},
}


class AccountMapping(_Config):
    categories: dict[Category, Account] = Field(
        default_factory=lambda: {Category(k): Account(**v) for k, v in DEFAULT_CATEGORY_ACCOUNTS.items()})
    tax: TaxAccounts = TaxAccounts(default=Account(account="2200", tax_code="TAX", description="Sales tax"))

    @model_validator(mode="after")
    def _every_category_mapped(self) -> AccountMapping:
        missing = sorted(str(c) for c in Category if c not in self.categories)
        if missing:
            raise ValueError(f"payout account mapping: no account for categor{'y' if len(missing) == 1 else 'ies'} "
                             f"{', '.join(missing)} (every category needs one)")
        return self

    def account(self, category: Category | str) -> Account:
        return self.categories[Category(category)]

    def description(self, category: Category | str) -> str:
        account = self.account(category)
        return account.description or str(category).replace("_", " ").capitalize()
