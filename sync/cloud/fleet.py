"""Fleet operations: sign and send commands, push desired config, list bears and alerts,
delete a family's data on both sides, unpair.

Every command and desired config is signed with the fleet's Ed25519 key
(``fleet.signing_key_file``, PEM, mode 0600, made once by ``teddy-cloud fleet keygen``) and
recorded in ``commands``/``device_config``. :func:`record_result` stores a bear's ``up/cmd-result``;
``fleet send --wait`` calls it, and ingest can call it for results that arrive later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import CloudError, ProtocolError
from config.settings import Settings
from sync.cloud import emails, family_keys
from sync.cloud.cloud_link import CloudLink
from sync.protocol import (
    COMMANDS,
    Command,
    CommandResult,
    ConfigDesired,
    ConfigReported,
    parse_command_args,
)

logger = logging.getLogger(__name__)


class FleetError(CloudError):
    """A fleet operation could not be done; the message says why and what to do."""


class UnknownDeviceError(FleetError, LookupError):
    """No bear with that id is known."""


# --- the signing key -------------------------------------------------------------------


def signing_key_path(settings: Settings) -> Path:
    """Where the fleet's private signing key lives."""
    configured = settings.fleet.signing_key_file
    return configured if configured is not None else settings.store.data_dir / "fleet-signing.key"


def generate_signing_key(path: Path, exist_ok: bool = False) -> Any:
    """Make the fleet's Ed25519 signing key at ``path`` (PEM, mode 0600, never replaced).

    An existing key is an error unless ``exist_ok`` (then it is loaded as it is): a second
    key would make every bear reject the fleet's commands."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                     NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not exist_ok:
            raise FleetError(f"a fleet signing key already exists at {path} — keep it (bears "
                             "verify with it); move it away first to replace it") from None
        return _read_signing_key(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    logger.info("created the fleet signing key %s (mode 0600)", path)
    return _read_signing_key(path)


def load_signing_key(settings: Settings, create: bool = False) -> Any:
    """The fleet's ``Ed25519PrivateKey`` from ``fleet.signing_key_file``.

    A missing key is an error naming the file and ``teddy-cloud fleet keygen``: a key minted
    silently on another host would make every command fail on the bears. ``create`` (tests,
    the keygen command) makes it instead."""
    path = signing_key_path(settings)
    if not path.exists():
        if not create:
            raise FleetError(
                f"no fleet signing key at {path} — make it once with `teddy-cloud fleet keygen` "
                "(or copy the fleet's key there, mode 0600) and set fleet.signing_key_file")
        return generate_signing_key(path, exist_ok=True)
    return _read_signing_key(path)


def _read_signing_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if path.stat().st_mode & 0o077:
        raise FleetError(f"fleet signing key {path} is readable by others — run: chmod 600 {path}")
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise FleetError(f"{path} is not an Ed25519 private key — move it away to make a new one")
    return key


def public_key_bytes(private_key: Any) -> bytes:
    """The raw 32-byte public key of a signing key (what bears verify with)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- recording -------------------------------------------------------------------------


def record_result(conn: Any, result: CommandResult) -> bool:
    """Store a bear's command result; True if it was the command's final status.

    The final status is written once, on the ``commands`` row of a command sent to this very
    device that is still ``sent``. Every other result (a replayed command's refusal, a second
    answer, an id this device was never sent) goes to ``command_events`` beside it, once
    (a resend of the same result is not kept twice), and never over the final status.
    """
    args = (result.status, result.reason, json.dumps(result.data), result.finished_at)
    row = conn.execute(
        "UPDATE commands SET status = %s, reason = %s, result = %s, finished_at = to_timestamp(%s)"
        " WHERE id = %s AND device_id = %s AND status = 'sent' RETURNING id",
        (*args, result.id, result.device_id),
    ).fetchone()
    if row is not None:
        return True
    conn.execute(
        "INSERT INTO command_events (command_id, device_id, known, status, reason, result,"
        " finished_at) SELECT %s, %s, EXISTS (SELECT 1 FROM commands WHERE id = %s AND"
        " device_id = %s), %s, %s, %s, to_timestamp(%s)"
        " WHERE NOT EXISTS (SELECT 1 FROM commands WHERE id = %s AND device_id = %s"
        " AND status = %s AND finished_at = to_timestamp(%s))"
        " ON CONFLICT (device_id, command_id, status, finished_at) DO NOTHING",
        (result.id, result.device_id, result.id, result.device_id, *args, result.id,
         result.device_id, result.status, result.finished_at),
    )
    return False


