"""The fleet service: the one process that signs and sends what the parent app asks for
(see :mod:`sync.cloud.fleet_requests`), over one MQTT link it keeps for its whole life.

``teddy-cloud fleet serve`` runs it (``systemd/teddy-cloud-fleet.service``), with the fleet
signing key, the claim keys and the ``svc.fleet`` broker password; the parent app has
none of them. A pairing approval still opens its own short connection here
(:func:`sync.cloud.pairing.approve` collects the retained claims by subscribing afresh).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from config.settings import Settings
from sync.cloud import db
from sync.cloud.cloud_link import CloudLink
from sync.cloud.fleet import Fleet
from sync.cloud.fleet_requests import CHANNEL, STILL_ITS
from sync.cloud.pairing import PairingError, approve
from sync.systemd_notify import SystemdNotifier

_PRIVATE = "'{code,parent_email,parent_email_sealed,parent_email_hash}'::text[]"
"""What a pairing request's ``args`` lose once it is done (the code and the address)."""

logger = logging.getLogger(__name__)

_CLAIM = (
    "UPDATE fleet_requests r SET status = CASE WHEN ok THEN 'sending' ELSE 'refused' END,"
    " reason = CASE WHEN ok THEN NULL WHEN r.name = 'pair' THEN 'you are not a member of"
    " this family any more' ELSE 'the bear changed hands before it was sent — nothing was"
    " sent' END, done_at = CASE WHEN ok THEN NULL ELSE now() END,"
    " args = CASE WHEN ok THEN r.args ELSE r.args - " + _PRIVATE + " END"
    " FROM (SELECT r.request_id, " + STILL_ITS + " AS ok FROM fleet_requests r"
    " WHERE r.status = 'pending' ORDER BY r.request_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " AS claimed WHERE r.request_id = claimed.request_id"
    " RETURNING r.request_id, r.status, r.device_id, r.name, r.args, r.ttl_s, r.command_id,"
    " r.family_id::text")
"""Take the oldest pending request, re-checking its holder in the same statement."""
KEEP_DAYS = 30
"""Days an answered request is kept (what the app shows comes from ``commands``)."""
TIDY_EVERY_S = 3600.0
"""Seconds between two sweeps of old requests."""


