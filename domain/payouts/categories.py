"""Which journal category each kind of balance transaction goes to: one table, one place.

Every value of Shopify's ShopifyPaymentsTransactionType (the Admin schema's enum; a unit test
reads it from the schema and checks each one is here) maps to two categories: where its amount
goes, and where its fee goes. A type not in the table is never guessed: the payout is held as an
exception naming it (domain/payouts/checks.py), and posts once the table (a release) knows it.

The categories are the journal's lines; the account mapping (domain/payouts/accounts.py, from
configuration) gives each its account and tax code. A charge's amount is split further into
sales, shipping, gift cards sold, tips, discounts and tax per jurisdiction from its order
(domain/payouts/split.py);
when the order's amounts are not known the whole charge goes to `unmatched_charges`, a clearing
account (each amount there is one listed, unmatched transaction, never a difference).
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    BANK = "bank"  # the payout itself: the deposit (or withdrawal)
    SALES = "sales"
    SHIPPING = "shipping"
    DISCOUNTS = "discounts"
    TAX = "tax"  # one line per tax title and rate; accounts per jurisdiction in the mapping
    GIFT_CARDS = "gift_cards"  # gift cards sold: a liability until redeemed, not revenue
    TIPS = "tips"
    UNMATCHED_CHARGES = "unmatched_charges"  # charges whose order's amounts are not known
    REFUNDS = "refunds"
    PROCESSING_FEES = "processing_fees"
    CHARGEBACKS = "chargebacks"  # disputes lost (withdrawn), won (reversed), chargeback protection
    DISPUTE_FEES = "dispute_fees"
    RESERVES = "reserves"  # funds Shopify holds back and releases
    ADJUSTMENTS = "adjustments"
    SHIPPING_LABELS = "shipping_labels"
    DUTIES = "duties"  # customs duty and import tax Shopify collected or charged
    BILLING = "billing"  # Shopify's bills, apps, Shop Cash campaigns, settled from the balance
    CHANNELS = "channels"  # sales channels, marketplaces, Shopify Collective, Shop Cash, promotions
    TRANSFERS = "transfers"  # money moved between balances or merchants
    FINANCING = "financing"  # Shopify Capital advances and their funding
    RETRIED_PAYOUTS = "retried_payouts"  # an earlier payout that failed or was cancelled, paid again
    TAX_ADJUSTMENTS = "tax_adjustments"  # tax adjustments and VAT refunds credited or debited


# The categories a charge is split into; the others take a transaction's amount whole.
SALES_PARTS = (Category.SALES, Category.SHIPPING, Category.GIFT_CARDS, Category.TIPS, Category.DISCOUNTS,
               Category.TAX)

# The payout's own transfer out of the balance: not a line (the bank line is the payout's net),
# but checked: it must be the payout's net with the sign turned.
PAYOUT_TRANSFER = "TRANSFER"

C = Category
P = Category.PROCESSING_FEES
D = Category.DISPUTE_FEES

# type -> (category of the amount, category of the fee)
TRANSACTION_TYPES: dict[str, tuple[Category, Category]] = {
    # payments
    "CHARGE": (C.SALES, P),
    "REFUND": (C.REFUNDS, P),
    "REFUND_FAILURE": (C.REFUNDS, P),  # a refund that did not reach the customer comes back
    "APPLICATION_FEE_REFUND": (C.PROCESSING_FEES, P),
    "STRIPE_FEE": (C.PROCESSING_FEES, P),
    "CHARGE_ADJUSTMENT": (C.ADJUSTMENTS, P),
    "REFUND_ADJUSTMENT": (C.ADJUSTMENTS, P),
    "ADJUSTMENT": (C.ADJUSTMENTS, P),
    # disputes
    "DISPUTE_WITHDRAWAL": (C.CHARGEBACKS, D),
    "DISPUTE_REVERSAL": (C.CHARGEBACKS, D),
    "CHARGEBACK_FEE": (C.DISPUTE_FEES, D),
    "CHARGEBACK_FEE_REFUND": (C.DISPUTE_FEES, D),
    "CHARGEBACK_PROTECTION_CREDIT": (C.CHARGEBACKS, D),
    "CHARGEBACK_PROTECTION_CREDIT_REVERSAL": (C.CHARGEBACKS, D),
    "CHARGEBACK_PROTECTION_DEBIT": (C.CHARGEBACKS, D),
    "CHARGEBACK_PROTECTION_DEBIT_REVERSAL": (C.CHARGEBACKS, D),
    "SELLER_PROTECTION_CREDIT": (C.CHARGEBACKS, D),
    "SELLER_PROTECTION_CREDIT_REVERSAL": (C.CHARGEBACKS, D),
    # reserves and holds
    "RESERVED_FUNDS": (C.RESERVES, P),
    "RESERVED_FUNDS_WITHDRAWAL": (C.RESERVES, P),
    "RESERVED_FUNDS_REVERSAL": (C.RESERVES, P),
    "RISK_WITHDRAWAL": (C.RESERVES, P),
    "RISK_REVERSAL": (C.RESERVES, P),
    "CHARGEBACK_HOLD": (C.RESERVES, D),
    "CHARGEBACK_HOLD_RELEASE": (C.RESERVES, D),
    # payouts
    "TRANSFER": (C.BANK, P),  # the payout's own transfer (PAYOUT_TRANSFER)
    "TRANSFER_FAILURE": (C.RETRIED_PAYOUTS, P),
    "TRANSFER_CANCEL": (C.RETRIED_PAYOUTS, P),
    "TRANSFER_REFUND": (C.RETRIED_PAYOUTS, P),
    # Shopify's own charges settled from the balance
    "SHIPPING_LABEL": (C.SHIPPING_LABELS, P),
    "SHIPPING_LABEL_ADJUSTMENT": (C.SHIPPING_LABELS, P),
    "SHIPPING_LABEL_ADJUSTMENT_BASE": (C.SHIPPING_LABELS, P),
    "SHIPPING_LABEL_ADJUSTMENT_SURCHARGE": (C.SHIPPING_LABELS, P),
    "SHIPPING_RETURN_TO_ORIGIN_ADJUSTMENT": (C.SHIPPING_LABELS, P),
    "SHIPPING_OTHER_CARRIER_CHARGE_ADJUSTMENT": (C.SHIPPING_LABELS, P),
    "CUSTOMS_DUTY": (C.DUTIES, P),
    "CUSTOMS_DUTY_ADJUSTMENT": (C.DUTIES, P),
    "IMPORT_TAX": (C.DUTIES, P),
    "IMPORT_TAX_ADJUSTMENT": (C.DUTIES, P),
    "BILLING_DEBIT": (C.BILLING, P),
    "BILLING_DEBIT_REVERSAL": (C.BILLING, P),
    "SHOP_CASH_BILLING_DEBIT": (C.BILLING, P),
    "SHOP_CASH_BILLING_DEBIT_REVERSAL": (C.BILLING, P),
    "SHOP_CASH_CAMPAIGN_BILLING_DEBIT": (C.BILLING, P),
    "SHOP_CASH_CAMPAIGN_BILLING_DEBIT_REVERSAL": (C.BILLING, P),
    "SHOP_CASH_CAMPAIGN_BILLING_CREDIT": (C.BILLING, P),
    "SHOP_CASH_CAMPAIGN_BILLING_CREDIT_REVERSAL": (C.BILLING, P),
    # credits and debits Shopify applies
    "ANOMALY_CREDIT": (C.ADJUSTMENTS, P),
    "ANOMALY_CREDIT_REVERSAL": (C.ADJUSTMENTS, P),
    "ANOMALY_DEBIT": (C.ADJUSTMENTS, P),
    "ANOMALY_DEBIT_REVERSAL": (C.ADJUSTMENTS, P),
    "MERCHANT_GOODWILL_CREDIT": (C.ADJUSTMENTS, P),
    "MERCHANT_GOODWILL_CREDIT_REVERSAL": (C.ADJUSTMENTS, P),
    "COLLECTIONS_CREDIT": (C.ADJUSTMENTS, P),
    "COLLECTIONS_CREDIT_REVERSAL": (C.ADJUSTMENTS, P),
    "PROMOTION_CREDIT": (C.CHANNELS, P),
    "PROMOTION_CREDIT_REVERSAL": (C.CHANNELS, P),
    "TAX_ADJUSTMENT_CREDIT": (C.TAX_ADJUSTMENTS, P),
    "TAX_ADJUSTMENT_CREDIT_REVERSAL": (C.TAX_ADJUSTMENTS, P),
    "TAX_ADJUSTMENT_DEBIT": (C.TAX_ADJUSTMENTS, P),
    "TAX_ADJUSTMENT_DEBIT_REVERSAL": (C.TAX_ADJUSTMENTS, P),
    "VAT_REFUND_CREDIT": (C.TAX_ADJUSTMENTS, P),
    "VAT_REFUND_CREDIT_REVERSAL": (C.TAX_ADJUSTMENTS, P),
    # sales channels and programmes
    "CHANNEL_CREDIT": (C.CHANNELS, P),
    "CHANNEL_CREDIT_REVERSAL": (C.CHANNELS, P),
    "CHANNEL_PROMOTION_CREDIT": (C.CHANNELS, P),
    "CHANNEL_PROMOTION_CREDIT_REVERSAL": (C.CHANNELS, P),
    "CHANNEL_TRANSFER_CREDIT": (C.CHANNELS, P),
    "CHANNEL_TRANSFER_CREDIT_REVERSAL": (C.CHANNELS, P),
    "CHANNEL_TRANSFER_DEBIT": (C.CHANNELS, P),
    "CHANNEL_TRANSFER_DEBIT_REVERSAL": (C.CHANNELS, P),
    "MARKETPLACE_FEE_CREDIT": (C.CHANNELS, P),
    "MARKETPLACE_FEE_CREDIT_REVERSAL": (C.CHANNELS, P),
    "MARKETS_PRO_CREDIT": (C.CHANNELS, P),
    "SHOPIFY_COLLECTIVE_CREDIT": (C.CHANNELS, P),
    "SHOPIFY_COLLECTIVE_CREDIT_REVERSAL": (C.CHANNELS, P),
    "SHOPIFY_COLLECTIVE_DEBIT": (C.CHANNELS, P),
    "SHOPIFY_COLLECTIVE_DEBIT_REVERSAL": (C.CHANNELS, P),
    "SHOP_CASH_CREDIT": (C.CHANNELS, P),
    "SHOP_CASH_CREDIT_REVERSAL": (C.CHANNELS, P),
    "SHOP_CASH_REFUND_DEBIT": (C.CHANNELS, P),
    "SHOP_CASH_REFUND_DEBIT_REVERSAL": (C.CHANNELS, P),
    # money between balances and merchants
    "BALANCE_TRANSFER_INBOUND": (C.TRANSFERS, P),
    "MERCHANT_TO_MERCHANT_CREDIT": (C.TRANSFERS, P),
    "MERCHANT_TO_MERCHANT_CREDIT_REVERSAL": (C.TRANSFERS, P),
    "MERCHANT_TO_MERCHANT_DEBIT": (C.TRANSFERS, P),
    "MERCHANT_TO_MERCHANT_DEBIT_REVERSAL": (C.TRANSFERS, P),
    "SHOPIFY_SOURCE_CREDIT": (C.TRANSFERS, P),
    "SHOPIFY_SOURCE_CREDIT_REVERSAL": (C.TRANSFERS, P),
    "SHOPIFY_SOURCE_DEBIT": (C.TRANSFERS, P),
    "SHOPIFY_SOURCE_DEBIT_REVERSAL": (C.TRANSFERS, P),
    # Shopify Capital
    "ADVANCE": (C.FINANCING, P),
    "ADVANCE_FUNDING": (C.FINANCING, P),
}

del C, P, D


def categories_of(transaction_type: str) -> tuple[Category, Category] | None:
    """(amount category, fee category) of a ShopifyPaymentsTransactionType; None if unknown."""
    return TRANSACTION_TYPES.get(transaction_type)


# What a transaction is matched to (domain/payouts/matching.py): the order's sales order, its
# credit memo, or (a dispute) the order and its sales order. Other types stand on no document.
MATCHED_TYPES: dict[str, str] = {
    "CHARGE": "sales_order",
    "REFUND": "credit_memo",
    "REFUND_FAILURE": "credit_memo",
    "DISPUTE_WITHDRAWAL": "sales_order",
    "DISPUTE_REVERSAL": "sales_order",
}