NOT_A_SETTING = " is not a setting"
"""How a bear says it does not know a key (:func:`validate_remote_setting`, every version)."""


def record_reported_config(conn: Any, report: ConfigReported) -> None:
    """Store the config a bear reports (``up/config``). A report refusing only keys the
    bear's software does not know (an older bear and a newer setting) records them as
    unknown to it and asks for its desired config again without them, so the older bear
    takes every other setting (:func:`withheld_keys`)."""
    conn.execute(
        "INSERT INTO device_config (device_id, version, desired, reported, reported_at)"
        " VALUES (%s, 0, '{}', %s, to_timestamp(%s)) ON CONFLICT (device_id) DO UPDATE"
        " SET reported = EXCLUDED.reported, reported_at = EXCLUDED.reported_at",
        (report.device_id, report.model_dump_json(), report.reported_at),
    )
    unknown = sorted(k for k, why in report.rejected.items() if why.endswith(NOT_A_SETTING))
    if not unknown or len(unknown) != len(report.rejected):
        return
    learned = conn.execute(
        "UPDATE device_config c SET unknown_keys = (SELECT to_jsonb(array_agg(DISTINCT k))"
        " FROM (SELECT jsonb_array_elements_text(CASE WHEN c.unknown_firmware IS NOT"
        " DISTINCT FROM d.firmware THEN c.unknown_keys ELSE '[]' END) UNION"
        " SELECT unnest(%s::text[])) AS u(k)), unknown_firmware = d.firmware"
        " FROM devices d WHERE c.device_id = %s AND d.device_id = c.device_id"
        " AND c.desired ?| %s::text[] RETURNING c.device_id", (unknown, report.device_id,
                                                                unknown)).fetchone()
    if learned is not None:
        from sync.cloud.fleet_requests import resend_config

        logger.info("bear %s does not know %s; sending its config without them",
                    report.device_id, ",".join(unknown))
        resend_config(conn, report.device_id)


def withheld_keys(conn: Any, device_id: str) -> frozenset[str]:
    """Desired-config keys this bear's software said it does not know (while it runs the
    software it said so with; an update clears them)."""
    row = conn.execute(
        "SELECT c.unknown_keys FROM device_config c LEFT JOIN devices d USING (device_id)"
        " WHERE c.device_id = %s AND c.unknown_firmware IS NOT DISTINCT FROM d.firmware",
        (device_id,)).fetchone()
    return frozenset(row[0]) if row else frozenset()


@dataclass
class Sent:
    """A command sent, and the bear's answer if we waited for one."""

    command: Command
    """What was sent (signed)."""
    result: CommandResult | None
    """The bear's result; None if we did not wait or it did not come in time."""


