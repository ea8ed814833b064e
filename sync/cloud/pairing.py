"""The cloud's side of pairing: match a spoken code to a waiting bear, record the consent
and the new pairing (family scope) in one transaction, and answer the bear with a signed,
claim-bound grant.

Bears in pairing mode publish a retained, sealed :class:`ClaimRequest` on their OWN
``teddy/v1/<device_id>/up/claim`` (see :mod:`sync.protocol.claim`). ``approve`` collects
them as the fleet service account, takes each bear's id from the topic (the broker's ACL
authenticates it), opens the claim with the cloud's claim key and records it in
``pairings``. A claim is refused when its id is not a bear registered by ``teddy-cloud
provision``, or when the bear is still paired and the claim does not carry that pairing's
release token (kept on the bear through a factory reset, see :mod:`agent.pairing`).

A bear has at most one pending claim: a new one voids the older (its code stops working).
Codes are :data:`CODE_DIGITS` digits; a code that matches more than one waiting bear is
refused (both bears need a new code), never given to the newest.

Wrong codes count against the requester (the approving parent or operator; after
``fleet.requester_max_attempts`` within ``fleet.claim_ttl_s`` its approvals are refused for
that long), against the client address (``fleet.address_max_attempts``), against a
fleet-wide budget (``fleet.fleet_max_attempts``) and, when a device is named, against that
claim (locked after ``fleet.claim_max_attempts``). A code approves at most once: the claim
becomes a holding in ONE custody transition (:func:`sync.cloud.custody.hold`), which also
decides whether a release token may end the current holder's pairing; a claim from anyone
but the holder opens a release request the holding family must approve.
"""

from __future__ import annotations

import logging
import queue
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from config.errors import ProtocolError, TeddyError
from config.settings import DEVICE_ID_PATTERN, Settings
from sync.cloud import custody, emails
from sync.cloud.cloud_link import CloudLink
from sync.cloud.db import one_row
from sync.cloud.identity import ClaimKeys, claim_keys, is_manufactured
from sync.protocol import (
    ClaimAnswer,
    ClaimBody,
    ClaimRequest,
    PairingGrant,
    parse_device_topic,
)
from sync.protocol.claim import Scope, code_digest, open_request, release_digest, seal_grant

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

QUIET_S = 0.3
"""Collecting retained requests ends after this many seconds without a new one."""
CODE_DIGITS = 12
"""Digits of a pairing code (spoken in groups of four; see docs/security.md for the odds)."""


class PairingError(TeddyError, PermissionError):
    """A pairing approval failed; the message says why and what to do."""


class WrongCodeError(PairingError):
    """The code matches no waiting bear."""


class ExpiredCodeError(PairingError):
    """The code matched a claim whose time ran out."""


class LockedClaimError(PairingError):
    """The claim was locked after too many wrong codes."""


class RequesterLockedError(PairingError):
    """This requester entered too many wrong codes lately."""


class AlreadyPairedError(PairingError):
    """The code was already used, or the bear was just paired by another approval."""


@dataclass(frozen=True)
class Approved:
    """A pairing that succeeded."""

    device_id: str
    """The paired bear."""
    claim_id: str
    """Its claim."""
    scopes: tuple[str, ...]
    """What the parent consented to."""
    pairing_id: str = ""
    """The new pairing (family scope)."""


@dataclass(frozen=True)
class Claim:
    """A claim request that arrived on a bear's own topic, opened."""

    device_id: str
    """From the topic (authenticated by the broker), never from the payload."""
    request: ClaimRequest
    """What was published."""
    body: ClaimBody
    """What was sealed inside."""


def collect_claims(link: CloudLink, settings: Settings, keys: ClaimKeys) -> list[Claim]:
    """Every retained claim on the broker that opens with the cloud's claim key."""
    inbox = link.expect(ClaimRequest)
    found: list[Claim] = []
    deadline = time.monotonic() + settings.fleet.claim_collect_s
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            topic, payload = inbox.get(timeout=min(remaining, QUIET_S))
        except queue.Empty:
            if found:
                break
            continue
        if payload:
            claim = _open_claim(topic, payload, keys)
            if claim is not None:
                found.append(claim)
    return found


