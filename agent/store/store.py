"""The encrypted conversation store: one SQLite file, a data key per conversation.

Transcript text is sealed with AES-256-GCM under the conversation's data key, which is
itself sealed (wrapped) under the device key-encryption key. One transaction writes a
turn and its outbox row, so the outbox never names a turn that is not there, nor misses
one that is. Consent lives in the same file; without consent the file is never created.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.alerts import AlertSink, Severity
from agent.safety.verdict import Verdict
from agent.store import crypto, deletion, retention, sealing
from agent.store import kek as kek_module
from agent.store.consent import Consent, Scope
from agent.store.failures import FailureReporter
from agent.store.kek import KeyRing
from agent.store.keys import KeyProvider, provider_from_settings
from agent.store.schema import migrate, seed_sequence
from config.errors import ConsentRequiredError, StoreError, TeddyError
from config.settings import StoreSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnToKeep:
    """One side of an exchange, as the pipeline hands it to the store."""

    role: str
    """``"child"`` or ``"bear"``."""
    text: str
    """What was said (the child's words already redacted)."""
    verdict: Verdict
    """The safety verdict on it."""


@dataclass(frozen=True)
class StoredTurn:
    """A turn read back from the store, decrypted."""

    seq: int
    """Device-wide, monotonically increasing sequence number."""
    conversation_id: str
    """The conversation it belongs to."""
    role: Literal["child", "bear"]
    """``"child"`` or ``"bear"``."""
    text: str
    """What was said."""
    created_at: float
    """Unix time, seconds."""
    verdict: dict[str, Any]
    """Safety verdict: action, categories, matched rules."""
    synced_at: float | None = None
    """Unix time the cloud acked it, seconds; None while it waits (or is never synced)."""


@dataclass(frozen=True)
class ConversationInfo:
    """A conversation's metadata (no text)."""

    id: str
    """Conversation id."""
    child_id: str | None
    """Opaque child profile id (never a name), or None."""
    started_at: float
    """Unix time, seconds."""
    last_at: float
    """Unix time of the last turn (or the start), seconds."""
    turns: int
    """How many turns it holds."""
    unsynced: int
    """How many of them wait for the cloud."""


def _sqlite_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Reads, too, turn SQLite failures (a damaged file, a vanished disk) into store errors."""

    @functools.wraps(method)
    def wrapper(self: ConversationStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._failures.translate(exc) from exc

    return wrapper


class ConversationStore:
    """The bear's encrypted store. Open with :meth:`open`; a context manager."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: KeyProvider,
        path: Path,
        settings: StoreSettings | None = None,
        alerts: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._keyring = KeyRing(keys, path.with_name(path.name + ".keylock"))
        self._data_keys: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._settings = settings if settings is not None else StoreSettings(
            data_dir=path.parent, db_name=path.name)
        self._alerts = alerts
        self._failures = FailureReporter(path, alerts)
        self._clock = clock
        self._last_sweep = float("-inf")
        self.path = path
        """Path of the database file."""
        self._key_matches = self._keyring.open(conn, create=False)
        if not self._key_matches:
            self._alert("store.wrong_key", Severity.CRITICAL,
                        f"the key-encryption key does not match store {path} — restore the "
                        "right key file from backup")

    @classmethod
    def exists(cls, settings: StoreSettings) -> bool:
        """Whether a store has been created (only consent creates one)."""
        return settings.db_path.exists()

    @classmethod
    def open(
        cls,
        settings: StoreSettings,
        create: bool = False,
        alerts: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ConversationStore:
        """Open the store; with ``create``, make the file and key if missing.

        ``alerts`` receives disk-full, read-only, corrupt and retention alerts; ``clock``
        (Unix time, seconds) drives retention. Expired conversations are shredded now.
        """
        path = settings.db_path
        if not path.exists() and not create:
            raise StoreError(
                f"no store at {path} — nothing is kept until a parent grants consent "
                "(teddy consent grant --parent NAME)"
            )
        keys = provider_from_settings(settings)
        keys.load(create=create)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        failures = FailureReporter(path, alerts)
        conn = _connect(path, settings.synchronous, failures)
        try:
            if migrate(conn) == 0:  # a new store
                seed_sequence(conn, clock())
            store = cls(conn, keys, path, settings, alerts, clock)
            store._finish_keyed_migrations()
        except sqlite3.Error as exc:
            conn.close()
            raise failures.translate(exc) from exc
        except BaseException:
            conn.close()
            raise
        store._sweep_quietly()
        store._finish_interrupted_deletion()
        return store

    def _finish_keyed_migrations(self) -> None:
        """Run the schema steps that need the key (sealing rows kept in the clear by older
        releases), then checkpoint so the clear text leaves the WAL. Only with the right key:
        a store opened with a wrong key is left as it is."""
        if not self._key_matches:
            return
        with self._lock:
            before = self._db.execute("PRAGMA user_version").fetchone()[0]
            migrate(self._db, kek=self._kek)
            if before < self._db.execute("PRAGMA user_version").fetchone()[0]:
                deletion.checkpoint(self._db)

    def _kek(self, conn: sqlite3.Connection | None = None) -> bytes:
        """The key-encryption key the store's rows are sealed with now."""
        return self._keyring.ensure(kek_module.stored_key_id(conn or self._db))

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        """The open connection; a closed store raises :class:`StoreError`."""
        if self._conn is None:
            raise StoreError("the store is closed — open it again")
        return self._conn

    def close(self) -> None:
        """Close the database and forget the keys held in memory. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._data_keys.clear()
            self._keyring.forget()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; SQLite failures become store errors."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError("the store is closed — open it again")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._failures.translate(exc) from exc

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts (sqlite-utils is not imported: it costs 0.4 s at every start)."""
        cursor = self._db.execute(sql, tuple(params))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _alert(self, kind: str, severity: Severity, message: str, **details: Any) -> None:
        logger.warning("%s", message)
        if self._alerts is not None:
            self._alerts.raise_alert(kind, severity, message, path=str(self.path), **details)

    # --- consent -------------------------------------------------------------------------

    @_sqlite_errors
    def consent(self) -> Consent | None:
        """The consent in force, or None. The parent's name or e-mail is kept sealed."""
        row = self._db.execute(
            "SELECT id, parent, parent_sealed, scopes, granted_at, source FROM consents "
            "WHERE revoked_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        consent_id, parent, sealed = row[:3]
        if sealed is not None:  # None only in a store opened with a wrong key, not migrated
            parent = crypto.unseal(self._kek(), sealed, crypto.consent_aad(consent_id),
                                   what=f"consent {consent_id}").decode()
        scopes = tuple(Scope(s) for s in json.loads(row[3]))
        return Consent(parent=parent, scopes=scopes, granted_at=row[4], source=row[5])

    def grant_consent(self, parent: str, scopes: Iterable[Scope], source: str = "local") -> Consent:
        """Record a consent (the parent sealed to its row), replacing any earlier one.

        Without the ``sync`` scope, turns still waiting for the cloud are not sent.
        """
        scope_list = [Scope(s).value for s in scopes]
        now = self._clock()
        with self._transaction() as conn:
            conn.execute("UPDATE consents SET revoked_at = ? WHERE revoked_at IS NULL", (now,))
            consent_id = conn.execute(_NEXT_CONSENT_ID).fetchone()[0]
            sealed = crypto.seal(self._kek(conn), parent.encode(), crypto.consent_aad(consent_id))
            conn.execute(
                "INSERT INTO consents (id, parent, parent_sealed, scopes, granted_at, source) "
                "VALUES (?, '', ?, ?, ?, ?)",
                (consent_id, sealed, json.dumps(scope_list), now, source),
            )
            if Scope.SYNC.value not in scope_list:
                conn.execute("DELETE FROM outbox")
        logger.info("consent granted (scopes %s, source %s)", ",".join(scope_list), source)
        return self.consent()

    def revoke_consent(self, delete: bool = False) -> bool:
        """Revoke the consent in force: keep no new turns and send none still waiting.

        With ``delete``, also crypto-shred everything kept. Returns whether there was one.
        """
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE consents SET revoked_at = ? WHERE revoked_at IS NULL", (self._clock(),)
            ).rowcount
            conn.execute("DELETE FROM outbox")
        logger.info("consent revoked%s", " and everything kept deleted" if delete else "")
        if delete:
            self.delete_all()
        return changed > 0

    # --- conversations and turns ---------------------------------------------------------

    def start_conversation(self, child_id: str | None = None) -> str:
        """Create a conversation with a fresh data key; returns its id.

        ``child_id`` is an opaque profile id (never a name) for per-child deletion.
        """
        self._require(Scope.KEEP)
        self._sweep_if_due()
        conversation_id = uuid.uuid4().hex
        data_key = crypto.new_key()
        aad = crypto.data_key_aad(conversation_id)
        with self._transaction() as conn:
            kek = self._keyring.ensure(kek_module.stored_key_id(conn))
            conn.execute(
                "INSERT INTO conversations (id, started_at, wrapped_key, child_id) "
                "VALUES (?, ?, ?, ?)",
                (conversation_id, self._clock(), crypto.seal(kek, data_key, aad), child_id),
            )
        self._data_keys[conversation_id] = data_key
        return conversation_id

    def append(self, conversation_id: str, turns: Iterable[TurnToKeep]) -> list[int]:
        """Keep turns (and their outbox rows, when sync is allowed) in one transaction.

        Returns the sequence numbers given to the turns, in order.
        """
        turns = list(turns)
        for turn in turns:
            if turn.role not in ("child", "bear"):
                raise StoreError(f"turn role {turn.role!r} is not 'child' or 'bear'")
        if not turns:
            return []
        with self._transaction() as conn:
            # consent is read inside the transaction: a revocation in another process wins
            last_seq, scopes, exists = conn.execute(_APPEND_STATE, (conversation_id,)).fetchone()
            scopes = _parse_scopes(scopes)
            if Scope.KEEP not in scopes:
                self._require(Scope.KEEP)  # raises, naming the way out
            if not exists:
                self._data_keys.pop(conversation_id, None)
                raise StoreError(f"conversation {conversation_id!r} is not in the store (it was "
                                 "deleted) — start a new conversation")
            queue_for_sync = Scope.SYNC in scopes
            data_key = self._data_key(conversation_id)
            first = (last_seq or 0) + 1
            seqs = list(range(first, first + len(turns)))
            rows = [self._turn_row(conversation_id, data_key, turn, seq)
                    for turn, seq in zip(turns, seqs, strict=True)]
            placeholders = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
            conn.execute(
                "INSERT INTO turns (seq, conversation_id, role, created_at, text_sealed, verdict) "
                f"VALUES {placeholders}", [value for row in rows for value in row],
            )
            if queue_for_sync:
                conn.execute("INSERT INTO outbox (seq) VALUES "
                             + ", ".join(["(?)"] * len(seqs)), seqs)
        return seqs

    def _turn_row(self, conversation_id: str, data_key: bytes, turn: TurnToKeep,
                  seq: int) -> tuple[Any, ...]:
        """The values of one turn's row ``seq``: text and verdict sealed together."""
        verdict = turn.verdict.to_dict()
        verdict.pop("redacted")  # that is the text itself
        sealed = sealing.seal_turn(data_key, conversation_id, seq, turn.role, turn.text, verdict)
        return (seq, conversation_id, turn.role, self._clock(), sealed, sealing.SEALED_VERDICT)

    @_sqlite_errors
    def turns(self, conversation_id: str | None = None) -> list[StoredTurn]:
        """Every kept turn (of one conversation, if given), decrypted, oldest first."""
        where, params = ("WHERE conversation_id = ?", [conversation_id]) if conversation_id else (
            "", []
        )
        rows = self._query(
            "SELECT seq, conversation_id, role, created_at, text_sealed, verdict, synced_at "
            f"FROM turns {where} ORDER BY seq",
            params,
        )
        return [self._decrypt_row(row) for row in rows]

    def _decrypt_row(self, row: dict[str, Any]) -> StoredTurn:
        conversation_id = row["conversation_id"]
        text, verdict = sealing.open_turn(
            self._data_key(conversation_id), conversation_id, row["seq"], row["role"],
            row["text_sealed"], row["verdict"],
        )
        return StoredTurn(
            seq=row["seq"],
            conversation_id=conversation_id,
            role=row["role"],
            text=text,
            created_at=row["created_at"],
            verdict=verdict,
            synced_at=row.get("synced_at"),
        )

    @_sqlite_errors
    def _data_key(self, conversation_id: str) -> bytes:
        key = self._data_keys.get(conversation_id)
        if key is not None:
            return key
        row = self._db.execute(  # one statement: one snapshot of key and key id
            "SELECT wrapped_key, (SELECT value FROM meta WHERE key = 'kek_id') "
            "FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no conversation {conversation_id!r} in the store")
        key = crypto.unseal(
            self._keyring.ensure(row[1]), row[0], crypto.data_key_aad(conversation_id),
            what=f"data key of conversation {conversation_id}",
        )
        self._data_keys[conversation_id] = key
        return key

    @_sqlite_errors
    def quote(self, conversation_id: str, seq: int) -> str | None:
        """The child's kept line ``seq`` of ``conversation_id`` (its redacted text), for the
        wellbeing alert it raised; None when the consent in force does not let conversations
        reach the parent's app, or the line is not kept (deleted, shredded, a bear line)."""
        consent = self.consent()
        if consent is None or not consent.allows(Scope.SYNC):
            return None
        rows = self._query(
            "SELECT seq, conversation_id, role, created_at, text_sealed, verdict, synced_at "
            "FROM turns WHERE conversation_id = ? AND seq = ? AND role = 'child'",
            [conversation_id, seq])
        return self._decrypt_row(rows[0]).text if rows else None

    def _require(self, scope: Scope) -> Consent:
        consent = self.consent()
        if consent is None or not consent.allows(scope):
            raise ConsentRequiredError(
                f"no parental consent for {scope.value!r} on record — "
                f"run teddy consent grant --parent NAME --scopes {scope.value}"
            )
        return consent

    # --- the outbox ----------------------------------------------------------------------

    def outbox_batch(self, limit: int, batch_id: str | None = None) -> tuple[str, list[StoredTurn]]:
        """Claim up to ``limit`` unsent outbox turns under a batch id, or re-read a batch.

        With ``batch_id``, returns that batch's turns again (for a resend); otherwise the
        oldest rows not yet in any batch get a new batch id. Returns ``(batch_id, turns)``.
        """
        with self._transaction() as conn:
            if batch_id is None:
                batch_id = uuid.uuid4().hex
                conn.execute(
                    "UPDATE outbox SET batch_id = ? WHERE seq IN "
                    "(SELECT seq FROM outbox WHERE batch_id IS NULL ORDER BY seq LIMIT ?)",
                    (batch_id, limit),
                )
            conn.execute("UPDATE outbox SET sent_at = ? WHERE batch_id = ?",
                         (self._clock(), batch_id))
        rows = self._query(
            "SELECT t.seq, t.conversation_id, t.role, t.created_at, t.text_sealed, t.verdict "
            "FROM outbox o JOIN turns t ON t.seq = o.seq WHERE o.batch_id = ? ORDER BY t.seq",
            [batch_id],
        )
        return batch_id, [self._decrypt_row(row) for row in rows]

    @_sqlite_errors
    def unacked_batches(self) -> list[str]:
        """Batch ids sent earlier (perhaps by a process that died) and not yet acked."""
        rows = self._db.execute(
            "SELECT DISTINCT batch_id FROM outbox WHERE batch_id IS NOT NULL ORDER BY seq"
        ).fetchall()
        return [row[0] for row in rows]

    def mark_synced(self, ranges: Iterable[tuple[int, int]]) -> int:
        """The cloud committed these seq ranges (inclusive): mark turns synced and drop
        their outbox rows. Returns how many outbox rows this removed."""
        now = time.time()
        removed = 0
        with self._transaction() as conn:
            for first, last in ranges:
                conn.execute(
                    "UPDATE turns SET synced_at = ? WHERE seq BETWEEN ? AND ? "
                    "AND synced_at IS NULL",
                    (now, first, last),
                )
                removed += conn.execute(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
                ).rowcount
        return removed

    def drop_batches(self, batch_ids: Iterable[str]) -> int:
        """The cloud will never store these outbox batches (no family holds this bear):
        shred their turns as a deletion does (see :func:`deletion.shred_turns`). Returns how
        many turns went."""
        ids = sorted(set(batch_ids))
        if not ids:
            return 0
        with self._transaction() as conn:
            report = deletion.shred_turns(conn, ids)
        for conversation_id in report.emptied:
            self._data_keys.pop(conversation_id, None)
        if report.emptied and self._keyring.can_rotate:
            self._rotate_after_delete()
        self._checkpoint()
        logger.info("dropped %d unsent turns the cloud will not store (%d conversations "
                    "shredded)", report.turns, len(report.emptied))
        return report.turns

    @_sqlite_errors
    def outbox_depth(self) -> int:
        """How many turns wait for the cloud's ack."""
        return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def outbox_usage(self, with_bytes: bool = True) -> dict[str, Any]:
        """For the sync client's batching and budget: ``rows`` waiting, ``unclaimed`` (in no
        batch yet), ``oldest_unclaimed_at`` (Unix seconds or None) and, with ``with_bytes``,
        ``bytes``: the sealed size of every waiting turn plus its row overhead."""
        one = self._db.execute
        rows, unclaimed = one("SELECT count(*), count(*) - count(batch_id) FROM outbox").fetchone()
        oldest = one("SELECT t.created_at FROM outbox o JOIN turns t ON t.seq = o.seq "
                     "WHERE o.batch_id IS NULL ORDER BY o.seq LIMIT 1").fetchone()
        usage = {"rows": rows, "unclaimed": unclaimed,
                 "oldest_unclaimed_at": oldest[0] if oldest else None}
        if with_bytes:
            usage["bytes"] = one(
                "SELECT COALESCE(sum(length(t.text_sealed) + length(t.verdict) + 64), 0) "
                "FROM outbox o JOIN turns t ON t.seq = o.seq").fetchone()[0]
        return usage

    @_sqlite_errors
    def stats(self) -> dict[str, Any]:
        """Counts for ``teddy store stats`` (no text).

        Uses sqlite-utils' table introspection; imported here, not at start-up, where its
        import would cost the bear 0.4 s on every boot."""
        import sqlite_utils

        tables = sqlite_utils.Database(self._db)
        wal = self.path.with_name(self.path.name + "-wal")
        return {
            "conversations": tables["conversations"].count,
            "turns": tables["turns"].count,
            "unsynced": self.outbox_depth(),
            "oldest_turn_at": next(iter(tables.execute("SELECT min(created_at) FROM turns")))[0],
            "bytes": self.path.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "retention_days": self._settings.retention_days,
        }

    # --- parent access: conversations, deletion, retention, keys -------------------------

    @_sqlite_errors
    def conversations(self, child_id: str | None = None) -> list[ConversationInfo]:
        """Every conversation's metadata (of one child, if given), oldest first."""
        where, params = ("WHERE c.child_id = ?", (child_id,)) if child_id else ("", ())
        rows = self._db.execute(
            "SELECT c.id, c.child_id, c.started_at, "
            "       COALESCE(MAX(t.created_at), c.started_at), COUNT(t.seq), COUNT(o.seq) "
            "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id "
            f"LEFT JOIN outbox o ON o.seq = t.seq {where} "
            "GROUP BY c.id ORDER BY c.started_at, c.id", params,
        ).fetchall()
        return [ConversationInfo(*row) for row in rows]

    def delete_conversation(self, conversation_id: str) -> deletion.DeletionReport:
        """Crypto-shred one conversation (raises if there is no such conversation)."""
        if not any(c.id == conversation_id for c in self.conversations()):
            raise StoreError(f"no conversation {conversation_id!r} in the store — "
                             "list them with teddy store export --format text")
        return self._delete([conversation_id])

    def delete_child(self, child_id: str) -> deletion.DeletionReport:
        """Crypto-shred every conversation of one child profile."""
        return self._delete([c.id for c in self.conversations(child_id)])

    def delete_all(self) -> deletion.DeletionReport:
        """Crypto-shred every conversation kept."""
        return self._delete([c.id for c in self.conversations()])

    def _delete(self, conversation_ids: list[str]) -> deletion.DeletionReport:
        with self._transaction() as conn:
            report = deletion.shred(conn, conversation_ids)
        for conversation_id in conversation_ids:
            self._data_keys.pop(conversation_id, None)
        if report.conversations and self._keyring.can_rotate:
            report.key_rotated = self._rotate_after_delete()
        report.checkpointed = self._checkpoint()
        logger.info("deleted %d conversations (%d turns); key rotated: %s",
                    report.conversations, report.turns, report.key_rotated)
        return report

    def _finish_interrupted_deletion(self) -> None:
        """A deletion whose key rotation was cut off (crash, power loss): rotate now."""
        try:
            due = deletion.rotation_due(self._db)
        except sqlite3.Error:
            return  # a damaged store: verify will say so
        if due and self._keyring.can_rotate:
            logger.warning("finishing the key rotation of an interrupted deletion")
            self._rotate_after_delete()

    def _rotate_after_delete(self) -> bool:
        """Replace the KEK so copies made before the deletion cannot unwrap deleted keys."""
        try:
            self.rotate_key()
        except TeddyError as exc:  # the rows and keys are gone already; a person should know
            self._alert("store.key_rotation_failed", Severity.WARNING,
                        f"deleted, but the key-encryption key was not rotated: {exc}")
            return False
        return True

    def _checkpoint(self) -> bool:
        with self._lock:
            try:
                return deletion.checkpoint(self._db)
            except sqlite3.Error as exc:
                raise self._failures.translate(exc) from exc

    def rotate_key(self) -> str:
        """Re-wrap every data key under a new key-encryption key; returns its key id.

        Transcripts are not re-encrypted. Safe to interrupt at any moment.
        """
        key_id = self._keyring.rotate(self._transaction)
        self._checkpoint()  # old wrapped keys leave the WAL too
        return key_id

    @_sqlite_errors
    def enforce_retention(self, now: float | None = None) -> retention.RetentionReport:
        """Crypto-shred conversations older than ``retention_days`` (see retention.py)."""
        now = self._clock() if now is None else now
        self._last_sweep = now
        cutoff = now - self._settings.retention_days * retention.DAY
        report = retention.RetentionReport()
        for item in retention.expired(self._db, cutoff):
            if item.unsynced and self._settings.keep_unsynced_past_retention:
                report.kept_unsynced.append(item.conversation_id)
            else:
                report.shredded.append(item.conversation_id)
                report.shredded_unsynced_turns += item.unsynced
        if report.shredded:
            self._delete(report.shredded)
        self._alert_retention(report)
        return report

    def _alert_retention(self, report: retention.RetentionReport) -> None:
        days = self._settings.retention_days
        if report.kept_unsynced:
            self._alert("store.retention_kept_unsynced", Severity.WARNING,
                        f"{len(report.kept_unsynced)} conversations are older than the {days}-day "
                        "retention but kept because their turns never reached the cloud "
                        "(store.keep_unsynced_past_retention) — run teddy sync",
                        conversations=len(report.kept_unsynced))
        if report.shredded_unsynced_turns:
            self._alert("store.retention_shredded_unsynced", Severity.WARNING,
                        f"{report.shredded_unsynced_turns} turns past the {days}-day retention "
                        "were deleted before they reached the cloud",
                        turns=report.shredded_unsynced_turns)

    def _sweep_if_due(self) -> None:
        if self._clock() - self._last_sweep >= retention.SWEEP_EVERY:
            self._sweep_quietly()

    def _sweep_quietly(self) -> None:
        """Retention at open and while running: a failure is logged, never fatal."""
        try:
            self.enforce_retention()
        except StoreError as exc:
            logger.warning("retention sweep failed, retrying later: %s", exc)


_NEXT_CONSENT_ID = (
    # the id AUTOINCREMENT would give: known before the insert, so the row's sealed parent
    # can be bound to it (inside the writing transaction, so no one else takes it)
    "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'consents'), 0), "
    "COALESCE((SELECT max(id) FROM consents), 0)) + 1"
)

_APPEND_STATE = (
    # one statement on the hot path: the highest seq ever given (AUTOINCREMENT never reuses
    # one, even after deletion), the scopes of the consent in force (NULL: none), and whether
    # the conversation still exists (another process may have deleted it)
    "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'turns'), "
    "(SELECT scopes FROM consents WHERE revoked_at IS NULL ORDER BY id DESC LIMIT 1), "
    "EXISTS (SELECT 1 FROM conversations WHERE id = ?)"
)


@functools.lru_cache(maxsize=16)
def _parse_scopes(stored: str | None) -> frozenset[Scope]:
    """Scopes from the ``consents.scopes`` JSON column (cached: a handful of values)."""
    return frozenset() if stored is None else frozenset(Scope(s) for s in json.loads(stored))


def _connect(path: Path, synchronous: str, failures: FailureReporter) -> sqlite3.Connection:
    """Open the file: WAL, ``synchronous`` FULL by default, foreign keys, secure_delete.

    WAL + FULL fsyncs the WAL at every commit, so a turn reported kept survives power loss
    (NORMAL may lose the last commits); secure_delete zeroes what deletion frees.
    """
    try:
        fresh = not path.exists()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        if fresh:
            path.chmod(0o600)  # the -wal and -shm files take the database file's mode
    except sqlite3.Error as exc:
        raise failures.translate(exc) from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise failures.translate(exc) from exc
