"""A throwaway PostgreSQL database on the machine's server, with the cloud schema if asked."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

ADMIN_DSN = os.environ.get("TEDDY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
"""Where the test databases are created and dropped."""


class Database:
    """A throwaway PostgreSQL database on the machine's server."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"teddy_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, _ = ADMIN_DSN.rpartition("/")
        self.dsn = f"{base}/{self.name}"

    def connect(self):
        """A new autocommit connection to this database."""
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def drop(self) -> None:
        """Drop the database, disconnecting anyone still on it."""
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@contextmanager
def migrated_database():
    """A throwaway database with the cloud schema, dropped afterwards."""
    from sync.cloud.migrate import migrate

    db = Database()
    try:
        with db.connect() as conn:
            migrate(conn)
        yield db
    finally:
        db.drop()