def _open_claim(topic: str, payload: bytes, keys: ClaimKeys) -> Claim | None:
    try:
        device_id = parse_device_topic(topic).device_id
        request = ClaimRequest.from_payload(payload)
        return Claim(device_id, request, open_request(request, device_id, keys.opening))
    except (ProtocolError, ValueError, RecursionError) as exc:
        logger.warning("skipped a claim on %s: %s", topic, exc)
        return None


def record_claims(conn: Connection, settings: Settings, link: CloudLink, keys: ClaimKeys,
                  claims: list[Claim]) -> None:
    """Insert claims not seen before; refuse those of unregistered ids or paired bears.

    A code's lifetime runs from the moment the cloud first sees it (the cloud's clock);
    the broker drops a request the bear published more than ``pairing.code_ttl_s`` ago."""
    for claim in claims:
        if conn.execute("SELECT 1 FROM pairings WHERE claim_id = %s",
                        (claim.request.claim_id,)).fetchone():
            continue
        if not is_manufactured(conn, claim.device_id):
            logger.warning("refused a claim from %r: not a bear registered by teddy-cloud "
                           "provision", claim.device_id)
            continue
        releases, refusal = _releases(conn, claim)
        body = claim.body
        custody.claim(conn, custody.NewClaim(
            body.claim_id, claim.device_id, body.code_digest, claim.request.ephemeral_key,
            body.nonce, body.requested_at, body.firmware, releases),
            settings.fleet.claim_ttl_s, refusal)
        if refusal:
            logger.warning("refused claim %s of %s: %s", body.claim_id, claim.device_id,
                           refusal)
            _answer_rejected(link, keys, settings, claim.device_id, body.claim_id, body.nonce,
                             refusal)


def _releases(conn: Connection, claim: Claim) -> tuple[str | None, str]:
    """The pairing the claim may end (None if the bear is not paired) and a refusal reason."""
    row = conn.execute("SELECT p.pairing_id::text, p.release_digest FROM devices d JOIN"
                       " pairings p ON p.pairing_id = d.pairing_id WHERE d.device_id = %s"
                       " AND p.status = 'approved'", (claim.device_id,)).fetchone()
    if row is None:
        return None, ""
    release = claim.body.release
    if (release is None or release.pairing_id != row[0] or row[1] is None
            or not secrets.compare_digest(release_digest(release.token), row[1])):
        return None, ("this bear is still paired to a family — unpair it (parent app or "
                      "teddy-cloud fleet unpair) or factory-reset it, then pair again")
    return row[0], ""


def normal_code(code: str) -> str:
    """The digits of a typed code (spaces and dashes between groups are fine)."""
    return "".join(ch for ch in code if ch not in " -\t")


def approve(settings: Settings, conn: Connection, code: str, parent_email: str,
            scopes: tuple[str, ...], device_id: str | None = None, *,
            requester: str | None = None, family_id: str | None = None,
            address: str | None = None, mail: custody.Mail | None = None,
            stored_email: tuple[str, bytes] | None = None) -> Approved:
    """Approve the waiting bear that spoke ``code``; see the module docstring.

    ``requester`` is who asks (the signed-in parent's account, or the operator); wrong
    codes are limited per requester (default: ``parent_email``, kept only as its keyed
    hash), per client ``address``
    and fleet-wide. ``family_id``: the family that will hold the bear (the parent app's);
    ``mail`` tells a holding family of a release request; ``stored_email``: the address as
    the parent app sealed and hashed it (:func:`sync.cloud.emails.stored`; the fleet service
    holds no cloud key), else sealed here."""
    code = normal_code(code)
    _check_inputs(code, parent_email, device_id)
    who = (requester.strip().lower() if requester else  # an address is kept only as its hash
           "address " + emails.lookup(conn, parent_email).hex()[:32])
    _check_requester(conn, settings, who, address, shown=requester or parent_email)
    keys = claim_keys(settings)
    with CloudLink(settings, purpose="pairing") as link:
        record_claims(conn, settings, link, keys, collect_claims(link, settings, keys))
        claim = _match(conn, settings, link, keys, code, device_id, who, address)
        token = secrets.token_urlsafe(32)
        stored = stored_email or emails.stored(conn, parent_email)
        pairing_id = _commit(conn, settings, claim, stored, scopes, who,
                             release_digest(token), family_id, mail)
        grant = PairingGrant(parent=parent_email, release_token=token,  # it checks the scopes
                             scopes=cast("list[Scope]", list(scopes)))
        answer = ClaimAnswer(device_id=claim["device_id"], claim_id=claim["claim_id"],
                             nonce=claim["nonce"], status="approved",
                             expires_at=time.time() + settings.fleet.claim_ttl_s,
                             pairing_id=pairing_id)
        answer = seal_grant(grant, answer, claim["public_key"]).signed_with(keys.signing)
        link.send(answer, claim["device_id"])
    logger.info("paired %s (claim %s, pairing %s, scopes %s)", claim["device_id"],
                claim["claim_id"], pairing_id, ",".join(scopes))
    return Approved(claim["device_id"], claim["claim_id"], scopes, pairing_id)


