"""``teddy-cloud setup``: a cloud host installed in one idempotent command.

What the first-install pages of ``docs/operations.md`` did by hand, in order, each step
reporting ``made ...`` or ``already done``: folders, the database role and database (and the
read-replica roles), the schema, the fleet's CA and the broker's certificate (every name in
``broker_names``; reissued when a name is missing or it is about to expire), the broker's
config and dynamic-security file, a broker (re)start when any of those changed, one broker
account per service with its password as a systemd credential, the keys, the notifier's
config, the units, pgBackRest (Debian's ``/etc/pgbackrest.conf``), WAL archiving, the stanza
and a first full backup. Nothing a step made is ever replaced on a re-run (a password, a
key), except a broker certificate that no longer fits.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import CloudError
from config.settings import Settings
from sync.cloud.provision import write_private
from sync.cloud.setup_site import Site, service_accounts

logger = logging.getLogger(__name__)

DONE = "already done"


@dataclass(frozen=True)
class StepResult:
    """One step's outcome: ``changed`` False means it found everything in place."""

    step: str
    changed: bool
    detail: str

    def line(self) -> str:
        """``setup: <step>: <detail>``."""
        return f"setup: {self.step}: {self.detail}"


class SetupError(CloudError):
    """A step could not be done; the message names the step and the way out."""


def cloud_settings(site: Site, **extra: Any) -> Settings:
    """The settings the operator's ``teddy-cloud`` has on this host (as ``svc.fleet``)."""
    creds = site.credentials
    password = _pg_password(site)
    dsn = site.pg_dsn.replace(f"{site.db_role}@", f"{site.db_role}:{password}@") \
        if password else site.pg_dsn
    login = creds / "fleet-mqtt-password"
    return Settings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": site.broker_port, "username": "svc.fleet",
                 **({"password_file": login} if login.exists() else {}),
                 **extra.pop("mqtt", {})},
        "cloud": {"pg_dsn": dsn},
        "fleet": {"signing_key_file": creds / "fleet-signing.key",
                  "claim_key_file": creds / "claim.key",
                  "claim_signing_key_file": creds / "claim-signing.key",
                  "broker_admin_password_file": creds / "broker-admin-password",
                  "edge_brokers": list(site.edge_brokers)},
        "portal": {"cloud_key_file": creds / "portal-cloud.key"},
        "backup": {"stanza": site.backup_stanza, "config_file": site.pgbackrest_conf},
        **extra})


def _pg_password(site: Site) -> str | None:
    try:
        line = (site.credentials / "pgpass").read_text().strip()
    except OSError:
        return None
    return line.rsplit(":", 1)[-1] or None


# --- the steps --------------------------------------------------------------------------------


def step_folders(site: Site) -> StepResult:
    """``/etc/teddy`` (0755) and its ``credentials`` (0700 root)."""
    made = []
    for folder, mode in ((site.etc, 0o755), (site.credentials, 0o700)):
        if not folder.is_dir():
            folder.mkdir(parents=True, mode=mode)
            made.append(str(folder))
        os.chmod(folder, mode)
    return StepResult("folders", bool(made), f"made {', '.join(made)}" if made else DONE)


def step_cloud_toml(site: Site) -> StepResult:
    """``/etc/teddy/cloud.toml``: world-readable, no secrets; kept if it exists."""
    if site.cloud_toml.exists():
        return StepResult("cloud.toml", False, DONE)
    creds = "/etc/teddy/credentials" if site.root == Path("/") else str(site.credentials)
    text = (
        "# Written by teddy-cloud setup. World-readable (DynamicUser units): NO SECRETS.\n"
        "# Secrets are systemd credentials in /etc/teddy/credentials (docs/operations.md).\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {site.broker_port}\nkeepalive = 30\n\n'
        f'[cloud]\npg_dsn = "{site.pg_dsn}"\nshare_group = "ingest"\n'
        f"metrics_port = {site.metrics_port}\n\n"
        f'[fleet]\nsigning_key_file = "{creds}/fleet-signing.key"\n'
        f'claim_key_file = "{creds}/claim.key"\n'
        f'claim_signing_key_file = "{creds}/claim-signing.key"\n'
        f'broker_admin_password_file = "{creds}/broker-admin-password"\n'
        + (f"edge_brokers = {list(site.edge_brokers)!r}\n".replace("'", '"')
           if site.edge_brokers else "")
        + f'\n[portal]\ncloud_key_file = "{creds}/portal-cloud.key"\n'
        f"port = {site.portal_port}\n\n"
        f'[backup]\nstanza = "{site.backup_stanza}"\nconfig_file = "{site.pgbackrest_conf}"\n')
    write_private(site.cloud_toml, text, mode=0o644)
    return StepResult("cloud.toml", True, f"made {site.cloud_toml}")


