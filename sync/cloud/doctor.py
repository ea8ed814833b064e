"""``teddy-cloud doctor``: is a set-up cloud host working? One line per problem, naming the fix.

Checks, against the same site file as ``teddy-cloud setup``: the broker accepts the fleet
operator's login; PostgreSQL accepts the services' role; each service this host runs answers
on its port (ingest's metrics per instance, the notifier's metrics, the parent app); the
broker's certificate and the CA are not about to expire and name every broker address; every
service account exists on the broker with its credential, and the edges are in step with the
core (``fleet edges check``); the newest backup is younger than 26 h and what range a restore
can reach; WAL archiving is on and not failing.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from config.errors import CloudError
from sync.cloud.setup import cert_days_left, cert_names, cloud_settings, psql
from sync.cloud.setup_site import Site, service_accounts

logger = logging.getLogger(__name__)

BACKUP_MAX_AGE = timedelta(hours=26)
"""As the TeddyBackupTooOld alert."""


@dataclass
class Report:
    """What doctor found: problems (each names its fix) and notes (what is fine)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def check_broker(site: Site, report: Report) -> bool:
    """The broker's cloud listener takes ``svc.fleet``'s login."""
    if not _listening(site.broker_port):
        report.problems.append(f"broker: nothing listens on 127.0.0.1:{site.broker_port} — "
                               "systemctl start mosquitto (journalctl -u mosquitto for why)")
        return False
    from sync.cloud.broker_accounts import broker_auth

    try:
        with broker_auth(cloud_settings(site)) as auth:
            auth.has_service("svc.fleet")
    except (CloudError, OSError) as exc:
        report.problems.append(f"broker: the administrator cannot log in ({exc}) — check "
                               "/etc/teddy/credentials/broker-admin-password")
        return False
    report.notes.append(f"broker: up on 127.0.0.1:{site.broker_port}")
    return True


def check_database(site: Site, report: Report) -> bool:
    """PostgreSQL takes the services' role and password."""
    from sync.cloud import db

    try:
        with db.connect(cloud_settings(site).cloud) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure is the one problem to report
        report.problems.append(f"database: {site.pg_dsn} refused ({type(exc).__name__}) — "
                               "systemctl start postgresql; check credentials/pgpass")
        return False
    report.notes.append(f"database: {site.pg_dsn} up")
    return True


def service_ports(site: Site) -> list[tuple[str, int, str]]:
    """``(service, port, unit)`` for every service this host runs."""
    ports = []
    if "ingest" in site.services:
        ports += [(f"ingest@{n}", site.metrics_port + n, f"teddy-cloud-ingest@{n}")
                  for n in range(1, site.ingest_instances + 1)]
    if "notify" in site.services:
        ports.append(("notify", site.notify_metrics_port, "teddy-cloud-notify"))
    if "portal" in site.services:
        ports.append(("portal", site.portal_port, "teddy-cloud-portal"))
    return ports


def check_services(site: Site, report: Report) -> None:
    """Each service answers on its port (the fleet service has none; its unit is checked by
    systemd)."""
    for name, port, unit in service_ports(site):
        if not _listening(port):
            report.problems.append(f"{name}: nothing listens on 127.0.0.1:{port} — systemctl "
                                   f"restart {unit} (journalctl -u {unit} for why)")


def check_certificates(site: Site, report: Report) -> None:
    """The broker's certificate and the CA: days left, and every broker name on it."""
    for pem, what in ((site.broker_certs / "broker.pem", "broker certificate"),
                      (site.etc / "ca.pem", "fleet CA")):
        if not pem.exists():
            report.problems.append(f"{what}: {pem} is missing — teddy-cloud setup")
            continue
        left = cert_days_left(pem)
        if left < site.renew_days:
            state = "expired" if left < 0 else f"expires in {left:.0f} days"
            fix = ("teddy-cloud setup (reissues it), then systemctl restart mosquitto"
                   if what.startswith("broker") else "make a new CA and re-provision every bear")
            report.problems.append(f"{what}: {pem} {state} — {fix}")
        elif what.startswith("broker"):
            missing = set(site.broker_names) - cert_names(pem)
            if missing:
                report.problems.append(f"broker certificate: does not name "
                                       f"{', '.join(sorted(missing))} — teddy-cloud setup "
                                       "(reissues it)")
            else:
                report.notes.append(f"broker certificate: {left:.0f} days left")


