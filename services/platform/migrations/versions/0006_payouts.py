"""Payouts (issue 11): Shopify payouts and their balance transactions, journals in Prima.

- ingest.shopify_payouts: the payout ingest's record of what it published per payout (its
  status then, the read), so that a poll publishes a payout again only when Shopify changed it;
- readmodel.payouts, readmodel.payout_transactions, readmodel.payout_exceptions: the payout
  reconciliation read model (projections/payouts.py);
- readmodel.sales_documents: what the integration knows of each Shopify order and its Prima
  documents, for the payout decider's matching and charge split (projections/sales_documents.py).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE ingest.shopify_payouts (
            payout_id bigint PRIMARY KEY,
            status text NOT NULL,
            issued_at timestamptz NOT NULL,
            currency text NOT NULL,
            net numeric(18, 2) NOT NULL,
            transaction_count integer NOT NULL,
            read_id uuid NOT NULL,
            published_at timestamptz NOT NULL
        );

        CREATE TABLE readmodel.payouts (
            payout_id bigint PRIMARY KEY,
            state text NOT NULL,
            shopify_status text,
            issued_at timestamptz,
            currency text,
            net numeric(18, 2),
            transaction_count integer NOT NULL DEFAULT 0,
            summary jsonb,
            hold_reason text,
            hold_detail text,
            difference numeric(18, 2),
            journal_command_id uuid,
            journal jsonb,
            journal_number text,
            journal_failure text,
            reversal jsonb,
            reversal_number text,
            matched integer NOT NULL DEFAULT 0,
            unmatched integer NOT NULL DEFAULT 0,
            not_applicable integer NOT NULL DEFAULT 0,
            first_seen_at timestamptz NOT NULL,
            paid_seen_at timestamptz,
            journal_requested_at timestamptz,
            journalled_at timestamptz,
            last_event_at timestamptz NOT NULL,
            last_event_version integer NOT NULL
        );
        CREATE INDEX payouts_issued ON readmodel.payouts (issued_at);
        CREATE INDEX payouts_state ON readmodel.payouts (state);

        CREATE TABLE readmodel.payout_transactions (
            payout_id bigint NOT NULL,
            transaction_id bigint NOT NULL,
            type text NOT NULL,
            category text,
            currency text NOT NULL,
            amount numeric(18, 2) NOT NULL,
            fee numeric(18, 2) NOT NULL,
            net numeric(18, 2) NOT NULL,
            processed_at timestamptz NOT NULL,
            order_id bigint,
            order_name text,
            source_order_transaction_id bigint,
            match_status text,
            document text,
            document_kind text,
            reason text,
            detail text,
            PRIMARY KEY (payout_id, transaction_id)
        );
        CREATE INDEX payout_transactions_order ON readmodel.payout_transactions (order_id);
        CREATE INDEX payout_transactions_unmatched ON readmodel.payout_transactions (payout_id)
            WHERE match_status = 'unmatched';

        CREATE TABLE readmodel.payout_exceptions (
            exception_id uuid PRIMARY KEY,
            payout_id bigint NOT NULL,
            transaction_id bigint,
            kind text NOT NULL,
            reason text NOT NULL,
            payload jsonb NOT NULL,
            action text NOT NULL,
            status text NOT NULL,
            raised_at timestamptz NOT NULL,
            resolved_at timestamptz
        );
        CREATE INDEX payout_exceptions_open ON readmodel.payout_exceptions (status, kind);
        CREATE INDEX payout_exceptions_payout ON readmodel.payout_exceptions (payout_id);

        -- A row without an order (order_name null) holds a refund that came before its order.
        CREATE TABLE readmodel.sales_documents (
            shopify_order_id bigint PRIMARY KEY,
            order_name text,
            currency text,
            presentment_currency text,
            total numeric(18, 2),
            parts jsonb NOT NULL DEFAULT '[]',
            payments jsonb NOT NULL DEFAULT '[]',
            sales_order_number text,
            sales_order_created_at timestamptz,
            credit_memos jsonb NOT NULL DEFAULT '[]',
            order_updated_at timestamptz,
            last_event_at timestamptz NOT NULL
        );
        CREATE INDEX sales_documents_sales_order ON readmodel.sales_documents (sales_order_created_at)
            WHERE sales_order_number IS NOT NULL;
    """)


def downgrade() -> None:
    raise NotImplementedError("forward only")
