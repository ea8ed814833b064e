"""Shared parts of the parent-app tests: settings with a local SMTP server, families made
straight in PostgreSQL (for isolation, retention and the benchmark), sign-in by the link
that the captured e-mail carries."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings
from support.waiting import wait_until

LINK = re.compile(rb"(https?://\S+/signin/[A-Za-z0-9_-]+)")


def portal_settings(dsn: str, smtp_port: int, tmp_path: Path, base_url: str, **portal: Any
                    ) -> dict[str, Any]:
    """Settings (as keyword arguments) of a cloud with the parent app and its mail server."""
    return {
        "cloud": {"pg_dsn": dsn},
        "store": {"data_dir": tmp_path / "cloud"},
        "notify": {"channels": {"mail": {
            "type": "email", "audience": "parent", "host": "127.0.0.1", "port": smtp_port,
            "starttls": False, "sender": "teddy@example.org", "to_parent": True}}},
        "portal": {"mail_channel": "mail", "base_url": base_url,
                   "cloud_key_file": tmp_path / "cloud" / "portal-cloud.key",
                   "links_per_client_per_hour": 1000, **portal},
    }


def portal_env(settings: dict[str, Any]) -> dict[str, str]:
    """The same settings as TEDDY_* environment variables (for ``teddy-cloud portal``)."""
    env: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}__{key.upper()}" if prefix else key.upper(), inner)
        else:
            env[f"TEDDY_{prefix}"] = str(value).lower() if isinstance(value, bool) else str(value)

    walk("", settings)
    return env


def link_from(sink: Any, to: str, timeout: float = 10.0) -> str:
    """The newest sign-in link mailed to ``to``."""
    def newest_link() -> str | None:
        for _tls, _sender, rcpt, content in reversed(sink.messages):
            if to in rcpt and (found := LINK.search(content)):
                return found.group(1).decode()
        return None

    return wait_until(newest_link, timeout, f"a sign-in link mailed to {to}", interval=0.05)


def sign_in(client: Any, sink: Any, email: str) -> str:
    """Sign ``email`` in on a TestClient the way a parent does; returns the session's CSRF."""
    page = client.get("/signin")
    csrf = csrf_of(page.text)
    assert client.post("/signin", data={"email": email, "csrf": csrf}).status_code == 200
    path = "/" + link_from(sink, email).split("/", 3)[3]
    csrf = csrf_of(client.get(path).text)
    answer = client.post(path, data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/bears").text)


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def make_family(conn: Any, email: str, conversations: int = 2, turns: int = 4,
                days_ago: float = 0.0, keyring: Any = None, device: str | None = None
                ) -> dict[str, Any]:
    """A paired bear of ``email`` (made straight in the tables a real pairing fills) with
    sealed conversations; returns its ids. ``device``: the bear's id (a new one if None)."""
    device = device or f"bear-{secrets.token_hex(5)}"
    conn.execute("INSERT INTO devices (device_id, generation) VALUES (%s, 1)", (device,))
    pairing = conn.execute(
        "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, requested_at,"
        " expires_at, status, parent_email, approved_at, generation) VALUES (%s, %s, 'x', 'x',"
        " now(), now(), 'approved', %s, now(), 1) RETURNING pairing_id::text",
        (f"c{secrets.token_hex(12)}", device, email)).fetchone()[0]
    conn.execute("UPDATE devices SET pairing_id = %s WHERE device_id = %s", (pairing, device))
    ids = []
    start = datetime.now(UTC) - timedelta(days=days_ago)
    rows = []
    seq = 0
    for c in range(conversations):
        conversation = uuid.uuid4().hex
        ids.append(conversation)
        for t in range(turns):
            seq += 1
            role = "child" if t % 2 == 0 else "bear"
            text = f"{role} line {t} of conversation {c}"
            if keyring is not None:
                text = keyring.seal_for_pairing(conn, pairing, text)
            rows.append((device, seq, conversation, role, text,
                         start - timedelta(minutes=60 * c - t), "allow", [], "b", pairing))
    with conn.cursor() as cur:  # stamped with the pairing, as ingest stamps them
        cur.executemany(
            "INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at,"
            " action, categories, batch_id, pairing_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
    return {"device_id": device, "pairing_id": pairing, "conversations": ids, "email": email}


def settings_of(kwargs: dict[str, Any]) -> Settings:
    """Settings from :func:`portal_settings`' keyword arguments."""
    return Settings(**kwargs)


def seeded_family(conn: Any, config: dict[str, Any], email: str) -> dict[str, Any]:
    """A family with a flagged conversation and a wellbeing alert (pages with content)."""
    from sync.cloud import family_keys

    ring = family_keys.install(settings_of(config))
    family = make_family(conn, email, keyring=ring)
    conn.execute("UPDATE turns SET action = 'escalate', categories = '{distress}'"
                 " WHERE pairing_id = %s AND seq = 1", (family["pairing_id"],))
    said = "child line 0 of conversation 0"  # the escalated turn (seq 1), as a v2 bear sends
    conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at,"
                 " device_alert_id, pairing_id, category, quote, conversation_id, turn_seq)"
                 " VALUES (%s, 'wellbeing.escalation', 'info', 'the child said something a"
                 " parent should know about', now(), 'a1', %s, 'distress', %s, %s, 1)",
                 (family["device_id"], family["pairing_id"],
                  ring.seal_for_pairing(conn, family["pairing_id"], said),
                  family["conversations"][0]))
    return family


def parent_row(conn: Any, email: str) -> tuple[str, str]:
    """``(parent_id, family_id)`` of the parent with ``email``, found by its keyed hash (the
    address itself is sealed; the test's keyring must be the app's: ``family_keys.install``
    with the same settings)."""
    from sync.cloud import emails

    row = conn.execute("SELECT parent_id::text, family_id::text FROM parents WHERE"
                       " email_hash = %s", (emails.lookup(conn, email),)).fetchone()
    assert row is not None, f"no parent {email}"
    return row[0], row[1]
