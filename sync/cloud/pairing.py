"""The cloud's side of pairing: match a spoken code to a waiting bear, record the consent,
and answer with the bear's own credentials and the fleet's command-signing public key.

Bears in pairing mode publish a retained :class:`ClaimRequest`; ``fleet pair approve``
collects them, records each in ``pairings``, and looks for the one whose code digest the
parent's code matches. Brute force is limited per claim: a wrong code counts against the
claim named with ``--device``, or, when no device is named, against EVERY waiting claim
(so guessing cannot outrun any claim's limit); a claim with ``fleet.claim_max_attempts``
wrong codes is locked and the bear is told. A code older than ``fleet.claim_ttl_s`` is
expired (counted from when the cloud first saw the claim).
"""

from __future__ import annotations

import base64
import logging
import queue
import secrets
import time
from dataclasses import dataclass
from typing import Any

from config.errors import ProtocolError, TeddyError
from config.settings import DEVICE_ID_PATTERN, Settings
from sync.cloud import broker_accounts
from sync.cloud.cloud_link import CloudLink
from sync.cloud.fleet import load_signing_key, public_key_bytes
from sync.protocol import ClaimAnswer, ClaimRequest, PairingGrant, claim_topic
from sync.protocol.claim import claim_requests_filter, code_digest, seal_grant

logger = logging.getLogger(__name__)

QUIET_S = 0.3
"""Collecting retained requests ends after this many seconds without a new one."""


class PairingError(TeddyError, PermissionError):
    """A pairing approval failed; the message says why and what to do."""


class WrongCodeError(PairingError):
    """The code matches no waiting bear."""


class ExpiredCodeError(PairingError):
    """The code matched a claim whose time ran out."""


class LockedClaimError(PairingError):
    """The claim was locked after too many wrong codes."""


@dataclass(frozen=True)
class Approved:
    """A pairing that succeeded."""

    device_id: str
    """The paired bear."""
    claim_id: str
    """Its claim."""
    scopes: tuple[str, ...]
    """What the parent consented to."""


def collect_requests(link: CloudLink, settings: Settings) -> list[ClaimRequest]:
    """Every retained claim request on the broker (malformed ones are skipped)."""
    inbox = link.expect(claim_requests_filter())
    found: list[ClaimRequest] = []
    deadline = time.monotonic() + settings.fleet.claim_collect_s
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            topic, payload = inbox.get(timeout=min(remaining, QUIET_S))
        except queue.Empty:
            if found:
                break
            continue
        if not payload:
            continue
        try:
            request = ClaimRequest.from_payload(payload)
        except ProtocolError as exc:
            logger.warning("skipped a malformed claim request on %s: %s", topic, exc)
            continue
        if topic == claim_topic(request.claim_id, "up/request"):
            found.append(request)
    return found


def record_requests(conn: Any, settings: Settings, requests: list[ClaimRequest]) -> None:
    """Insert claims not seen before. A code's lifetime runs from the moment the cloud
    first sees it (the cloud's clock: a bear's clock may not be set yet); the broker drops
    a request the bear published more than ``pairing.code_ttl_s`` ago by itself (MQTT v5
    message expiry), and the bear stops waiting then too."""
    ttl = settings.fleet.claim_ttl_s
    for request in requests:
        conn.execute(
            "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, firmware,"
            " requested_at, expires_at) VALUES (%s, %s, %s, %s, %s, to_timestamp(%s),"
            " now() + make_interval(secs => %s)) ON CONFLICT (claim_id) DO NOTHING",
            (request.claim_id, request.device_id, request.code_digest, request.public_key,
             request.firmware, request.requested_at, ttl),
        )


def approve(settings: Settings, conn: Any, code: str, parent_email: str,
            scopes: tuple[str, ...], device_id: str | None = None) -> Approved:
    """Approve the waiting bear that spoke ``code``; see the module docstring."""
    _check_inputs(code, parent_email, device_id)
    with CloudLink(settings, purpose="pairing") as link:
        record_requests(conn, settings, collect_requests(link, settings))
        claim = _match(conn, settings, link, code, device_id)
        grant, password = _grant(settings, claim, parent_email, scopes)
        _install_account(settings, claim["device_id"], password)
        _record_approval(conn, claim, parent_email, scopes)
        answer = seal_grant(grant, claim["claim_id"], claim["public_key"])
        link.publish(claim_topic(claim["claim_id"], "down/answer"), answer.to_payload(),
                     retain=True)
        link.publish(claim_topic(claim["claim_id"], "up/request"), b"", retain=True)
    logger.info("paired %s (claim %s, scopes %s)", claim["device_id"], claim["claim_id"],
                ",".join(scopes))
    return Approved(claim["device_id"], claim["claim_id"], scopes)


def _check_inputs(code: str, parent_email: str, device_id: str | None) -> None:
    if not (len(code) == 6 and code.isdigit()):
        raise PairingError(f"code {code!r} is not 6 digits — enter the code the bear spoke")
    if "@" not in parent_email or len(parent_email) > 320:
        raise PairingError(f"{parent_email!r} is not an e-mail address")
    if device_id is not None and not DEVICE_ID_PATTERN.match(device_id):
        raise PairingError(f"device id {device_id!r} is not 3-64 lowercase letters, digits, -")