class Fleet:
    """The fleet operations on one PostgreSQL connection."""

    def __init__(self, settings: Settings, conn: Any, link: CloudLink | None = None) -> None:
        self.settings = settings
        """Settings (MQTT as the cloud user, fleet section)."""
        self.conn = conn
        """An autocommit psycopg connection."""
        self.link = link
        """A long-lived link to publish on (the fleet service's); None: one per operation."""
        self._key: Any = None

    @property
    def signing_key(self) -> Any:
        """The fleet's private key (loaded once)."""
        if self._key is None:
            self._key = load_signing_key(self.settings)
        return self._key

    # --- reading -------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """Every bear: online, last seen, firmware, backlog, open alerts, pairing."""
        rows = self.conn.execute(
            "SELECT d.device_id, d.online, d.last_seen, d.firmware,"
            " (SELECT count(*) FROM alerts a WHERE a.device_id = d.device_id"
            "   AND a.cleared_at IS NULL) AS open_alerts,"
            " (SELECT COALESCE(h.sample->'metrics'->>'outbox_depth', h.sample->>'outbox_depth')"
            "   FROM health_samples h WHERE h.device_id = d.device_id"
            "   ORDER BY h.sampled_at DESC LIMIT 1) AS backlog,"
            " (SELECT p.status FROM pairings p WHERE p.device_id = d.device_id"
            "   AND p.status <> 'refused' ORDER BY p.first_seen DESC LIMIT 1) AS pairing,"
            " u.state AS update_state, u.target_version, u.reason AS update_reason"
            " FROM devices d LEFT JOIN device_updates u USING (device_id)"
            " ORDER BY d.device_id"
        ).fetchall()
        names = ("device_id", "online", "last_seen", "firmware", "open_alerts", "backlog",
                 "pairing", "update_state", "target_version", "update_reason")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def show(self, device_id: str) -> dict[str, Any]:
        """One bear in detail: the device row, pairing, consent, config, recent commands."""
        device = next((d for d in self.devices() if d["device_id"] == device_id), None)
        if device is None:
            raise UnknownDeviceError(f"no bear {device_id!r} is known — list them with "
                                     "teddy-cloud fleet devices")
        one = self.conn.execute
        device["pairing_id"] = self._current_pairing(device_id)
        device["consent"] = _first(one(
            "SELECT scopes, granted_at FROM consents WHERE device_id = %s AND revoked_at IS NULL"
            " ORDER BY id DESC LIMIT 1", (device_id,)), ("scopes", "granted_at"))
        device["config"] = _first(one(
            "SELECT version, desired, reported, reported_at FROM device_config"
            " WHERE device_id = %s", (device_id,)), ("version", "desired", "reported",
                                                      "reported_at"))
        device["commands"] = [dict(zip(("id", "name", "status", "reason", "issued_at"), r,
                                       strict=True)) for r in one(
            "SELECT id, name, status, reason, issued_at FROM commands WHERE device_id = %s"
            " ORDER BY issued_at DESC LIMIT 10", (device_id,)).fetchall()]
        return device

    def alerts(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Alerts of every bear, newest first (only uncleared ones with ``open_only``)."""
        where = "WHERE cleared_at IS NULL" if open_only else ""
        rows = self.conn.execute(
            f"SELECT id, device_id, kind, severity, message, raised_at, cleared_at FROM alerts"
            f" {where} ORDER BY raised_at DESC LIMIT 500"
        ).fetchall()
        names = ("id", "device_id", "kind", "severity", "message", "raised_at", "cleared_at")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def require_device(self, device_id: str) -> None:
        """Raise :class:`UnknownDeviceError` unless the bear is known."""
        known = self.conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,))
        if known.fetchone() is None:
            raise UnknownDeviceError(f"no bear {device_id!r} is known — list them with "
                                     "teddy-cloud fleet devices")

    # --- commands ------------------------------------------------------------------------

    def _link(self) -> contextlib.AbstractContextManager[CloudLink]:
        """The long-lived link if there is one, else a connection for this operation."""
        if self.link is not None:
            return contextlib.nullcontext(self.link)
        return CloudLink(self.settings)

    def issue(self, device_id: str, name: str, args: dict[str, Any] | None = None,
              ttl_s: float | None = None, command_id: str | None = None) -> Command:
        """A signed command, recorded as ``sent``; :class:`FleetError` (nothing signed) for an
        unknown command or arguments its model in :data:`sync.protocol.COMMANDS` refuses.
        ``command_id``: the id the parent app chose for it (see :mod:`.fleet_requests`)."""
        try:
            parse_command_args(name, args or {})
        except ProtocolError as exc:
            raise FleetError(f"{exc} — nothing was sent") from None
        now = time.time()
        ttl = self.settings.fleet.command_ttl_s if ttl_s is None else ttl_s
        command = Command(id=command_id or uuid.uuid4().hex, device_id=device_id, name=name,
                          args=args or {}, issued_at=now, expires_at=now + ttl
                          ).signed_with(self.signing_key)
        self.conn.execute(
            "INSERT INTO commands (id, device_id, name, args, issued_at, expires_at)"
            " VALUES (%s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
            (command.id, device_id, name, json.dumps(_loggable_args(name, command.args)),
             command.issued_at, command.expires_at),
        )
        return command

    def send(self, device_id: str, name: str, args: dict[str, Any] | None = None,
             wait: bool = False, ttl_s: float | None = None, command_id: str | None = None
             ) -> Sent:
        """Sign, record and publish a command; with ``wait``, wait for and record its result."""
        self.require_device(device_id)
        command = self.issue(device_id, name, args, ttl_s, command_id)
        with self._link() as link:
            results = link.expect(CommandResult, device_id) if wait else None
            link.send(command, device_id)
            logger.info("sent command %s (%s) to %s", command.id, name, device_id)
            result = self._await_result(results, command) if results is not None else None
        return Sent(command, result)

    def answer_within_s(self, name: str) -> float:
        """How long ``send(wait=True)`` waits for the answer to command ``name``: the
        round trip (``fleet.wait_s``) plus the command's own work on the bear."""
        model = COMMANDS.get(name)
        return self.settings.fleet.wait_s + (model.WORK_S if model is not None else 0.0)

    def _await_result(self, results: queue.Queue, command: Command) -> CommandResult | None:
        deadline = time.monotonic() + self.answer_within_s(command.name)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                _topic, payload = results.get(timeout=remaining)
            except queue.Empty:
                break
            try:
                result = CommandResult.from_payload(payload)
            except ProtocolError as exc:
                logger.warning("ignored a malformed cmd-result: %s", exc)
                continue
            if result.id == command.id and result.device_id == command.device_id:
                record_result(self.conn, result)
                return result
        return None

    # --- desired config ------------------------------------------------------------------

    def set_config(self, device_id: str, values: dict[str, Any],
                   wait: bool = False) -> tuple[ConfigDesired, ConfigReported | None]:
        """Merge ``values`` into the bear's desired config, sign and publish it (retained);
        with ``wait``, wait for the bear's report of that version."""
        self.require_device(device_id)
        check_config_locally(self.settings, values)
        row = self.conn.execute(
            "INSERT INTO device_config (device_id, version, desired) VALUES (%s, 1, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET version = device_config.version + 1,"
            " desired = device_config.desired || EXCLUDED.desired RETURNING version, desired",
            (device_id, json.dumps(values)),
        ).fetchone()
        values = {k: v for k, v in row[1].items() if k not in withheld_keys(self.conn,
                                                                           device_id)}
        desired = ConfigDesired(device_id=device_id, version=row[0], values=values,
                                issued_at=time.time()).signed_with(self.signing_key)
        with self._link() as link:
            reports = link.expect(ConfigReported, device_id) if wait else None
            link.send(desired, device_id)
            report = self._await_report(reports, desired) if reports is not None else None
        return desired, report

    def _await_report(self, reports: queue.Queue, desired: ConfigDesired) -> ConfigReported | None:
        deadline = time.monotonic() + self.settings.fleet.wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                _topic, payload = reports.get(timeout=remaining)
            except queue.Empty:
                break
            try:
                report = ConfigReported.from_payload(payload)
            except ProtocolError:
                continue
            if report.version == desired.version:
                record_reported_config(self.conn, report)
                return report
        return None

    # --- deletion and unpairing ----------------------------------------------------------

    def devices_of_parent(self, parent_email: str) -> list[str]:
        """Every bear this parent ever consented for."""
        return sorted({p["device_id"] for p in self.pairings_of_parent(parent_email)})

    def pairings_of_parent(self, parent_email: str) -> list[dict[str, Any]]:
        """Every pairing (family scope) this parent's consent started, and whether it is
        the bear's current one."""
        same, params = emails.matching(self.conn, parent_email, "p.parent_email")
        rows = self.conn.execute(
            "SELECT p.pairing_id::text, p.device_id, d.pairing_id = p.pairing_id"
            f" FROM pairings p LEFT JOIN devices d USING (device_id) WHERE {same}"
            " AND p.status IN ('approved', 'unpaired', 'released') ORDER BY p.approved_at",
            params).fetchall()
        if not rows:
            raise UnknownDeviceError(f"no bear was ever paired by {parent_email} — check the "
                                     "e-mail address (and that this command can read the "
                                     "cloud key, portal.cloud_key_file)")
        return [{"pairing_id": r[0], "device_id": r[1], "current": bool(r[2])} for r in rows]

    def _current_pairing(self, device_id: str) -> str | None:
        row = self.conn.execute("SELECT pairing_id::text FROM devices WHERE device_id = %s",
                                (device_id,)).fetchone()
        return None if row is None else row[0]

    def delete_data(self, device_id: str, ttl_s: float = 7 * 24 * 3600) -> dict[str, Any]:
        """Delete what the bear's CURRENT family kept, on the bear (waits for its
        confirmation) and in PostgreSQL (rows of its current pairing, or of no pairing when
        it is not paired); returns what each side confirmed."""
        self.require_device(device_id)
        pairing_id = self._current_pairing(device_id)
        sent = self.send(device_id, "delete-data", wait=True, ttl_s=ttl_s)
        scope = "device_id = %s AND pairing_id IS NOT DISTINCT FROM %s::uuid"
        with self.conn.transaction():
            turns = self.conn.execute(f"DELETE FROM turns WHERE {scope}",
                                      (device_id, pairing_id)).rowcount
            alerts = self.conn.execute(
                f"DELETE FROM alerts WHERE {scope} AND kind LIKE 'wellbeing.%%'",
                (device_id, pairing_id)).rowcount
        left = self.conn.execute(f"SELECT count(*) FROM turns WHERE {scope}",
                                 (device_id, pairing_id)).fetchone()[0]
        bear = sent.result
        return {
            "device_id": device_id, "pairing_id": pairing_id, "command_id": sent.command.id,
            "cloud": {"turns_deleted": turns, "wellbeing_alerts_deleted": alerts,
                      "turns_left": left},
            "bear": _bear_report(bear),
            "confirmed": left == 0 and bear is not None and bear.ok
                         and bear.data.get("conversations_left") == 0,
        }

    def delete_parent_data(self, parent_email: str,
                           ttl_s: float = 7 * 24 * 3600) -> list[dict[str, Any]]:
        """Delete exactly this parent's data: the rows of every pairing their consent
        started (turns, alerts), never another family's; and on a bear still paired to
        them, its kept data. A bear now with another family is not told (what this parent's
        family left on it was shredded by the unpair or factory reset that ended it)."""
        reports = []
        for pairing in self.pairings_of_parent(parent_email):
            sent = None
            if pairing["current"]:
                sent = self.send(pairing["device_id"], "delete-data", wait=True, ttl_s=ttl_s)
            with self.conn.transaction():
                turns = self.conn.execute("DELETE FROM turns WHERE pairing_id = %s",
                                          (pairing["pairing_id"],)).rowcount
                alerts = self.conn.execute("DELETE FROM alerts WHERE pairing_id = %s",
                                           (pairing["pairing_id"],)).rowcount
                # crypto-shred: copies of the sealed rows in older backups stay unreadable
                family_keys.destroy(self.conn, pairing["pairing_id"])
            left = self.conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                                     (pairing["pairing_id"],)).fetchone()[0]
            bear = None if sent is None else sent.result
            on_bear = (not pairing["current"]) or (bear is not None and bear.ok and
                                                   bear.data.get("conversations_left") == 0)
            reports.append({
                **pairing, "command_id": None if sent is None else sent.command.id,
                "cloud": {"turns_deleted": turns, "alerts_deleted": alerts, "turns_left": left},
                "bear": _bear_report(bear) if pairing["current"] else "not this family's bear "
                        "any more (its data there was shredded when the pairing ended)",
                "confirmed": left == 0 and on_bear,
            })
        return reports

    def unpair(self, device_id: str) -> dict[str, Any]:
        """Tell the bear to unpair (it shreds what it kept and its pairing record), end the
        pairing and consent, and clear its desired config. The bear keeps its identity and
        broker account (manufacture data): it can be paired again, and the fleet still
        reaches it."""
        self.require_device(device_id)
        sent = self.send(device_id, "unpair", wait=True)
        from sync.cloud import custody

        ended = custody.release(self.conn, device_id, actor="operator")
        with self.conn.transaction():  # a pairing of no current generation (older data)
            self.conn.execute("UPDATE consents SET revoked_at = now() WHERE device_id = %s"
                              " AND revoked_at IS NULL", (device_id,))
            self.conn.execute("DELETE FROM device_config WHERE device_id = %s", (device_id,))
        with CloudLink(self.settings) as link:
            link.clear_retained(ConfigDesired, device_id)
        return {"device_id": device_id,
                "pairing_ended": None if ended is None else ended.pairing_id,
                "bear": _bear_report(sent.result)}


def _bear_report(result: CommandResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"status": result.status, "reason": result.reason, **result.data}


def check_config_locally(settings: Settings, values: dict[str, Any]) -> None:
    """Refuse a desired config the bear would refuse (same models), before sending it
    (:class:`FleetError`; the parent app checks with it before asking, no key needed)."""
    from sync.protocol.remote_config import check_remote_config

    _valid, refused = check_remote_config(settings, values)
    if refused:
        raise FleetError("invalid config: " + "; ".join(refused.values()))


def _loggable_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as kept in ``commands`` (a content bundle's files are summarised)."""
    if name == "update-content-pack":
        bundle = args.get("bundle", {})
        return {"bundle": {"version": bundle.get("version"), "files": sorted(bundle.get("files",
                                                                                        {}))}}
    return args


def _first(cursor: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    row = cursor.fetchone()
    return None if row is None else dict(zip(names, row, strict=True))


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``; the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise FleetError(f"{text!r} is not KEY=VALUE — e.g. voice.tts_volume=0.5")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value

