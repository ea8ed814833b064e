"""Over-the-air updates on one bear, for real: releases built from this repository, served by
a local HTTP server, verified, installed into fresh venvs, switched to, checked, rolled back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.processes import run_cli
from support.releases import BASE_SITE_PACKAGES, ReleaseServer, release_kit
from support.waiting import wait_until

from agent.update import UpdateDeferred, Updater, UpdateRefused
from agent.update.bootguard import journal_read, read_state
from config.settings import load_settings


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory):
    """Signed test releases, built once per session."""
    return release_kit(tmp_path_factory.getbasetemp() / "releases")


@pytest.fixture
def bear_env(env: dict[str, str], tmp_path: Path, kit, monkeypatch: pytest.MonkeyPatch):
    """The bear's environment: its own release root, the fleet key, a simulated service
    running ``teddy chat``; also applied to this process for the in-process updater."""
    env = dict(env)
    env.update({
        "TEDDY_UPDATE__ROOT": str(tmp_path / "opt"),
        "TEDDY_UPDATE__PUBLIC_KEY": kit.public_key,
        "TEDDY_UPDATE__SERVICE": "simulated",
        "TEDDY_UPDATE__SERVICE_COMMAND": '["chat"]',
        "TEDDY_UPDATE__BASE_SITE_PACKAGES": str(BASE_SITE_PACKAGES),
        "TEDDY_UPDATE__CONFIRM_AFTER_S": "2",
        "TEDDY_UPDATE__MAX_STARTS": "2",
        "TEDDY_AUDIO__BACKEND": "wav",
        "TEDDY_MQTT__PORT": "1",  # no broker: the check must explain, not fail
    })
    for name, value in env.items():
        if name.startswith("TEDDY_"):
            monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def server(kit):
    """The release store on a local HTTP server."""
    with ReleaseServer(kit.store) as running:
        yield running


def updater_for(env: dict[str, str], **kwargs) -> Updater:
    """An updater with this bear's settings (no battery unless told)."""
    kwargs.setdefault("battery", lambda: None)
    return Updater(load_settings(), env=env, **kwargs)


def current_target(env: dict[str, str]) -> str:
    """Name of the release directory ``current`` points at."""
    return Path(env["TEDDY_UPDATE__ROOT"], "current").resolve().name


def steps(env: dict[str, str]) -> list[tuple[str, str]]:
    """``(step, outcome)`` of every journal entry."""
    return [(e["step"], e["outcome"]) for e in journal_read(Path(env["TEDDY_STORE__DATA_DIR"]))]


