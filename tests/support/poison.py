"""Payloads the ingest tests publish: turns and batches written as raw JSON text (so a test
can put ``NaN``, ``1e400`` or a 5000-digit number where a value goes), and the dead letters
ingest files them under."""

from __future__ import annotations

import json
import time


def turn_json(seq: object = 1, created_at: object = None) -> str:
    """One child turn as JSON text; ``seq`` and ``created_at`` go in as written (a string is a
    raw JSON token), ``created_at`` defaults to now."""
    at = time.time() if created_at is None else created_at
    return (f'{{"seq": {seq}, "conversation_id": "c1", "role": "child", "text": "hi", '
            f'"created_at": {at}, "action": "allow", "categories": []}}')


def batch_json(device: str, *turns: str, **fields: object) -> bytes:
    """A ``turns`` batch of ``device`` holding the raw ``turns`` (default: one turn now);
    ``fields`` replace or add top-level fields (``v=2``)."""
    head = {"v": 1, "device_id": device, "batch_id": "b-1", **fields}
    listed = ", ".join(turns or (turn_json(),))
    return f'{json.dumps(head)[:-1]}, "turns": [{listed}]}}'.encode()


def dead_letters_of(database, topics: list[str]) -> dict[str, tuple[str, int, int]]:
    """The dead letters filed under ``topics``: topic -> (reason, payload size, bytes kept).
    Only these topics: the database is shared by the whole session."""
    with database.connect() as conn:
        rows = conn.execute("SELECT topic, reason, payload_size, length(payload)"
                            " FROM dead_letters WHERE topic = ANY(%s)", (topics,)).fetchall()
    return {topic: (reason, size, kept) for topic, reason, size, kept in rows}