def psql(site: Site, sql: str, database: str | None = None) -> str:
    """Run ``sql`` as the database administrator; its output (tuples only)."""
    dsn = site.db_admin_dsn
    if database:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    command = ["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]
    if site.db_admin_user and os.geteuid() == 0:
        command = ["runuser", "-u", site.db_admin_user, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    if done.returncode != 0:
        raise SetupError(f"database: {done.stderr.strip() or done.returncode} — check "
                         f"database.admin_dsn ({site.db_admin_dsn}) reaches a superuser")
    return done.stdout.strip()


def _role_exists(site: Site, role: str) -> bool:
    return psql(site, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'") == "1"


def _pgpass_line(site: Site, role: str, password: str, database: str | None = None) -> str:
    return f"{site.db_host}:{site.db_port}:{database or site.db_name}:{role}:{password}\n"


def step_database(site: Site) -> StepResult:
    """Role and database ``teddy``; the role's password in ``credentials/pgpass``."""
    made = []
    pgpass = site.credentials / "pgpass"
    if not _role_exists(site, site.db_role) or not pgpass.exists():
        password = secrets.token_hex(24)
        verb = "ALTER" if _role_exists(site, site.db_role) else "CREATE"
        psql(site, f"{verb} ROLE {site.db_role} LOGIN PASSWORD '{password}'")
        write_private(pgpass, _pgpass_line(site, site.db_role, password))
        made.append(f"role {site.db_role} ({verb.lower()}d), {pgpass}")
    if psql(site, f"SELECT 1 FROM pg_database WHERE datname = '{site.db_name}'") != "1":
        psql(site, f"CREATE DATABASE {site.db_name} OWNER {site.db_role}")
        made.append(f"database {site.db_name}")
    return StepResult("database", bool(made), f"made {', '.join(made)}" if made else DONE)


def step_migrate(site: Site) -> StepResult:
    """The schema, as the ``teddy`` role (``teddy-cloud migrate``)."""
    from sync.cloud import db
    from sync.cloud.migrate import migrate

    with db.connect(cloud_settings(site).cloud) as conn:
        applied = migrate(conn)
    return StepResult("schema", bool(applied),
                      f"applied {len(applied)} migrations" if applied else DONE)


def step_replica_roles(site: Site) -> StepResult:
    """``replicator`` (streaming replication) and ``teddy_ro`` (read-only reads), each with a
    libpq password file in the credentials folder."""
    replicator, reader = site.db_replica_roles
    made = []
    for role, options, database in ((replicator, "REPLICATION LOGIN", "replication"),
                                    (reader, "LOGIN", site.db_name)):
        file = site.credentials / f"{role}-pgpass"
        if _role_exists(site, role) and file.exists():
            continue
        password = secrets.token_hex(24)
        verb = "ALTER" if _role_exists(site, role) else "CREATE"
        psql(site, f"{verb} ROLE {role} {options} PASSWORD '{password}'")
        write_private(file, _pgpass_line(site, role, password, database))
        made.append(f"role {role}")
    psql(site, f"ALTER ROLE {reader} SET default_transaction_read_only = on")
    grants = (f"GRANT CONNECT ON DATABASE {site.db_name} TO {reader}; "
              f"GRANT USAGE ON SCHEMA public TO {reader}; "
              f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}; "
              f"ALTER DEFAULT PRIVILEGES FOR ROLE {site.db_role} IN SCHEMA public "
              f"GRANT SELECT ON TABLES TO {reader}")
    psql(site, grants, database=site.db_name)
    return StepResult("replica roles", bool(made), f"made {', '.join(made)}" if made else DONE)


def openssl(*args: str, stdin: str | None = None) -> str:
    """Run ``openssl``; :class:`SetupError` with its message."""
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60,
                          input=stdin)
    if done.returncode != 0:
        raise SetupError(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def cert_days_left(pem: Path) -> float:
    """Days until ``pem`` expires (negative: expired)."""
    from datetime import UTC, datetime

    end = openssl("x509", "-in", str(pem), "-noout", "-enddate").strip().split("=", 1)[1]
    expires = datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    return (expires - datetime.now(UTC)).total_seconds() / 86400


def cert_names(pem: Path) -> set[str]:
    """The DNS names and addresses on ``pem``."""
    text = openssl("x509", "-in", str(pem), "-noout", "-ext", "subjectAltName")
    names = set()
    for item in text.replace("\n", ",").split(","):
        kind, _, value = item.strip().partition(":")
        if kind in ("DNS", "IP Address"):
            names.add(value.strip())
    return names


def _san(names: tuple[str, ...]) -> str:
    import ipaddress

    parts = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            parts.append(f"IP:{name}")
        except ValueError:
            parts.append(f"DNS:{name}")
    return ",".join(parts)


def step_certificates(site: Site) -> StepResult:
    """The fleet's CA (``/root/teddy-ca``, key 0600), the broker's certificate naming every
    ``broker_names`` entry, installed for Mosquitto and the CA for the cloud."""
    ca, certs = site.ca_dir, site.broker_certs
    made = []
    ca.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (ca / "ca.pem").exists():
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                "/CN=teddy-fleet-ca", "-keyout", str(ca / "ca.key"), "-out", str(ca / "ca.pem"))
        os.chmod(ca / "ca.key", 0o600)
        made.append("CA")
    installed = certs / "broker.pem"
    why = _broker_cert_problem(site, installed)
    if why:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={site.broker_names[0]}",
                "-addext", f"subjectAltName={_san(site.broker_names)}",
                "-keyout", str(ca / "broker.key"), "-out", str(ca / "broker.csr"))
        openssl("x509", "-req", "-in", str(ca / "broker.csr"), "-CA", str(ca / "ca.pem"),
                "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-days", str(site.cert_days),
                "-copy_extensions", "copy", "-out", str(ca / "broker.pem"))
        certs.mkdir(parents=True, exist_ok=True, mode=0o755)
        group = _group_of(site.mosquitto_user)
        write_private(certs / "broker.key", (ca / "broker.key").read_text(), mode=0o640)
        if group is not None:
            os.chown(certs / "broker.key", 0 if os.geteuid() == 0 else -1, group)
        write_private(installed, (ca / "broker.pem").read_text(), mode=0o644)
        made.append(f"broker certificate ({why})")
    for target in (certs / "ca.pem", site.etc / "ca.pem"):
        if not target.exists() or target.read_bytes() != (ca / "ca.pem").read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_private(target, (ca / "ca.pem").read_text(), mode=0o644)
            made.append(str(target))
    return StepResult("certificates", bool(made), f"made {', '.join(made)}" if made else DONE)