def test_release_is_fetched_verified_installed_and_switched_to(kit, server, bear_env):
    path = kit.release("0.2.0")
    server.cut_once(f"/{path}{_wheel_of(kit, path)}")  # the first transfer dies halfway
    with updater_for(bear_env) as updater:
        result = updater.apply(f"{server.url}/{path}")
        assert (result.outcome, result.version) == ("installed", "0.2.0"), result.reason
        assert updater.service.is_active(), "the new release is not running"

    assert current_target(bear_env) == "0.2.0"
    venv = Path(bear_env["TEDDY_UPDATE__ROOT"], "releases", "0.2.0", "venv")
    assert venv.is_dir() and not venv.is_symlink()
    reported = run_cli_in(Path(bear_env["TEDDY_UPDATE__ROOT"]) / "current", bear_env,
                          "update", "status")
    assert reported["version"] == "0.2.0" and reported["current"] == "0.2.0"
    assert reported["previous"] == "0.1.0"
    ranges = [r for p, r in server.requests if p.endswith(".whl") and r]
    assert ranges, "the cut download was not resumed with a Range request"
    assert steps(bear_env) == [("adopt", "adopted"), ("verify", "verified"),
                               ("install", "installed"), ("switch", "switched"),
                               ("health", "healthy"), ("confirm", "installed")]
    assert read_state(Path(bear_env["TEDDY_STORE__DATA_DIR"]))["floor"] == "0.2.0"

    # The floor of 0.2.0 is 0.2.0: a signed, older release is refused, nothing changes.
    # Asked the way an operator would, through the new release's own `teddy update apply`.
    older = kit.release("0.1.5", floor="0.1.0")
    teddy = Path(bear_env["TEDDY_UPDATE__ROOT"], "current", "venv", "bin", "teddy")
    refused = subprocess.run([str(teddy), "update", "apply", f"{server.url}/{older}"],
                             env=bear_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("teddy: error: release 0.1.5 is below this bear's floor "
                                     "0.2.0"), refused.stderr
    assert current_target(bear_env) == "0.2.0"
    assert not Path(bear_env["TEDDY_UPDATE__ROOT"], "releases", "0.1.5").exists()


def test_a_bear_that_never_updated_refuses_a_release_below_its_shipped_version(kit, server,
                                                                             bear_env):
    """The installed version is the floor from the first boot: without it, a signed but
    older release (with a low floor of its own) would install on a bear never updated."""
    older = kit.release("0.0.9", floor="0.0.1")
    with updater_for(bear_env) as updater:
        assert updater.floor() is None or updater.floor() == "0.1.0"
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(f"{server.url}/{older}")
        assert updater.floor() == "0.1.0"
    assert "release 0.0.9 is below this bear's floor 0.1.0" in str(refused.value)
    assert current_target(bear_env) == "0.1.0"
    assert not Path(bear_env["TEDDY_UPDATE__ROOT"], "releases", "0.0.9").exists()
    assert read_state(Path(bear_env["TEDDY_STORE__DATA_DIR"]))["floor"] == "0.1.0"


def test_a_bear_adopted_before_the_floor_was_kept_still_has_its_shipped_floor(bear_env):
    """A bear whose first release was adopted by older software (no floor in its state):
    the adopted release's marker still names the shipped version as the floor."""
    root = Path(bear_env["TEDDY_UPDATE__ROOT"])
    adopted = root / "releases" / "0.1.0"
    adopted.mkdir(parents=True)
    (adopted / "adopted.json").write_text(json.dumps({"version": "0.1.0", "venv": "/x"}))
    (root / "current").symlink_to(adopted)
    with updater_for(bear_env) as updater:
        assert read_state(Path(bear_env["TEDDY_STORE__DATA_DIR"]))["floor"] is None
        assert updater.floor() == "0.1.0"
        assert updater.status()["floor"] == "0.1.0"


def _wheel_of(kit, path: str) -> str:
    manifest = json.loads((kit.store / path / "manifest.json").read_text())
    return next(f["path"] for f in manifest["files"] if f["path"].endswith(".whl"))


def run_cli_in(release: Path, env: dict[str, str], *args: str) -> dict:
    """Run ``teddy ARGS`` from a release's own venv; its JSON answer."""
    result = subprocess.run([str(release / "venv" / "bin" / "teddy"), *args], env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def _tamper(release: Path) -> str:
    wheel = next((release / "wheels").glob("*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    return "has SHA-256"


def _wrong_signature(release: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sync.protocol.release import sign_manifest

    other = Ed25519PrivateKey.generate()
    payload = (release / "manifest.json").read_bytes()
    (release / "manifest.sig").write_bytes(sign_manifest(other, payload))
    return "does not verify with this fleet's release key"


def _truncate(release: Path) -> str:
    wheel = next((release / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:5000])
    return "stopped at 5000 of"


def _edit_manifest(release: Path) -> str:
    manifest = release / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"floor":"0.2.0"', b'"floor":"0.0.1"'))
    return "does not verify with this fleet's release key"


@pytest.mark.parametrize("damage", [_tamper, _wrong_signature, _truncate, _edit_manifest],
                         ids=["tampered-file", "wrong-signature", "truncated", "edited-manifest"])
def test_a_damaged_release_is_refused_and_nothing_changes(kit, bear_env, tmp_path, damage):
    path = kit.release("0.2.0")
    served = tmp_path / "served"
    shutil.copytree(kit.store / path, served / path)
    expected = damage(served / path)
    with ReleaseServer(served) as server, updater_for(bear_env) as updater:
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(f"{server.url}/{path}")
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)
    assert current_target(bear_env) == "0.1.0"  # the adopted running release, untouched
    assert not Path(bear_env["TEDDY_UPDATE__ROOT"], "releases", "0.2.0").exists()
    last = journal_read(Path(bear_env["TEDDY_STORE__DATA_DIR"]))[-1]
    assert last["outcome"] == "refused" and expected in last["reason"]


def test_a_release_that_cannot_open_the_store_rolls_back(kit, server, bear_env):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=bear_env)  # a store exists
    path = kit.release("0.3.0", "broken-store", floor="0.1.0")
    with updater_for(bear_env) as updater:
        result = updater.apply(f"{server.url}/{path}")
        assert result.outcome == "rolled_back"
        assert "store cannot be opened" in result.reason
        assert updater.service.is_active(), "the previous release is not running again"
    assert current_target(bear_env) == "0.1.0"
    assert ("rollback", "rolled_back") in steps(bear_env)
    state = read_state(Path(bear_env["TEDDY_STORE__DATA_DIR"]))
    # the rolled-back release's floor (0.1.0) is not taken; the shipped version is the floor
    assert state["pending"] is None and state["floor"] == "0.1.0"


def test_a_release_that_crashes_at_start_is_rolled_back_by_the_boot_guard(kit, server,
                                                                           bear_env):
    path = kit.release("0.3.1", "crash", floor="0.1.0")
    with updater_for(bear_env) as updater:
        result = updater.apply(f"{server.url}/{path}")
        assert result.outcome == "rolled_back", result.reason
        assert "crash loop" in result.reason
        wait_until(updater.service.is_active, 20, "the previous release to run again")
        assert updater.service.starts >= 3  # two tries of 0.3.1, then 0.1.0 again
    assert current_target(bear_env) == "0.1.0"
    rollback = [e for e in journal_read(Path(bear_env["TEDDY_STORE__DATA_DIR"]))
                if e["step"] == "rollback"]
    assert rollback and rollback[-1]["by"] == "bootguard" and rollback[-1]["to"] == "0.1.0"


def test_no_update_while_the_child_talks_the_battery_is_low_or_another_runs(kit, server, bear_env):
    path = kit.release("0.2.0")
    with updater_for(bear_env, is_busy=lambda: True) as updater, \
            pytest.raises(UpdateDeferred, match="mid-conversation"):
        updater.apply(f"{server.url}/{path}")
    with updater_for(bear_env, battery=lambda: 12.0) as updater, \
            pytest.raises(UpdateDeferred, match="battery at 12%"):
        updater.apply(f"{server.url}/{path}")
    with updater_for(bear_env) as first, first._one_at_a_time(), \
            updater_for(bear_env) as second, \
            pytest.raises(UpdateDeferred, match="another update is in progress"):
        second.apply(f"{server.url}/{path}")
    assert not any(p.endswith(".whl") for p, _ in server.requests)
    assert not Path(bear_env["TEDDY_UPDATE__ROOT"], "current").exists()
    assert [e["outcome"] for e in journal_read(Path(bear_env["TEDDY_STORE__DATA_DIR"]))] == \
        ["deferred", "deferred"]


def test_boot_guard_copy_runs_with_plain_python(tmp_path):
    """The copy systemd runs (ExecStartPre) needs nothing but the standard library."""
    from agent.update.service import install_bootguard

    copy = install_bootguard(tmp_path)
    result = subprocess.run(["python3", "-I", str(copy), "--data-dir", str(tmp_path / "d"),
                             "--root", str(tmp_path)], capture_output=True, text=True,
                            timeout=30, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr


def test_a_release_without_dependency_wheels_needs_a_base_venv(kit, server, bear_env,
                                                               monkeypatch):
    monkeypatch.delenv("TEDDY_UPDATE__BASE_SITE_PACKAGES")
    path = kit.release("0.2.0")
    with updater_for(bear_env) as updater, pytest.raises(UpdateRefused) as refused:
        updater.apply(f"{server.url}/{path}")
    assert "carries no dependency wheels" in str(refused.value)
    assert current_target(bear_env) == "0.1.0"
    assert not Path(bear_env["TEDDY_UPDATE__ROOT"], "releases", "0.2.0").exists()