def _check_inputs(code: str, parent_email: str, device_id: str | None) -> None:
    if not (len(code) == CODE_DIGITS and code.isdigit()):
        raise PairingError(f"code {code!r} is not {CODE_DIGITS} digits — enter the code the "
                           "bear spoke")
    if "@" not in parent_email or len(parent_email) > 320:
        raise PairingError(f"{parent_email!r} is not an e-mail address")
    if device_id is not None and not DEVICE_ID_PATTERN.match(device_id):
        raise PairingError(f"device id {device_id!r} is not 3-64 lowercase letters, digits, -")


def _check_requester(conn: Connection, settings: Settings, requester: str,
                     address: str | None = None, shown: str | None = None) -> None:
    fleet, window = settings.fleet, settings.fleet.claim_ttl_s
    mine, here, everyone = one_row(conn.execute(
        "SELECT count(*) FILTER (WHERE requester = %s), count(*) FILTER (WHERE address = %s),"
        " count(*) FROM pairing_failures WHERE failed_at > now() - make_interval(secs => %s)",
        (requester, address, window)))
    if mine >= fleet.requester_max_attempts:
        raise RequesterLockedError(f"{mine} wrong codes from {shown or requester} in the last "
                                   f"{window:g} s — wait that long, then enter the code the "
                                   "bear speaks")
    if address is not None and here >= fleet.address_max_attempts:
        raise RequesterLockedError(f"{here} wrong codes from your network in the last "
                                   f"{window:g} s — wait that long, then try again")
    if everyone >= fleet.fleet_max_attempts:
        logger.warning("fleet-wide pairing guess budget spent: %d wrong codes", everyone)
        raise RequesterLockedError("too many wrong codes were entered lately (by anyone) — "
                                   f"pairing pauses for up to {window:g} s; try again then")


_CLAIM_COLUMNS = ("claim_id", "device_id", "code_digest", "public_key", "nonce", "status",
                  "failed_attempts", "expired")


def _claims(conn: Connection, device_id: str | None) -> list[dict[str, Any]]:
    where, params = ("AND device_id = %s", (device_id,)) if device_id else ("", ())
    rows = conn.execute(
        "SELECT claim_id, device_id, code_digest, public_key, nonce, status, failed_attempts,"
        " expires_at < now() FROM pairings WHERE (status IN ('pending', 'locked')"
        " OR (status = 'approved' AND expires_at > now())) "
        f"{where} ORDER BY first_seen", params).fetchall()
    return [dict(zip(_CLAIM_COLUMNS, row, strict=True)) for row in rows]


def _match(conn: Connection, settings: Settings, link: CloudLink, keys: ClaimKeys, code: str,
           device_id: str | None, requester: str, address: str | None = None
           ) -> dict[str, Any]:
    claims = _claims(conn, device_id)
    matching = [c for c in claims if secrets.compare_digest(
        code_digest(c["claim_id"], code), c["code_digest"])]
    if not matching:
        _charge_wrong_code(conn, settings, link, keys, requester,
                           [c for c in claims if c["status"] == "pending" and not c["expired"]]
                           if device_id else [], address)
        raise WrongCodeError(f"code {code} matches no bear waiting to pair — check the code the "
                             "bear spoke; after a few wrong codes the bear needs a new one "
                             "(hold its paw 5 s)")
    if len(matching) > 1:  # two bears spoke the same code: neither is given away
        for other in matching:
            conn.execute("UPDATE pairings SET status = 'expired' WHERE claim_id = %s AND"
                         " status = 'pending'", (other["claim_id"],))
        logger.warning("code matched %d waiting claims: all voided", len(matching))
        raise WrongCodeError("that code is not unique just now — hold the bear's paw 5 s for a "
                             "new one and enter that")
    claim = matching[-1]
    if claim["status"] == "approved":
        raise AlreadyPairedError(f"code {code} was already used: {claim['device_id']} is paired "
                                 "— a code pairs once; hold the paw 5 s for a new one")
    if claim["status"] == "locked":
        raise LockedClaimError(f"that bear's code was locked after "
                               f"{settings.fleet.claim_max_attempts} wrong codes — hold its paw "
                               "5 s for a new code")
    if claim["expired"]:
        conn.execute("UPDATE pairings SET status = 'expired' WHERE claim_id = %s",
                     (claim["claim_id"],))
        _answer_rejected(link, keys, settings, claim["device_id"], claim["claim_id"],
                         claim["nonce"], "the code expired")
        raise ExpiredCodeError(f"code {code} expired (codes last "
                               f"{settings.fleet.claim_ttl_s:g} s) — hold the bear's paw 5 s "
                               "for a new code")
    return claim


