"""Connections to the system of record."""

from __future__ import annotations

from config.errors import CloudError
from config.settings import CloudSettings


def connect(settings: CloudSettings):
    """A psycopg connection to ``cloud.pg_dsn``; a one-line error if it cannot be made."""
    import psycopg

    try:
        return psycopg.connect(settings.pg_dsn.get_secret_value(), autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CloudError(
            f"cannot connect to PostgreSQL: {reason} — check TEDDY_CLOUD__PG_DSN"
        ) from None
