"""Plain SQL migrations, applied in file-name order, each once, recorded in
``schema_migrations``. Safe to run from several machines at once (advisory lock)."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from config.errors import CloudError

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "sync.cloud.migrations"
LOCK_ID = 0x7E44_0001
"""PostgreSQL advisory lock held while migrating."""


def migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` for every migration file, in order."""
    folder = resources.files(MIGRATIONS_PACKAGE)
    found = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(Path(p.name).stem, p.read_text()) for p in found]


def migrate(conn) -> list[str]:
    """Apply pending migrations on a psycopg connection; returns the versions applied."""
    import psycopg

    applied_now = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
                logger.info("applied migration %s", version)
    except psycopg.Error as exc:
        failing = applied_now[-1] if applied_now else "schema_migrations"
        raise CloudError(f"migration failed near {failing}: {exc} — nothing was applied") from exc
    return applied_now
