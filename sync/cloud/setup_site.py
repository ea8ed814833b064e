"""The site file of ``teddy-cloud setup`` and ``doctor`` (``cloud-site.toml``): what this cloud
host is, read and range-checked once, and every path it implies.

Every path is under ``root`` (``/`` on a real host; a scratch folder in tests), so the same
code sets up a real host and an unprivileged copy. The cloud's service accounts are listed in
one place, :func:`service_accounts`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SERVICES = ("ingest", "fleet", "notify", "portal")
"""The long-running cloud services doctor can check."""


@dataclass(frozen=True)
class Account:
    """One cloud service's broker account and the credential file holding its password."""

    username: str
    role: str
    credential: str
    """File name under the credentials folder."""


@dataclass(frozen=True)
class Site:
    """``cloud-site.toml``: one cloud host that is also its broker and database host."""

    root: Path = Path("/")
    broker_names: tuple[str, ...] = ("mqtt.example.com",)
    """Every name bears (and edges' bridges) use for the broker: all go on its certificate."""
    broker_port: int = 1883
    """The loopback listener the cloud services use."""
    tls_port: int = 8883
    """The bears' TLS listener."""
    mosquitto_user: str = "mosquitto"
    broker_restart: str = "systemctl restart mosquitto"
    ingest_instances: int = 1
    metrics_port: int = 9410
    notify_metrics_port: int = 9420
    portal_port: int = 8080
    services: tuple[str, ...] = SERVICES
    """The services this host runs (doctor checks each is up)."""
    systemctl: str = "systemctl"
    """How units are enabled and started; empty: setup only installs them."""
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_name: str = "teddy"
    db_role: str = "teddy"
    db_admin_dsn: str = "postgresql:///postgres"
    db_admin_user: str = "postgres"
    """Run ``psql`` as this system user (peer authentication); empty: as whoever runs setup."""
    db_restart: str = "systemctl restart postgresql"
    db_replica_roles: tuple[str, str] = ("replicator", "teddy_ro")
    backup_enabled: bool = True
    backup_stanza: str = "teddy"
    backup_archive_timeout: int = 60
    cert_days: int = 825
    renew_days: int = 30
    """Setup reissues, and doctor reports, a certificate with fewer days left than this."""
    edge_brokers: tuple[str, ...] = field(default=())

    # -- paths ------------------------------------------------------------------------------

    def path(self, absolute: str) -> Path:
        """``absolute`` (``/etc/teddy``) under ``root``."""
        return self.root / absolute.lstrip("/")

    @property
    def etc(self) -> Path:
        return self.path("/etc/teddy")

    @property
    def credentials(self) -> Path:
        return self.path("/etc/teddy/credentials")

    @property
    def cloud_toml(self) -> Path:
        return self.etc / "cloud.toml"

    @property
    def ca_dir(self) -> Path:
        return self.path("/root/teddy-ca")

    @property
    def broker_certs(self) -> Path:
        return self.path("/etc/mosquitto/certs")

    @property
    def mosquitto_conf(self) -> Path:
        return self.path("/etc/mosquitto/mosquitto.conf")

    @property
    def dynsec_file(self) -> Path:
        return self.path("/var/lib/mosquitto/dynamic-security.json")

    @property
    def pgbackrest_conf(self) -> Path:
        return self.path("/etc/pgbackrest.conf")  # Debian's path

    @property
    def units_dir(self) -> Path:
        return self.path("/etc/systemd/system")

    @property
    def share(self) -> Path:
        """Where the shipped examples and units are: the checkout, or the package's copy."""
        return ROOT if (ROOT / "systemd").is_dir() else Path("/usr/share/teddy-cloud")

    @property
    def pg_dsn(self) -> str:
        """The services' DSN (no password: libpq's password file)."""
        return f"postgresql://{self.db_role}@{self.db_host}:{self.db_port}/{self.db_name}"


def service_accounts(site: Site) -> list[Account]:
    """Every broker account this host's services log in with: one per ingest instance and
    the fleet operator's. (The one place to change when accounts are named differently.)"""
    ingest = [Account(f"svc.ingest-{n}", "ingest", f"mqtt-password-{n}")
              for n in range(1, site.ingest_instances + 1)]
    return [*ingest, Account("svc.fleet", "fleet", "fleet-mqtt-password")]


def load_site(path: Path) -> Site:
    """Read and check ``cloud-site.toml``; :class:`ConfigError` names the bad key and fix."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}) — pass --config with the "
                          "site file (example: config/examples/cloud-site.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}) — fix that line") from None
    return site_from(data, str(path))


def site_from(data: dict[str, Any], source: str = "site") -> Site:
    """A :class:`Site` from a parsed TOML table, every field range-checked."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    known = set(Site.__dataclass_fields__)
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} — see "
                          "config/examples/cloud-site.toml for the keys")
    checked: dict[str, Any] = {}
    for key, value in flat.items():
        checked[key] = _check(key, value, source)
    site = Site(**checked)
    for service in site.services:
        if service not in SERVICES:
            raise ConfigError(f"{source}: services holds {service!r} — use {', '.join(SERVICES)}")
    return site


def _check(key: str, value: Any, source: str) -> Any:
    default = Site.__dataclass_fields__[key].default
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {value!r} {why}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("must be a whole number")
        limits = {"ingest_instances": (1, 64), "backup_archive_timeout": (1, 3600),
                  "cert_days": (30, 3650), "renew_days": (1, 365)}.get(key, (1, 65535))
        if not limits[0] <= value <= limits[1]:
            raise bad(f"is outside {limits[0]}..{limits[1]}")
        return value
    if isinstance(default, Path):
        if not isinstance(value, str) or not os.path.isabs(value):
            raise bad("must be an absolute path")
        return Path(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("must be a list of strings")
        if key == "broker_names":
            if not value or not all(_is_host(v) for v in value):
                raise bad("must list host names or addresses")
        if key == "db_replica_roles" and (len(value) != 2 or not all(NAME.match(v) for v in value)):
            raise bad("must be two role names [replication, read-only]")
        return tuple(value)
    if not isinstance(value, str):
        raise bad("must be a string")
    if key in ("db_name", "db_role", "backup_stanza") and not NAME.match(value):
        raise bad("must be lowercase letters, digits and _")
    if key == "db_host" and not _is_host(value):
        raise bad("must be a host name or address")
    return value


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOST.match(value))
