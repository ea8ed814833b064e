"""Building, signing and publishing releases: ``teddy-cloud release keygen|build|publish``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from support.paths import ROOT
from support.processes import run_cli

from config.errors import KeyFileError, ProtocolError
from sync.cloud.release import ReleaseError, generate_key, load_signing_key, publish_release
from sync.protocol.release import (
    ReleaseManifest,
    SignatureError,
    load_public_key,
    verify_manifest,
)


def test_keygen_build_publish_from_the_command_line(env, database, tmp_path):
    key = tmp_path / "keys" / "release.pem"
    made = run_cli("teddy-cloud", "release", "keygen", "--out", str(key), env=env)
    public = made.stdout.split("TEDDY_UPDATE__PUBLIC_KEY=")[1].strip()
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    cli_env = dict(env, TEDDY_UPDATE__SIGNING_KEY_FILE=str(key))
    out = tmp_path / "build"
    built = run_cli("teddy-cloud", "release", "build", "--version", "0.4.0", "--floor", "0.3.0",
                    "--source", str(ROOT), "--out", str(out), env=cli_env, timeout=300)
    assert "built release 0.4.0 (floor 0.3.0)" in built.stdout
    payload = (out / "manifest.json").read_bytes()
    manifest = verify_manifest(load_public_key(public), payload,
                               (out / "manifest.sig").read_bytes())
    assert (manifest.version, manifest.floor, manifest.complete) == ("0.4.0", "0.3.0", False)
    wheel = out / manifest.project_wheel().path
    assert wheel.name.startswith("teddy-0.4.0-")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == manifest.project_wheel().sha256

    store = tmp_path / "store"
    published = run_cli("teddy-cloud", "release", "publish", str(out), "--store", str(store),
                        "--base-url", "https://releases.example/teddy", env=cli_env)
    digest = hashlib.sha256(payload).hexdigest()
    url = f"https://releases.example/teddy/{digest}/"
    assert f"published release 0.4.0 at {url}" in published.stdout
    assert (store / digest / "manifest.json").read_bytes() == payload
    assert (store / digest / manifest.project_wheel().path).is_file()
    with database.connect() as conn:
        row = conn.execute("SELECT url, floor, complete FROM releases WHERE version = '0.4.0'"
                           ).fetchone()
    assert row == (url, "0.3.0", False)


def test_publish_refuses_a_build_that_no_longer_matches_its_manifest(tmp_path):
    from sync.cloud.release import write_manifest

    key_file = tmp_path / "k.pem"
    generate_key(key_file)
    release = tmp_path / "release"
    (release / "wheels").mkdir(parents=True)
    wheel = release / "wheels" / "teddy-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"pretend wheel")
    write_manifest(release, "1.0.0", "1.0.0", load_signing_key(key_file), complete=False)
    wheel.write_bytes(b"pretend wheel, altered")
    with pytest.raises(ReleaseError, match="does not match its manifest hash"):
        publish_release(release, tmp_path / "store", "http://x")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_readable_signing_key_or_an_overwrite_is_refused(tmp_path):
    key_file = tmp_path / "k.pem"
    generate_key(key_file)
    with pytest.raises(KeyFileError, match="exists"):
        generate_key(key_file)
    os.chmod(key_file, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signing_key(key_file)


def _manifest(**changes) -> dict:
    base = {"v": 1, "name": "teddy", "version": "1.2.0", "floor": "1.0.0",
            "created_at": "2026-01-01T00:00:00+00:00", "key_id": "0" * 16, "complete": True,
            "files": [{"path": "wheels/teddy-1.2.0-py3-none-any.whl", "sha256": "a" * 64,
                       "size": 10}]}
    base.update(changes)
    return base


@pytest.mark.parametrize("changes, message", [
    ({"floor": "1.3.0"}, "floor 1.3.0 is above"),
    ({"files": [{"path": "../../etc/passwd", "sha256": "a" * 64, "size": 1}]}, "stay inside"),
    ({"files": [{"path": "/etc/passwd", "sha256": "a" * 64, "size": 1}]}, "stay inside"),
    ({"version": "latest"}, "version"),
    ({"files": []}, "files"),
])
def test_manifest_contract_refuses_nonsense(changes, message):
    with pytest.raises(ProtocolError, match=message):
        ReleaseManifest.from_payload(json.dumps(_manifest(**changes)).encode())


def test_signed_by_a_key_other_than_the_one_it_names_is_refused(tmp_path):
    from sync.protocol.release import sign_manifest

    key_file = tmp_path / "k.pem"
    public = generate_key(key_file)
    payload = json.dumps(_manifest()).encode()  # key_id names no real key
    signature = sign_manifest(load_signing_key(key_file), payload)
    with pytest.raises(SignatureError, match="names key 0000000000000000"):
        verify_manifest(load_public_key(public), payload, signature)
    with pytest.raises(SignatureError, match="not base64"):
        verify_manifest(load_public_key(public), payload, b"%%%")
    with pytest.raises(SignatureError, match="32-byte Ed25519"):
        load_public_key("c2hvcnQ=")
    assert not Path(tmp_path / "store").exists()