def _broker_cert_problem(site: Site, pem: Path) -> str:
    if not pem.exists():
        return "new"
    missing = set(site.broker_names) - cert_names(pem)
    if missing:
        return f"added {', '.join(sorted(missing))}"
    if cert_days_left(pem) < site.renew_days:
        return "renewed: it was about to expire"
    return ""


def _group_of(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_gid
    except KeyError:
        return None


def broker_config(site: Site) -> str:
    """The shipped ``mosquitto.conf`` with this site's paths, ports and user."""
    text = (site.share / "config" / "examples" / "mosquitto.conf").read_text()
    replace = {
        "/var/lib/mosquitto/": f"{site.path('/var/lib/mosquitto')}/",
        "/run/mosquitto/": f"{site.path('/run/mosquitto')}/",
        "/var/log/mosquitto/": f"{site.path('/var/log/mosquitto')}/",
        "/etc/mosquitto/certs/": f"{site.broker_certs}/",
        "user mosquitto": f"user {site.mosquitto_user}",
        "listener 1883 127.0.0.1": f"listener {site.broker_port} 127.0.0.1",
        "listener 8883": f"listener {site.tls_port}",
    }
    if site.root == Path("/"):
        replace = {k: v for k, v in replace.items() if not k.startswith("/")}
    for shipped, ours in replace.items():
        text = text.replace(shipped, ours)
    return text


def step_broker_config(site: Site) -> StepResult:
    """``/etc/mosquitto/mosquitto.conf`` (the shipped one) and the dynamic-security file with
    its administrator (``broker-init``)."""
    from sync.cloud.broker_init import init_broker

    made = []
    wanted = broker_config(site)
    conf = site.mosquitto_conf
    if not conf.exists() or conf.read_text() != wanted:
        conf.parent.mkdir(parents=True, exist_ok=True)
        write_private(conf, wanted, mode=0o644)
        made.append(str(conf))
    for folder in ("/var/lib/mosquitto", "/var/log/mosquitto", "/run/mosquitto"):
        path = site.path(folder)
        if not path.exists():
            path.mkdir(parents=True, mode=0o755)
            if os.geteuid() == 0 and _group_of(site.mosquitto_user) is not None:
                shutil.chown(path, site.mosquitto_user, site.mosquitto_user)
    if not site.dynsec_file.exists():
        owner = site.mosquitto_user if _group_of(site.mosquitto_user) is not None else None
        init_broker(site.dynsec_file, site.credentials / "broker-admin-password", owner=owner)
        made.append(f"{site.dynsec_file} (administrator svc.admin)")
    return StepResult("broker config", bool(made), f"made {', '.join(made)}" if made else DONE)


def broker_listening(site: Site) -> bool:
    """Whether the cloud's listener accepts connections."""
    try:
        with socket.create_connection(("127.0.0.1", site.broker_port), timeout=1):
            return True
    except OSError:
        return False


def step_broker_running(site: Site, changed: bool) -> StepResult:
    """Restart the broker when its config, certificate or accounts' file changed (or it is not
    running), with ``broker_restart``; wait for its listener."""
    if not changed and broker_listening(site):
        return StepResult("broker", False, DONE)
    _run_shell(site.broker_restart, "broker_restart")
    deadline = time.monotonic() + 20
    while not broker_listening(site):
        if time.monotonic() > deadline:
            raise SetupError(f"broker: nothing listens on 127.0.0.1:{site.broker_port} after "
                             f"{site.broker_restart!r} — see the broker's log")
        time.sleep(0.1)
    return StepResult("broker", True, "(re)started with broker_restart, listening")


def _run_shell(command: str, key: str) -> None:
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SetupError(f"{key} {command!r} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-300:]}")


def step_accounts(site: Site) -> StepResult:
    """One broker account per service (:func:`service_accounts`), its password in its
    credential file; an account whose file is missing gets a new password."""
    from sync.cloud.broker_accounts import broker_auth

    made = []
    with broker_auth(cloud_settings(site)) as auth:
        for account in service_accounts(site):
            file = site.credentials / account.credential
            if auth.has_service(account.username) and file.exists():
                continue
            password = secrets.token_urlsafe(24)
            auth.set_service(account.username, account.role, password)
            write_private(file, password + "\n")
            made.append(account.username)
    return StepResult("service accounts", bool(made),
                      f"made {', '.join(made)}" if made else DONE)


def step_keys(site: Site) -> StepResult:
    """The fleet's signing key, the claim keys and the cloud key (made once, never replaced)."""
    from config.keyfile import load_key_file
    from sync.cloud.fleet import generate_signing_key
    from sync.cloud.identity import load_private_key

    creds = site.credentials
    made = []
    if not (creds / "fleet-signing.key").exists():
        generate_signing_key(creds / "fleet-signing.key", exist_ok=True)
        made.append("fleet-signing.key")
    for name, kind in (("claim.key", "x25519"), ("claim-signing.key", "ed25519")):
        if not (creds / name).exists():
            load_private_key(creds / name, kind, create=True)  # type: ignore[arg-type]
            made.append(name)
    if not (creds / "portal-cloud.key").exists():
        load_key_file(creds / "portal-cloud.key", create=True)
        made.append("portal-cloud.key")
    return StepResult("keys", bool(made), f"made {', '.join(made)}" if made else DONE)


def step_notify(site: Site) -> StepResult:
    """The notifier's config credential (add channels to it by hand: they hold secrets)."""
    file = site.credentials / "notify.toml"
    if file.exists():
        return StepResult("notify.toml", False, DONE)
    write_private(file, f'[cloud]\npg_dsn = "{site.pg_dsn}"\n\n[notify]\n'
                        f"metrics_port = {site.notify_metrics_port}\n"
                        "# channels: see the [notify] example in config/examples/cloud.toml\n")
    return StepResult("notify.toml", True, f"made {file}")


def units(site: Site) -> list[str]:
    """The units this host enables: migrate, every ingest instance, and the services."""
    names = ["teddy-cloud-migrate.service"]
    names += [f"teddy-cloud-ingest@{n}.service" for n in range(1, site.ingest_instances + 1)]
    names += [f"teddy-cloud-{s}.service" for s in site.services if s != "ingest"]
    names += ["teddy-cloud-retention.timer"]
    if site.backup_enabled:
        names += ["teddy-cloud-backup-full.timer", "teddy-cloud-backup-diff.timer"]
    return names


def step_units(site: Site) -> StepResult:
    """The unit files (unless the package put them in ``/usr/lib/systemd/system``), then
    ``systemctl daemon-reload`` and ``enable --now`` of :func:`units`."""
    made = []
    packaged = site.path("/usr/lib/systemd/system/teddy-cloud-ingest@.service").exists()
    if not packaged:
        site.units_dir.mkdir(parents=True, exist_ok=True)
        for unit in sorted((site.share / "systemd").glob("teddy-cloud-*")):
            target = site.units_dir / unit.name
            if not target.exists() or target.read_bytes() != unit.read_bytes():
                write_private(target, unit.read_text(), mode=0o644)
                made.append(unit.name)
    if site.systemctl:
        wanted = units(site)
        enabled = subprocess.run([*shlex.split(site.systemctl), "is-enabled", *wanted],
                                 capture_output=True, text=True, timeout=60)
        if made or enabled.returncode != 0:
            _run_shell(f"{site.systemctl} daemon-reload", "systemctl")
            _run_shell(f"{site.systemctl} enable --now {' '.join(wanted)}", "systemctl")
            made.append(f"enabled {len(wanted)} units")
    detail = f"made {', '.join(made)}" if made else DONE + (" (packaged)" if packaged else "")
    return StepResult("units", bool(made), detail)


def step_pgbackrest(site: Site) -> StepResult:
    """``/etc/pgbackrest.conf`` (Debian's path; owner postgres, 0640, a random repository
    passphrase) and its folders."""
    conf = site.pgbackrest_conf
    folders = [site.path(p) for p in ("/var/lib/pgbackrest", "/var/log/pgbackrest",
                                      "/var/spool/pgbackrest", "/tmp/pgbackrest")]
    for folder in folders:
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o750)
            _give_postgres(folder)
    kept = ""
    if conf.exists():
        if f"[{site.backup_stanza}]" in conf.read_text().splitlines():
            return StepResult("pgbackrest", False, DONE)
        kept = f" (the one without stanza {site.backup_stanza} kept as {conf}.before-teddy)"
        shutil.copy2(conf, conf.with_name(conf.name + ".before-teddy"))  # Debian's template
    data_dir = psql(site, "SHOW data_directory")
    socket_dir = psql(site, "SHOW unix_socket_directories").split(",")[0].strip()
    port = psql(site, "SHOW port")
    text = ("# Written by teddy-cloud setup (Debian's path). Keep the passphrase in a secret "
            "store too.\n[global]\n"
            f"repo1-path={folders[0]}\nrepo1-retention-full=2\nrepo1-retention-full-type=count\n"
            f"repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={secrets.token_urlsafe(32)}\n"
            f"compress-type=lz4\nstart-fast=y\nprocess-max=2\nlog-level-console=warn\n"
            f"log-level-file=info\nlog-path={folders[1]}\nspool-path={folders[2]}\n"
            f"lock-path={folders[3]}\n\n"
            f"[{site.backup_stanza}]\npg1-path={data_dir}\npg1-port={port}\n"
            f"pg1-socket-path={socket_dir}\n")
    conf.parent.mkdir(parents=True, exist_ok=True)
    write_private(conf, text, mode=0o640, owner=_postgres())
    return StepResult("pgbackrest", True, f"made {conf}{kept}")