def _charge_wrong_code(conn: Connection, settings: Settings, link: CloudLink, keys: ClaimKeys,
                       requester: str, claims: list[dict[str, Any]],
                       address: str | None = None) -> None:
    """One wrong code: against the requester, its address, the fleet-wide budget, and the
    claim of the named bear."""
    conn.execute("DELETE FROM pairing_failures WHERE failed_at < now() - interval '1 day'")
    conn.execute("INSERT INTO pairing_failures (requester, claim_id, address) VALUES"
                 " (%s, %s, %s)", (requester, claims[-1]["claim_id"] if claims else None,
                                   address))
    limit = settings.fleet.claim_max_attempts
    for claim in claims:
        attempts = conn.execute(
            "UPDATE pairings SET failed_attempts = failed_attempts + 1,"
            " status = CASE WHEN failed_attempts + 1 >= %s THEN 'locked' ELSE status END"
            " WHERE claim_id = %s AND status = 'pending' RETURNING failed_attempts",
            (limit, claim["claim_id"])).fetchone()
        if attempts is not None and attempts[0] >= limit:
            logger.warning("claim %s of %s locked after %d wrong codes", claim["claim_id"],
                           claim["device_id"], attempts[0])
            _answer_rejected(link, keys, settings, claim["device_id"], claim["claim_id"],
                             claim["nonce"], f"locked after {attempts[0]} wrong codes")


def _answer_rejected(link: CloudLink, keys: ClaimKeys, settings: Settings, device_id: str,
                     claim_id: str, nonce: str, reason: str) -> None:
    answer = ClaimAnswer(device_id=device_id, claim_id=claim_id, nonce=nonce,
                         status="rejected", reason=reason,
                         expires_at=time.time() + settings.fleet.claim_ttl_s)
    link.send(answer.signed_with(keys.signing), device_id)


def _commit(conn: Connection, settings: Settings, claim: dict[str, Any],
            stored: tuple[str, bytes], scopes: tuple[str, ...], requester: str, release: str,
            family_id: str | None, mail: custody.Mail | None) -> str:
    """The claim becomes a holding (:func:`sync.cloud.custody.hold`) and its consent is
    recorded, all or nothing; the new pairing id. Exactly one of two concurrent approvals
    gets here without an error."""
    import psycopg

    device_id = claim["device_id"]
    try:
        with conn.transaction():
            held = custody.hold(conn, claim["claim_id"], family_id=family_id,
                                parent_email=stored, requester=requester,
                                release=release, actor=requester)
            conn.execute("INSERT INTO consents (device_id, parent_email, parent_email_hash,"
                         " scopes, claim_id, pairing_id) VALUES (%s, %s, %s, %s, %s, %s)",
                         (device_id, *stored, list(scopes), claim["claim_id"],
                          held.pairing_id))
    except custody.ReleasePendingError as exc:
        custody.request_release(conn, claim["claim_id"], settings.fleet.release_window_s, mail)
        raise AlreadyPairedError(str(exc)) from None
    except custody.CustodyError as exc:
        raise AlreadyPairedError(str(exc)) from None
    except psycopg.errors.UniqueViolation:
        raise AlreadyPairedError(f"{device_id} was just paired by another approval — nothing "
                                 "was changed") from None
    return held.pairing_id