class RequestService:
    """The fleet service's side: one LISTEN connection, one working connection, one MQTT
    link, for the life of the process. ``run`` until ``stop`` is set."""

    def __init__(self, settings: Settings, poll_s: float = 1.0) -> None:
        self.settings = settings
        """Cloud settings (the fleet key, the ``svc.fleet`` broker account)."""
        self.poll_s = poll_s
        """Seconds between looks at the table when no NOTIFY came (a missed one)."""
        self.stop = threading.Event()
        """Set to end :meth:`run`."""

    def run(self) -> None:
        """Serve requests until :attr:`stop` is set."""
        with db.connect(self.settings.cloud) as listening, \
                db.connect(self.settings.cloud) as conn, \
                CloudLink(self.settings, purpose="fleet-serve") as link:
            fleet = Fleet(self.settings, conn, link)
            fleet.signing_key  # noqa: B018 -- a missing key stops the service at start
            listening.execute(f"LISTEN {CHANNEL}")
            self._tidy(conn, started=True)
            logger.info("fleet service: serving the parent app's requests")
            SystemdNotifier.from_environment().ready("serving fleet requests")
            tidied = time.monotonic()
            while not self.stop.is_set():
                while not self.stop.is_set() and self.serve_one(conn, fleet):
                    pass
                if time.monotonic() - tidied > TIDY_EVERY_S:
                    self._tidy(conn)
                    tidied = time.monotonic()
                self._wait(listening)

    @staticmethod
    def _tidy(conn: Any, started: bool = False) -> None:
        """Forget answered requests after :data:`KEEP_DAYS`; at start, fail the ones a
        previous run was sending when it stopped (they may or may not have gone out)."""
        conn.execute("DELETE FROM fleet_requests WHERE done_at < now() - make_interval("
                     "days => %s)", (KEEP_DAYS,))
        if not started:
            return
        abandoned = conn.execute(
            "UPDATE fleet_requests SET status = 'failed', done_at = now(), reason ="
            " 'the fleet service stopped while sending it — ask again' WHERE status ="
            " 'sending'").rowcount
        if abandoned:
            logger.warning("%d requests were being sent when the service stopped", abandoned)

    def _wait(self, listening: Any) -> None:
        """Until a NOTIFY, ``poll_s`` or :attr:`stop` (checked twice a second)."""
        deadline = time.monotonic() + self.poll_s
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if any(True for _ in listening.notifies(timeout=min(left, 0.5), stop_after=1)):
                return

    def serve_one(self, conn: Any, fleet: Fleet) -> bool:
        """Claim the oldest pending request, re-check its holder and send it; False when
        none is pending. A request that fails is recorded and never stops the service."""
        row = conn.execute(_CLAIM).fetchone()
        if row is None:
            return False
        request_id, status, device_id, name, args, ttl_s, command_id, family_id = row
        if status == "refused":
            logger.warning("request %s (%s on %s) refused: the bear changed hands",
                           request_id, name, device_id)
            return True
        try:
            result = self._carry_out(fleet, name, device_id, args, ttl_s, command_id,
                                     family_id)
        except PairingError as exc:  # its text names the spoken code: not kept, not logged
            code = str(args.get("code") or "") or "\0"
            reason = str(exc).replace(f"code {code}", "that code").replace(code, "that code")
            self._finish(conn, request_id, "refused", reason)
            logger.info("request %s (%s) refused: %s", request_id, name, type(exc).__name__)
            return True
        except Exception as exc:  # one bad request never stops the service
            logger.warning("request %s (%s on %s) failed: %s", request_id, name, device_id,
                           exc)
            self._finish(conn, request_id, "failed", str(exc)[:500])
            return True
        self._finish(conn, request_id, "sent", None, result)
        logger.info("request %s: sent %s to %s", request_id, name,
                    device_id or (result or {}).get("device_id"))
        return True

    def _carry_out(self, fleet: Fleet, name: str, device_id: str | None, args: dict[str, Any],
                   ttl_s: float | None, command_id: str, family_id: str | None
                   ) -> dict[str, Any] | None:
        """Do one request; what the app reads back (a pairing's bear), if anything."""
        if name == "pair":
            approved = approve(self.settings, fleet.conn, str(args.get("code", "")),
                               str(args.get("parent_email", "")),
                               tuple(args.get("scopes") or ()),
                               requester=str(args.get("parent_id") or "") or None,
                               family_id=family_id, address=args.get("address"),
                               mail=self._mail, stored_email=_stored_email(args))
            return {"device_id": approved.device_id, "pairing_id": approved.pairing_id}
        assert device_id is not None  # the table's CHECK: every other request names a bear
        if name == "config":
            fleet.set_config(device_id, args)
        else:
            fleet.send(device_id, name, args, ttl_s=ttl_s, command_id=command_id)
        return None

    def _mail(self, to: str, subject: str, body: str) -> None:
        """Tell a holding family of a release request, through the sign-in mail's channel."""
        from sync.cloud.portal.auth import send_mail

        send_mail(self.settings, to, subject, body)

    @staticmethod
    def _finish(conn: Any, request_id: int, status: str, reason: str | None,
                result: dict[str, Any] | None = None) -> None:
        """Record the outcome (a pairing code is not kept past it)."""
        conn.execute(
            "UPDATE fleet_requests SET status = %s, reason = %s, result = %s, done_at = now(),"
            " args = CASE WHEN name = 'pair' THEN args - " + _PRIVATE + " ELSE args END"
            " WHERE request_id = %s",
            (status, reason, None if result is None else json.dumps(result), request_id))


def _stored_email(args: dict[str, Any]) -> tuple[str, bytes] | None:
    """The parent's address as the app sealed and hashed it (this service holds no cloud
    key); None for a request written before the app did (then it is stored as sent)."""
    sealed, found_by = args.get("parent_email_sealed"), args.get("parent_email_hash")
    if not isinstance(sealed, str) or not isinstance(found_by, str):
        return None
    try:
        return sealed, bytes.fromhex(found_by)
    except ValueError:
        return None
