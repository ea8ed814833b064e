"""``teddy-cloud portal keygen``: the cloud key that seals every family's transcripts is made
once, 0600, before ingest and the parent app start; it is never replaced by accident."""

from __future__ import annotations

import signal
import stat

from support.processes import run_cli, start_cli, wait_for_log


def test_keygen_makes_the_cloud_key_once_and_refuses_to_replace_it(env, tmp_path):
    key = tmp_path / "credentials" / "portal-cloud.key"
    made = run_cli("teddy-cloud", "portal", "keygen", "--out", str(key), env=env)
    assert f"cloud key written to {key}" in made.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    again = run_cli("teddy-cloud", "portal", "keygen", "--out", str(key), env=env, check=False)
    assert again.returncode == 1 and "already exists — keep it" in again.stderr
    assert key.read_bytes() == first


def test_the_ingest_unit_loads_the_cloud_key():
    from pathlib import Path

    unit = (Path(__file__).resolve().parent.parent / "systemd" / "teddy-cloud-ingest@.service"
            ).read_text().splitlines()
    assert "LoadCredential=portal-cloud.key:/etc/teddy/credentials/portal-cloud.key" in unit
    assert "Environment=TEDDY_PORTAL__CLOUD_KEY_FILE=%d/portal-cloud.key" in unit


def test_ingest_waits_for_its_configured_cloud_key_and_never_stores_text_unsealed(
        broker, database, env, tmp_path):
    """Like a broker that is not up yet: ingest says what is missing and how to make it,
    waits (not consuming: the bears keep their turns), and starts once the key is there."""
    missing = tmp_path / "credentials" / "portal-cloud.key"
    env = dict(env, TEDDY_PORTAL__CLOUD_KEY_FILE=str(missing))
    log = tmp_path / "ingest.log"
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=env, log=log)
    try:
        wait_for_log(log, "ingest will not store transcripts unsealed")
        said = log.read_text()
        assert str(missing) in said and "teddy-cloud portal keygen" in said
        assert "ingesting" not in said and ingest.poll() is None
        run_cli("teddy-cloud", "portal", "keygen", "--out", str(missing), env=env)
        wait_for_log(log, "ingesting")  # with its key it starts
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(15)
    assert ingest.returncode == 0