def _postgres() -> str | None:
    return "postgres" if os.geteuid() == 0 and _group_of("postgres") is not None else None


def _give_postgres(path: Path) -> None:
    if _postgres():
        shutil.chown(path, "postgres", "postgres")


def archive_command(site: Site) -> str:
    """PostgreSQL's ``archive_command`` for this site."""
    return (f"pgbackrest --config={site.pgbackrest_conf} --stanza={site.backup_stanza} "
            "archive-push %p")


def step_archiving(site: Site) -> StepResult:
    """WAL archiving (``ALTER SYSTEM``): ``wal_level``, ``archive_mode``, ``archive_command``,
    ``archive_timeout``; PostgreSQL restarted (``db_restart``) only when it must be."""
    wanted = {"wal_level": "replica", "archive_mode": "on",
              "archive_command": archive_command(site),
              "archive_timeout": f"{site.backup_archive_timeout}s"}
    now = {name: psql(site, f"SHOW {name}") for name in wanted}
    if now["archive_timeout"].endswith("min"):
        now["archive_timeout"] = f"{int(now['archive_timeout'][:-3]) * 60}s"
    changed = [name for name, value in wanted.items() if now[name] != value]
    if not changed:
        return StepResult("WAL archiving", False, DONE)
    for name in changed:
        value = wanted[name].replace("'", "''")
        psql(site, f"ALTER SYSTEM SET {name} = '{value}'")
    if {"wal_level", "archive_mode"} & set(changed):
        _run_shell(site.db_restart, "database.restart")
        _wait_for_database(site)
    else:
        psql(site, "SELECT pg_reload_conf()")
    return StepResult("WAL archiving", True, f"set {', '.join(changed)}")