_CLAIM_COLUMNS = ("claim_id", "device_id", "code_digest", "public_key", "status",
                  "failed_attempts", "expired")


def _claims(conn: Any, device_id: str | None) -> list[dict[str, Any]]:
    where, params = ("AND device_id = %s", (device_id,)) if device_id else ("", ())
    rows = conn.execute(
        "SELECT claim_id, device_id, code_digest, public_key, status, failed_attempts,"
        f" expires_at < now() FROM pairings WHERE status IN ('pending', 'locked') {where}"
        " ORDER BY first_seen", params).fetchall()
    return [dict(zip(_CLAIM_COLUMNS, row, strict=True)) for row in rows]


def _match(conn: Any, settings: Settings, link: CloudLink, code: str,
           device_id: str | None) -> dict[str, Any]:
    claims = _claims(conn, device_id)
    matching = [c for c in claims if secrets.compare_digest(
        code_digest(c["claim_id"], code), c["code_digest"])]
    if not matching:
        _charge_wrong_code(conn, settings, link, [c for c in claims if c["status"] == "pending"
                                                  and not c["expired"]])
        raise WrongCodeError(f"code {code} matches no bear waiting to pair — check the code the "
                             "bear spoke; after a few wrong codes the bear needs a new one "
                             "(hold its paw 5 s)")
    claim = matching[-1]
    if claim["status"] == "locked":
        raise LockedClaimError(f"that bear's code was locked after "
                               f"{settings.fleet.claim_max_attempts} wrong codes — hold its paw "
                               "5 s for a new code")
    if claim["expired"]:
        conn.execute("UPDATE pairings SET status = 'expired' WHERE claim_id = %s",
                     (claim["claim_id"],))
        _reject(link, claim["claim_id"], "the code expired")
        raise ExpiredCodeError(f"code {code} expired (codes last "
                               f"{settings.fleet.claim_ttl_s:g} s) — hold the bear's paw 5 s "
                               "for a new code")
    return claim


def _charge_wrong_code(conn: Any, settings: Settings, link: CloudLink,
                       claims: list[dict[str, Any]]) -> None:
    limit = settings.fleet.claim_max_attempts
    for claim in claims:
        attempts = conn.execute(
            "UPDATE pairings SET failed_attempts = failed_attempts + 1,"
            " status = CASE WHEN failed_attempts + 1 >= %s THEN 'locked' ELSE status END"
            " WHERE claim_id = %s RETURNING failed_attempts", (limit, claim["claim_id"]),
        ).fetchone()[0]
        if attempts >= limit:
            logger.warning("claim %s of %s locked after %d wrong codes", claim["claim_id"],
                           claim["device_id"], attempts)
            _reject(link, claim["claim_id"], f"locked after {attempts} wrong codes")


def _reject(link: CloudLink, claim_id: str, reason: str) -> None:
    answer = ClaimAnswer(claim_id=claim_id, status="rejected", reason=reason)
    link.publish(claim_topic(claim_id, "down/answer"), answer.to_payload(), retain=True)
    link.publish(claim_topic(claim_id, "up/request"), b"", retain=True)


def _grant(settings: Settings, claim: dict[str, Any], parent_email: str,
           scopes: tuple[str, ...]) -> tuple[PairingGrant, str]:
    password = secrets.token_urlsafe(32)
    fleet_key = base64.b64encode(public_key_bytes(load_signing_key(settings))).decode()
    grant = PairingGrant(device_id=claim["device_id"], mqtt_username=claim["device_id"],
                         mqtt_password=password, fleet_public_key=fleet_key,
                         parent=parent_email, scopes=list(scopes))
    return grant, password


def _install_account(settings: Settings, device_id: str, password: str) -> None:
    if broker_accounts.admin_password(settings) is None:
        logger.warning("no broker administrator is configured: %s's broker account must be "
                       "installed by the provisioning system", device_id)
        return
    with broker_accounts.broker_auth(settings) as auth:
        auth.set_device(device_id, password)


def _record_approval(conn: Any, claim: dict[str, Any], parent_email: str,
                     scopes: tuple[str, ...]) -> None:
    device_id = claim["device_id"]
    with conn.transaction():
        conn.execute("INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     (device_id,))
        conn.execute("UPDATE pairings SET status = 'unpaired', unpaired_at = now()"
                     " WHERE device_id = %s AND status = 'approved'", (device_id,))
        conn.execute("UPDATE pairings SET status = 'approved', approved_at = now(),"
                     " parent_email = %s, mqtt_username = %s WHERE claim_id = %s",
                     (parent_email, device_id, claim["claim_id"]))
        conn.execute("UPDATE consents SET revoked_at = now() WHERE device_id = %s"
                     " AND revoked_at IS NULL", (device_id,))
        conn.execute("INSERT INTO consents (device_id, parent_email, scopes, claim_id)"
                     " VALUES (%s, %s, %s, %s)",
                     (device_id, parent_email, list(scopes), claim["claim_id"]))