def check_accounts(site: Site, report: Report) -> None:
    """Every service account on the broker with its credential; edges in step with the core
    (the same check as ``teddy-cloud fleet edges check``)."""
    from sync.cloud.broker_accounts import BrokerSet, DynsecAuth, broker_auth
    from sync.cloud.edge_drift import drift

    try:
        with broker_auth(cloud_settings(site)) as auth:
            for account in service_accounts(site):
                file = site.credentials / account.credential
                if not file.exists():
                    report.problems.append(f"accounts: {file} is missing — teddy-cloud setup "
                                           f"(gives {account.username} a new password)")
                elif not auth.has_service(account.username):
                    report.problems.append(f"accounts: {account.username} is not on the broker "
                                           "— teddy-cloud setup (makes it)")
            if isinstance(auth, BrokerSet):
                problems = auth.drift()
            elif isinstance(auth, DynsecAuth):
                problems = drift(auth.list_accounts(), {})
            else:
                problems = []
    except (CloudError, OSError) as exc:
        report.problems.append(f"accounts: cannot list them ({exc}) — fix the broker first")
        return
    report.problems += [f"edges: {p}" for p in problems]


def check_backups(site: Site, report: Report, now: datetime | None = None) -> None:
    """The newest backup's age and the range a restore can reach; WAL archiving."""
    from sync.cloud.backup import Backups

    now = now or datetime.now(UTC)
    settings = cloud_settings(site)
    try:
        with Backups(settings.backup) as backups:
            found = backups.list()
    except CloudError as exc:
        report.problems.append(f"backup: cannot list backups ({exc})")
        return
    if not found:
        report.problems.append("backup: no backup in the repository — teddy-cloud backup "
                               "take --type full")
    else:
        newest = found[-1]
        age = now - newest.stopped
        if age > BACKUP_MAX_AGE:
            report.problems.append(f"backup: the newest ({newest.label}) is "
                                   f"{age.total_seconds() / 3600:.0f} h old — teddy-cloud "
                                   "backup take; systemctl status teddy-cloud-backup-diff.timer")
        report.notes.append(f"backup: {len(found)} backups; a restore can reach from "
                            f"{found[0].stopped.isoformat(timespec='seconds')} to the newest "
                            "archived WAL")
    check_archiving(site, report)


def check_archiving(site: Site, report: Report) -> None:
    """``archive_mode`` on, and the last archive attempt did not fail."""
    try:
        mode = psql(site, "SHOW archive_mode")
        row = psql(site, "SELECT coalesce(last_archived_time::text, ''), "
                         "coalesce(last_failed_time::text, ''), "
                         "coalesce(last_failed_time > coalesce(last_archived_time, "
                         "'epoch'::timestamptz), false) FROM pg_stat_archiver")
    except CloudError as exc:
        report.problems.append(f"WAL archiving: cannot ask PostgreSQL ({exc})")
        return
    if mode != "on":
        report.problems.append("WAL archiving: archive_mode is off — teddy-cloud setup "
                               "(turns it on; restarts PostgreSQL)")
        return
    archived, failed, failing = row.split("|")
    if failing == "t":
        report.problems.append(f"WAL archiving: failing since {failed} — teddy-cloud backup "
                               "check says why (pgBackRest's log: /var/log/pgbackrest)")
    else:
        report.notes.append(f"WAL archiving: last segment archived {archived or 'never'}")


def run_doctor(site: Site) -> Report:
    """Every check; a check that needs a down part is skipped (the part's line says it)."""
    report = Report()
    broker_up = check_broker(site, report)
    database_up = check_database(site, report)
    check_services(site, report)
    check_certificates(site, report)
    if broker_up:
        check_accounts(site, report)
    if site.backup_enabled and database_up:
        check_backups(site, report)
    return report
