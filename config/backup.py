"""Settings section ``backup``: the cloud database's backups (pgBackRest).

``teddy-cloud backup take|check|list|restore`` run ``pgbackrest`` with these; its own
settings (repository, retention, the cluster's data directory) live in ``config_file``::

    [backup]
    stanza = "teddy"
    config_file = "/etc/pgbackrest/pgbackrest.conf"
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from config.settings import Section


class BackupSettings(Section):
    """Backups and point-in-time recovery of the cloud's PostgreSQL (pgBackRest)."""

    stanza: str = Field(default="teddy", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """pgBackRest stanza: the name of the cluster's backup set."""
    config_file: Path = Path("/etc/pgbackrest/pgbackrest.conf")
    """pgBackRest configuration (repository, retention, ``pg1-path``)."""
    binary: str = "pgbackrest"
    """The ``pgbackrest`` program (a name on PATH or a path)."""
    user: str | None = "postgres"
    """The cluster's owner: when ``teddy-cloud backup`` runs as root, pgBackRest runs as
    this user (``runuser``); None: as whoever runs it."""
    timeout_s: float = Field(default=6 * 3600.0, gt=0)
    """Longest a backup or restore may run, seconds."""
