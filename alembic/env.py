"""Alembic environment: SQLModel metadata of every model module, URL from the settings.

URL: ``config.attributes["url"]`` (core.db.migrate) > MIGRATION_DATABASE_URL > DATABASE_URL >
the embedded SQLite. App role for the grants (PostgreSQL): ``config.attributes["app_role"]`` >
``-x app_role=NAME`` > FLOWDESK_APP_ROLE > ``flowdesk_app``; stored back into
``config.attributes["app_role"]`` for the revisions to read.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool

from core.db import DEFAULT_APP_ROLE, load_models, make_engine, migration_url

config = context.config
# Only when run from the CLI: reconfiguring logging inside the app or pytest would hijack it.
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = load_models()
config.attributes["app_role"] = (
    config.attributes.get("app_role")
    or context.get_x_argument(as_dictionary=True).get("app_role")
    or os.environ.get("FLOWDESK_APP_ROLE")
    or DEFAULT_APP_ROLE
)
url = migration_url(config.attributes.get("url"))


def run_offline() -> None:
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER constraints: later revisions get copy-and-move batches.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
