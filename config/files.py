"""Checks that the files a configuration names are there and usable, field by field.

Loading settings does not open the TLS files (``teddy chat`` needs no broker); ``teddy config
check`` and the MQTT link do, so a missing or wrong file is one line naming the field and
the way out, never a bare ``FileNotFoundError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.settings import TlsSettings

TLS_FIELDS = ("ca_file", "cert_file", "key_file")
"""The ``mqtt.tls`` fields that name files."""


def tls_file_problems(tls: TlsSettings, section: str = "mqtt.tls") -> list[str]:
    """One line per TLS file that is missing, not a file, unreadable or (the CA) not PEM."""
    problems = []
    for field in TLS_FIELDS:
        path = getattr(tls, field)
        if path is None:
            continue
        problem = _file_problem(Path(path))
        if problem is None and field == "ca_file":
            problem = _ca_problem(Path(path))
        if problem is not None:
            variable = f"TEDDY_{section.upper().replace('.', '__')}__{field.upper()}"
            problems.append(f"{section}.{field} {path} {problem} — put the file there (readable "
                            f"by the service user) or set {variable} to the right path")
    return problems


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    return None


def _ca_problem(path: Path) -> str | None:
    import ssl

    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        return "is not a PEM bundle of CA certificates"
    return None