def _wait_for_database(site: Site) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            psql(site, "SELECT 1")
            return
        except SetupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def step_backup(site: Site) -> StepResult:
    """The pgBackRest stanza (``backup init``) and, if the repository holds none, a first
    full backup."""
    from sync.cloud.backup import Backups

    settings = cloud_settings(site)
    with Backups(settings.backup, settings.cloud) as backups:
        backups.init()
        if backups.list():
            return StepResult("backup", False, DONE)
        taken = backups.take("full")
    return StepResult("backup", True, f"stanza {site.backup_stanza}, first full backup "
                                      f"{taken.label}")


def steps(site: Site) -> Iterator[Callable[[], StepResult]]:
    """Every step, in order (the broker restart depends on what came before it)."""
    yield lambda: step_folders(site)
    yield lambda: step_cloud_toml(site)
    yield lambda: step_database(site)
    yield lambda: step_migrate(site)
    yield lambda: step_replica_roles(site)
    broker_changed: list[bool] = []

    def certificates() -> StepResult:
        result = step_certificates(site)
        broker_changed.append(result.changed)
        return result

    def broker() -> StepResult:
        result = step_broker_config(site)
        broker_changed.append(result.changed)
        return result

    yield certificates
    yield broker
    yield lambda: step_broker_running(site, any(broker_changed))
    yield lambda: step_accounts(site)
    yield lambda: step_keys(site)
    yield lambda: step_notify(site)
    if site.backup_enabled:
        yield lambda: step_pgbackrest(site)
        yield lambda: step_archiving(site)
        yield lambda: step_backup(site)
    yield lambda: step_units(site)


def run_setup(site: Site, out: Callable[[str], None] = print) -> list[StepResult]:
    """Run every step, printing one line each; stops at the first that fails (re-run it
    after the fix: every step is idempotent)."""
    done = []
    for step in steps(site):
        result = step()
        out(result.line())
        done.append(result)
    return done
