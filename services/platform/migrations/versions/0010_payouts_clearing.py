"""Payouts (issue 11): the payment gateways of each Shopify order, for the month-end report's
clearing of payments through other gateways (PayPal, gift cards, manual payments;
domain/payouts/clearing.py). Built by the payment-gateways projection (projections/payouts.py)
from the order webhooks' facts (shopify.orders.v1: `payment_gateway_names`, and the order's
transactions by gateway where the source states them).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        -- One row per Shopify order: the gateways that paid it as the latest version of the order
        -- said (Shopify's names, as sent), and the successful sales and captures per gateway where
        -- the order carried its transactions ([[gateway, amount], ...], shop currency).
        CREATE TABLE readmodel.order_payment_gateways (
            shopify_order_id bigint PRIMARY KEY,
            gateway_names text[] NOT NULL DEFAULT '{}',
            gateway_amounts jsonb NOT NULL DEFAULT '[]',
            order_updated_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL
        );
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS readmodel.order_payment_gateways")
