"""Custody of one ingest batch: which family holds each bear, and the key its words go under.

Ingest resolves this once per bear per batch, never per turn: :func:`current_custody` reads
the current holder of every bear of the batch in ONE query (the lead points it at the custody
tables of issue 21 at merge; today it reads ``devices.pairing_id`` and the approved
pairing), then :meth:`family_keys.Keyring.keys_for_pairings` fetches (or makes) every family
key of the batch at once. The writer stamps each turn with its pairing and seals it
(:meth:`BatchCustody.seal`) while building the rows it COPies: no per-row trigger, no
per-turn query.

It runs after ingest has upserted the batch's ``devices`` rows, which locks them until
commit: a revocation (``UPDATE devices SET pairing_id = NULL``) waits for the batch or the
batch reads its result, so a turn is never stored under a family that no longer holds the
bear.

Where a cloud key exists, a bear held by no family (never paired, or revoked) has its turns
refused for good: the writer answers with a version-2 ``down/receipt`` saying ``drop``, and
the bear shreds them. A development set-up with no cloud key at all keeps the old behaviour
(text stored as sent, a bear with no family kept with none) and says so once in its log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.cloud import family_keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from psycopg import Connection

logger = logging.getLogger(__name__)

UNHELD = ("this bear is held by no family (never paired, or its pairing was revoked): the "
          "cloud will not store its turns — delete them")
"""The ``refused`` text of the receipt that tells a bear to drop its turns."""

_told_unsealed: set[int] = set()


@dataclass(frozen=True)
class Holder:
    """Who holds a bear now."""

    pairing_id: str
    """The current (approved) pairing: the scope of its rows and the id of its family key."""
    family_id: str | None
    """The parent app's family of that pairing (None for a pairing made by an operator)."""


def current_custody(conn: Connection, device_ids: list[str]) -> dict[str, Holder]:
    """``device_id -> Holder`` of every bear in ``device_ids`` held by a family now, in one
    query (custody's holder: the current pairing at the bear's generation, as
    :func:`sync.cloud.custody.holder`); a bear absent from the answer is held by nobody."""
    if not device_ids:
        return {}
    rows = conn.execute(
        "SELECT d.device_id, p.pairing_id::text, fp.family_id::text FROM devices d"
        " JOIN pairings p ON p.pairing_id = d.pairing_id AND p.device_id = d.device_id"
        "  AND p.status = 'approved' AND p.generation = d.generation"
        " LEFT JOIN family_pairings fp ON fp.pairing_id = p.pairing_id"
        " WHERE d.device_id = ANY(%s)", (sorted(set(device_ids)),)).fetchall()
    return {row[0]: Holder(row[1], row[2]) for row in rows}


@dataclass
class BatchCustody:
    """The holders and family ciphers of the bears of one transaction."""

    sealed: bool
    """Whether a cloud key exists (turns are sealed, and unheld bears refused)."""
    holders: dict[str, Holder] = field(default_factory=dict)
    """``device_id -> Holder`` of the bears held now."""
    ciphers: dict[str, tuple[str, AESGCM]] = field(default_factory=dict)
    """``pairing_id -> (key id, cipher)`` of their family keys (when ``sealed``)."""

    @classmethod
    def resolve(cls, conn: Connection, device_ids: list[str],
                keyring: family_keys.Keyring | None) -> BatchCustody:
        """Custody and family keys of ``device_ids``: one query each, whatever the batch."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        sealed = keyring is not None and keyring.ready()
        if not sealed:
            _say_unsealed_once(keyring)
        holders = current_custody(conn, device_ids)
        custody = cls(sealed, holders)
        if keyring is not None and sealed and holders:
            keys = keyring.keys_for_pairings(conn, [h.pairing_id for h in holders.values()])
            custody.ciphers = {p: (key_id, AESGCM(key)) for p, (key_id, key) in keys.items()}
        return custody

    def refuses(self, device_id: str) -> bool:
        """Whether the turns of ``device_id`` must not be stored (a key exists and no family
        holds the bear)."""
        return self.sealed and device_id not in self.holders

    def pairing_of(self, device_id: str) -> str | None:
        """The pairing a row of ``device_id`` is stamped with (None: no family)."""
        holder = self.holders.get(device_id)
        return None if holder is None else holder.pairing_id

    def seal(self, device_id: str, text: str) -> str:
        """``text`` sealed under the family key of the bear's holder (as sent when no key
        exists; a held bear's key is always among :attr:`ciphers` when sealed)."""
        if not self.sealed:
            return text
        return self.seal_all(device_id, [text])[0]

    def seal_all(self, device_id: str, texts: list[str]) -> list[str]:
        """Every text of one bear's batch sealed at once (see :meth:`seal`)."""
        if not self.sealed:
            return texts
        key_id, cipher = self.ciphers[self.holders[device_id].pairing_id]
        return family_keys.seal_texts(cipher, key_id, texts)


def _say_unsealed_once(keyring: family_keys.Keyring | None) -> None:
    """One ERROR per keyring (per process): a development set-up, or a key gone missing."""
    if id(keyring) in _told_unsealed:
        return
    _told_unsealed.add(id(keyring))
    logger.error("no cloud key (a development set-up?): transcripts are stored unsealed and "
                 "turns of bears held by no family are kept — make the key with teddy-cloud "
                 "portal keygen and give it to ingest (TEDDY_PORTAL__CLOUD_KEY_FILE)")
