"""Schema migrations (Alembic): every table of the integration's own, versioned.

`python -m services.setup` runs `upgrade()` before anything starts. A new column or table is a
new file in versions/ (`alembic revision -m "..."` with this folder as script_location, or by
hand after the existing ones); nothing creates tables anywhere else. The event store's tables
belong to the eventsourcing library, which creates them (services/setup.py).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str) -> None:
    command.upgrade(config(database_url), "head")


def head() -> str:
    """The newest revision in versions/."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config("postgresql://unused")).get_current_head()


def current(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(config(database_url).get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
