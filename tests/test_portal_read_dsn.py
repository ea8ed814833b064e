"""``portal.read_dsn``: the parent app's transcript pages read a replica (here a copy of the
primary made with ``CREATE DATABASE ... TEMPLATE``, then changed so the two differ), read-only;
sign-in, bears and changes stay on the primary; unset, everything reads the primary."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from support.database import ADMIN_DSN, migrated_database
from support.portal import make_family, portal_settings, settings_of, sign_in

from sync.cloud import db, family_keys
from sync.cloud.portal import auth

BASE = "https://testserver"


@pytest.fixture
def primary_and_replica(smtp, tmp_path: Path):
    """A primary with one family, and a copy of it (the 'replica') holding one more
    conversation than the primary."""
    with migrated_database() as primary:
        config = portal_settings(primary.dsn, smtp[0], tmp_path, BASE)
        ring = family_keys.install(settings_of(config))
        email = f"replica-{uuid.uuid4().hex[:6]}@example.org"
        with primary.connect() as conn:
            family = make_family(conn, email, conversations=1, keyring=ring)
            auth.parent_for(conn, email)
        name = f"{primary.name}_replica"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{primary.name}"')
        replica_dsn = f"{ADMIN_DSN.rpartition('/')[0]}/{name}"
        try:
            only = f"replica-only-{uuid.uuid4().hex[:8]}"
            with psycopg.connect(replica_dsn, autocommit=True) as conn:
                text = ring.seal_for_pairing(conn, family["pairing_id"], "seen on the replica")
                conn.execute(
                    "INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at,"
                    " action, batch_id, pairing_id) VALUES (%s, 99, %s, 'child', %s, %s,"
                    " 'allow', 'r', %s)",
                    (family["device_id"], only, text, datetime.now(UTC), family["pairing_id"]))
            yield config, family, replica_dsn, only
        finally:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _client(config: dict, pool, **portal):
    from fastapi.testclient import TestClient

    from sync.cloud.portal.app import create_app

    settings = settings_of({**config, "portal": {**config["portal"], **portal}})
    family_keys.install(settings)
    return TestClient(create_app(settings, pool), base_url=BASE)


def test_transcript_pages_read_the_replica_named_by_portal_read_dsn(primary_and_replica, smtp):
    config, family, replica_dsn, only = primary_and_replica
    pool = db.open_pool(settings_of(config).cloud)
    try:
        client = _client(config, pool, read_dsn=replica_dsn)
        sign_in(client, smtp[1], family["email"])  # sessions: the primary
        bear = f"/bears/{family['pairing_id']}"
        listed = client.get(f"{bear}/conversations")
        assert listed.status_code == 200 and only in listed.text
        assert family["conversations"][0] in listed.text
        page = client.get(f"{bear}/conversations/{only}")
        assert page.status_code == 200 and "seen on the replica" in page.text
        assert client.get(bear).status_code == 200  # the bear's page: the primary
        reads = client.app.state.read_pool
        with reads.connection() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM turns")
        # a change decides on the primary: the replica's conversation is not the family's there
        assert client.post(f"{bear}/conversations/{only}/delete",
                           data={"csrf": _csrf(client, bear)}).status_code == 404
        reads.close()

        unset = _client(config, pool)
        assert unset.app.state.read_pool is None
        sign_in(unset, smtp[1], family["email"])
        listed = unset.get(f"{bear}/conversations")
        assert listed.status_code == 200 and family["conversations"][0] in listed.text
        assert only not in listed.text
    finally:
        pool.close()


def _csrf(client, path: str) -> str:
    from support.portal import csrf_of

    return csrf_of(client.get(path).text)
