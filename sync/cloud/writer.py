"""One ingest transaction: validated messages in, rows committed, acks to send out.

The fast path writes every message of the batch together: devices upserted in a fixed
order, turns COPied straight into ``turns`` under a savepoint; only when that meets a row
already there (a resend) are they COPied into a per-connection staging table and moved with
``INSERT ... SELECT ... ON CONFLICT (device_id, seq, created_at) DO NOTHING`` (a resend
carries the turn's own time, so it never duplicates; ``turns`` is partitioned by that
time). If PostgreSQL
rejects the data (say, a NUL byte in a text) or anything else goes wrong with one message,
the slow path writes message by message, each under a savepoint, and dead-letters only the
ones that fail — whatever the exception. Only a lost connection escapes (the batch is
retried on a fresh one).

Every committed alert, health sample, command result and reported config is named in a
``down/receipt`` (sent after commit), so the bear stops resending it only then.

Custody (:mod:`sync.cloud.sealing`) is resolved once per bear per transaction: every turn is
stamped with its bear's current pairing and sealed under that family's key while its row is
built (set-wise: no trigger, no query per turn). Where a cloud key exists, the turns of a
bear held by no family are not stored: a version-2 receipt tells the bear to drop them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from sync.cloud import fleet
from sync.cloud.dead_letters import DeadLetters
from sync.cloud.family_keys import Keyring
from sync.cloud.messages import Parsed
from sync.cloud.sealing import UNHELD, BatchCustody
from sync.protocol import Ack, Message, Receipt, receipt_id, to_ranges
from sync.protocol.receipts import ReceiptKind

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS turns_staging ("
    " device_id text, seq bigint, conversation_id text, role text, text text,"
    " created_at timestamptz, action text, categories text[], batch_id text, pairing_id uuid"
    ") ON COMMIT DELETE ROWS"
)
COLUMNS = ("device_id, seq, conversation_id, role, text, created_at, action, categories,"
           " batch_id, pairing_id")
COPY_TYPES = ["text", "int8", "text", "text", "text", "timestamptz", "text", "text[]", "text",
              "text"]
"""Types of :data:`COLUMNS` as COPY sends them (set once per COPY: no dumper looked up per
value; the pairing id travels as text, as COPY's text format sends it anyway)."""
TURN_KEY = "device_id, seq, created_at"
"""The idempotency key of ``turns`` (its primary key since migration 0010, which partitions
by ``created_at``); ``scripts/bench-partitions`` sets the old ``device_id, seq`` to measure
the unpartitioned table beside it."""


def prepare_connection(conn: Connection) -> None:
    """Pool ``configure`` hook: give a new connection its staging table."""
    conn.execute(STAGING_DDL)


@dataclass
class WriteOutcome:
    """What one committed transaction did."""

    acks: list[tuple[str, Message]] = field(default_factory=list)
    """``(device_id, ack or receipt)`` to publish (on the message's route to that bear) now
    that the rows are committed."""
    inserted: int = 0
    """Turn rows that were new."""
    duplicates: int = 0
    """Turn rows already there (resends)."""
    dead_letters: int = 0
    """Messages refused (kept in ``dead_letters``, or counted only when over a limit)."""
    receipted: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """``(device_id, kind)`` -> receipt ids of the committed messages."""
    oldest_turn_at: float | None = None
    """Creation time of the oldest turn committed, Unix seconds."""
    unheld: int = 0
    """Turn batches refused for good (their bear is held by no family)."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError)


def write(conn: Connection, items: list[Parsed], dead: DeadLetters | None = None,
          keyring: Keyring | None = None) -> WriteOutcome:
    """Commit ``items`` in one transaction (falling back to savepoints on any failure),
    sealing turns with ``keyring``'s family keys.

    Raises only when the connection fails (the caller retries the batch on a new one)."""
    try:
        with conn.transaction():
            outcome = _write_all(conn, items, dead, keyring)
    except _connection_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - one bad message must not cost the batch
        logger.warning("batch failed (%s: %s); writing message by message",
                       type(exc).__name__, _first_line(exc))
        with conn.transaction():
            outcome = _write_each(conn, items, dead, keyring)
    _add_receipts(outcome)
    return outcome


def _custody(conn: Connection, items: list[Parsed], keyring: Keyring | None) -> BatchCustody:
    bears = [i.bear for i in items if i.kind in ("turns", "alerts")]
    return BatchCustody.resolve(conn, bears, keyring)


def _write_all(conn: Connection, items: list[Parsed], dead: DeadLetters | None,
               keyring: Keyring | None) -> WriteOutcome:
    outcome = WriteOutcome()
    _upsert_devices(conn, items)
    custody = _custody(conn, items, keyring)
    turns = _held_turns(items, custody, outcome)
    if turns:
        _copy_turns(conn, turns, outcome, custody)
    for item in items:
        _write_other(conn, item, outcome, dead, custody)
    return outcome


def _held_turns(items: list[Parsed], custody: BatchCustody,
                outcome: WriteOutcome) -> list[Parsed]:
    """The turn batches to store; the others (bears held by no family) are refused for good
    with a receipt that tells the bear to drop them."""
    kept: list[Parsed] = []
    refused: dict[str, list[str]] = {}
    for item in items:
        if item.kind != "turns":
            continue
        if custody.refuses(item.bear):
            refused.setdefault(item.bear, []).append(item.body.batch_id)
        else:
            kept.append(item)
    for device_id, batch_ids in sorted(refused.items()):
        logger.info("refused %d turn batches of %s: held by no family", len(batch_ids),
                    device_id)
        outcome.unheld += len(batch_ids)
        for start in range(0, len(batch_ids), 1000):
            outcome.acks.append((device_id, Receipt(
                v=2, kind="turns", ids=batch_ids[start:start + 1000], refused=UNHELD,
                drop=True)))
    return kept


def _write_each(conn: Connection, items: list[Parsed], dead: DeadLetters | None,
                keyring: Keyring | None) -> WriteOutcome:
    outcome = WriteOutcome()
    for item in items:
        try:
            with conn.transaction():  # a savepoint: a bad message cannot spoil the others
                _upsert_devices(conn, [item])
                custody = _custody(conn, [item], keyring)
                turns = _held_turns([item], custody, outcome)
                if turns:
                    _copy_turns(conn, turns, outcome, custody)
                    conn.execute("DELETE FROM turns_staging")
                _write_other(conn, item, outcome, dead, custody)
        except _connection_errors():
            raise
        except Exception as exc:  # noqa: BLE001 - dead-letter it, whatever it was
            reason = _rejection(exc)
            _drop_receipt(outcome, item)
            _dead_letter(conn, Parsed(item.message, "invalid", item.device_id, reason=reason),
                         outcome, dead)
    return outcome


def _rejection(exc: Exception) -> str:
    import psycopg

    if isinstance(exc, psycopg.Error):
        return f"rejected by PostgreSQL: {_first_line(exc)}"
    return f"rejected while storing ({type(exc).__name__}): {_first_line(exc)}"


def _drop_receipt(outcome: WriteOutcome, item: Parsed) -> None:
    """A message rolled back to its savepoint is not receipted (nor acked)."""
    key = (item.bear, item.kind)
    rid = receipt_id(item.kind, item.body) if item.body is not None else None
    if rid is not None and rid in outcome.receipted.get(key, []):
        outcome.receipted[key].remove(rid)
    if item.kind == "turns":
        outcome.acks = [(d, a) for d, a in outcome.acks
                        if not (isinstance(a, Ack) and a.batch_id == item.body.batch_id
                                and d == item.bear)]


def _add_receipts(outcome: WriteOutcome) -> None:
    for (device_id, kind), ids in sorted(outcome.receipted.items()):
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            if chunk:  # kind: one that receipt_id named, so a receipt kind
                outcome.acks.append((device_id, Receipt(kind=cast(ReceiptKind, kind),
                                                        ids=chunk)))


def _receipt(outcome: WriteOutcome, item: Parsed) -> None:
    rid = receipt_id(item.kind, item.body)
    if rid is not None:
        outcome.receipted.setdefault((item.bear, item.kind), []).append(rid)


def _upsert_devices(conn: Connection, items: list[Parsed]) -> None:
    devices = sorted({i.device_id for i in items if i.kind != "invalid" and i.device_id})
    if devices:  # sorted: two ingestors lock device rows in the same order
        conn.execute(
            "INSERT INTO devices (device_id) SELECT unnest(%s::text[]) ORDER BY 1"
            " ON CONFLICT (device_id) DO UPDATE SET last_seen = now()", (devices,))


def _copy_turns(conn: Connection, items: list[Parsed], outcome: WriteOutcome,
                custody: BatchCustody) -> None:
    total = 0
    oldest = None
    rows: list[tuple] = []
    for item in items:
        batch = item.body
        bear = item.bear
        pairing = custody.pairing_of(bear)
        # transcript texts sealed under the holding family's key, the bear's batch at once;
        # every row stamped with that pairing
        texts = custody.seal_all(bear, [t.text for t in batch.turns])
        batch_id, stamp = batch.batch_id, datetime.fromtimestamp
        rows.extend((bear, t.seq, t.conversation_id, t.role, text, stamp(t.created_at, UTC),
                     t.action, t.categories, batch_id, pairing)
                    for t, text in zip(batch.turns, texts, strict=True))
        if batch.turns:
            first = min(t.created_at for t in batch.turns)
            oldest = first if oldest is None else min(oldest, first)
        total += len(batch.turns)
    rows.sort(key=lambda row: (row[0], row[1]))  # two ingestors lock keys in one order
    inserted = _insert_rows(conn, rows)
    outcome.inserted += inserted
    outcome.duplicates += total - inserted
    if oldest is not None:
        known = outcome.oldest_turn_at
        outcome.oldest_turn_at = oldest if known is None else min(known, oldest)
    for item in items:
        ranges = to_ranges(t.seq for t in item.body.turns)
        outcome.acks.append((item.bear, Ack(batch_id=item.body.batch_id, ranges=ranges)))


def _insert_rows(conn: Connection, rows: list[tuple]) -> int:
    """Insert turn rows, returning how many were new: COPY straight into ``turns`` (under a
    savepoint); only if some are there already (a resend) through the staging table with
    ``ON CONFLICT DO NOTHING``, so the common case writes every row once."""
    from psycopg import errors

    try:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY turns ({COLUMNS}) FROM STDIN") as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        return len(rows)
    except errors.UniqueViolation:
        pass  # a resend: the savepoint took the partial COPY back
    with conn.cursor() as cur:
        with cur.copy(f"COPY turns_staging ({COLUMNS}) FROM STDIN") as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO turns ({COLUMNS}) SELECT {COLUMNS} FROM turns_staging"
                    f" ORDER BY device_id, seq ON CONFLICT ({TURN_KEY}) DO NOTHING")
        return cur.rowcount


def _write_other(conn: Connection, item: Parsed, outcome: WriteOutcome,
                 dead: DeadLetters | None, custody: BatchCustody) -> None:
    if item.kind == "status" and item.body is not None:
        status = item.body
        conn.execute(
            "UPDATE devices SET online = %s, firmware = %s, last_seen = now(),"
            " boot_time = COALESCE(to_timestamp(%s), boot_time) WHERE device_id = %s",
            (status.state == "online", status.firmware, status.boot_time, item.device_id))
    elif item.kind == "health":
        _write_health(conn, item)
    elif item.kind == "alerts":
        _write_alert(conn, item, custody)
    elif item.kind == "cmd-result":
        if not fleet.record_result(conn, item.body):
            logger.info("result %s for command %s from %s kept as an event, not as its final"
                        " status", item.body.status, item.body.id, item.device_id)
    elif item.kind == "config":
        fleet.record_reported_config(conn, item.body)
    elif item.kind == "invalid":
        _dead_letter(conn, item, outcome, dead)
        return
    if item.body is not None:
        _receipt(outcome, item)


def _write_health(conn: Connection, item: Parsed) -> None:
    from psycopg.types.json import Jsonb

    sample = item.body
    conn.execute(
        "INSERT INTO health_samples (device_id, sampled_at, sample)"
        " VALUES (%s, to_timestamp(%s), %s) ON CONFLICT DO NOTHING",
        (item.device_id, sample.sampled_at,
         Jsonb({"metrics": sample.metrics, "open_alerts": sample.open_alerts})))


def _write_alert(conn: Connection, item: Parsed, custody: BatchCustody) -> None:
    """One raise or clear. A wellbeing alert's quote (v2) is sealed with the holding
    family's key, as its turns are; a bear held by no family keeps no quote at all."""
    from psycopg.types.json import Jsonb

    alert = item.body
    pairing_id = custody.pairing_of(item.bear)
    cleared_at = alert.cleared_at if alert.state == "cleared" else None
    if alert.state == "cleared" and cleared_at is None:
        cleared_at = alert.raised_at
    quote = None
    if alert.quote is not None and pairing_id is not None:
        quote = custody.seal(item.bear, alert.quote)
    conn.execute(
        "INSERT INTO alerts (device_id, device_alert_id, kind, severity, message, details,"
        " raised_at, cleared_at, rule, pairing_id, category, quote, conversation_id, turn_seq)"
        " VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s,"
        " %s, %s) ON CONFLICT (device_id, device_alert_id)"
        " DO UPDATE"
        " SET cleared_at = EXCLUDED.cleared_at"
        " WHERE alerts.cleared_at IS NULL AND EXCLUDED.cleared_at IS NOT NULL",
        (item.device_id, alert.alert_id, alert.kind, alert.severity, alert.message,
         Jsonb(alert.details), alert.raised_at, cleared_at, alert.rule, pairing_id,
         alert.category, quote, alert.conversation_id, alert.turn_seq))


def _dead_letter(conn: Connection, item: Parsed, outcome: WriteOutcome,
                 dead: DeadLetters | None) -> None:
    message = item.message
    outcome.dead_letters += 1
    if dead is not None and not dead.admit(item.device_id):
        logger.debug("dead letter on %s over its rate; counted, not kept", message.topic)
        return
    logger.warning("dead-lettered a message on %s: %s", message.topic, item.reason)
    try:
        with conn.transaction():  # a savepoint: even a dead letter that fails costs nothing
            if dead is not None:
                dead.insert(conn, message.topic, item.device_id, message.payload,
                            item.reason or "")
            else:
                conn.execute(
                    "INSERT INTO dead_letters (topic, device_id, payload, payload_size, reason)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (message.topic, item.device_id, message.payload[:4096],
                     len(message.payload), (item.reason or "")[:1000]))
    except _connection_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a topic PostgreSQL cannot store
        logger.warning("could not keep the dead letter from %s: %s", message.topic,
                       _first_line(exc))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
