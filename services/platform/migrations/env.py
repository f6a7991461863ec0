"""Alembic's environment: migrations run online, in one transaction, under an advisory lock (so
that two `services.setup` started together do not race)."""

from alembic import context
from sqlalchemy import create_engine, text

MIGRATIONS_LOCK = 7_310_000


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATIONS_LOCK})
        try:
            context.configure(connection=connection, transactional_ddl=True, version_table_schema="public")
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATIONS_LOCK})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("shopify-prima migrations run online only (python -m services.setup)")
run_migrations_online()
