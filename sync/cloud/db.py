"""Connections to the system of record: one-off connections and the ingestor's pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config.errors import CloudError
from config.settings import CloudSettings

if TYPE_CHECKING:
    from psycopg import Cursor
    from psycopg.rows import TupleRow

POOL_OPEN_TIMEOUT = 15.0
"""Seconds the pool may take to make its first connection before ingest gives up."""


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def one_row(cursor: Cursor[TupleRow]) -> TupleRow:
    """The row a statement always returns (an aggregate, an upsert or INSERT … RETURNING)."""
    row = cursor.fetchone()
    if row is None:
        raise CloudError("PostgreSQL returned no row where the statement always makes one — "
                         "check the schema is migrated (teddy-cloud migrate)")
    return row


def connect(settings: CloudSettings):
    """A psycopg connection to ``cloud.pg_dsn``; a one-line error if it cannot be made."""
    import psycopg

    try:
        return psycopg.connect(settings.pg_dsn.get_secret_value(), autocommit=True)
    except psycopg.OperationalError as exc:
        raise CloudError(
            f"cannot connect to PostgreSQL: {_reason(exc)} — check TEDDY_CLOUD__PG_DSN"
        ) from None


def open_pool(settings: CloudSettings, prepare: Any = None, dsn: str | None = None,
              setting: str = "TEDDY_CLOUD__PG_DSN"):
    """A psycopg_pool ``ConnectionPool`` of up to ``cloud.pool_size`` autocommit connections
    to ``dsn`` (default ``cloud.pg_dsn``; ``setting`` names it in errors).

    Broken connections (a PostgreSQL restart, ``pg_terminate_backend``) are checked out and
    replaced by the pool; ``prepare(conn)`` runs on every new connection. Raises
    :class:`CloudError` if not even one connection can be made.
    """
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool = ConnectionPool(
        dsn or settings.pg_dsn.get_secret_value(),
        min_size=1,
        max_size=settings.pool_size,
        kwargs={"autocommit": True},
        configure=prepare,
        check=ConnectionPool.check_connection,
        name="teddy-ingest",
        open=False,
    )
    pool.open()
    try:
        pool.wait(POOL_OPEN_TIMEOUT)
    except PoolTimeout:
        pool.close()
        raise CloudError(
            f"cannot connect to PostgreSQL within {POOL_OPEN_TIMEOUT:g} s — check "
            f"{setting} and that the server runs"
        ) from None
    return pool


def read_only(conn: Any) -> None:
    """Pool ``configure`` hook: every transaction on ``conn`` is read-only (a replica's pool:
    a write through it fails even if the DSN points at a primary)."""
    conn.execute("SET default_transaction_read_only = on")
