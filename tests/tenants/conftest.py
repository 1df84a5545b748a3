"""Database fixtures (shared: tests/db_fixtures.py documents them)."""

from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
