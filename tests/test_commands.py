"""Fleet commands on the bear: every command, and every way a command is refused."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import BearControls, CommandProcessor
from agent.content_update import installed_dir, installed_version
from agent.credentials import CredentialVault, FleetCredentials
from agent.runtime import open_bear
from agent.store import ConversationStore, Scope
from config.settings import Settings
from sync.cloud.fleet import public_key_bytes
from sync.protocol import Command, CommandResult, ConfigDesired, ContentBundle
from sync.protocol.commands import (
    COMMAND_NAMES,
    CommandRegistryError,
    NoArgs,
    VolumeArgs,
    require_handlers,
)

DEVICE = "bear-cmd-test"


@pytest.fixture
def device_settings(data_dir: Path) -> Settings:
    """A bear with a device id and its store in ``data_dir``."""
    return Settings(device={"id": DEVICE}, store={"data_dir": data_dir})


@pytest.fixture
def fleet_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def kept(device_settings: Settings):
    """A store with consent and two exchanges kept (the real pipeline)."""
    with ConversationStore.open(device_settings.store, create=True) as store:
        store.grant_consent("sam@example.org", [Scope.KEEP, Scope.SYNC], source="cloud")
    with open_bear(device_settings) as teddy:
        teddy.respond("hello teddy")
        teddy.respond("tell me a joke")
    store = ConversationStore.open(device_settings.store)
    yield store
    store.close()


class Restarts:
    """The runtime's restart hook: counts restarts."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def processor(device_settings, fleet_key, store=None, **controls) -> CommandProcessor:
    return CommandProcessor(BearControls(device_settings, store=lambda: store, **controls), DEVICE,
                            public_key_bytes(fleet_key))


def command(key, name: str, args: dict | None = None, *, device: str = DEVICE,
            issued: float | None = None, ttl: float = 60, command_id: str | None = None) -> bytes:
    issued = time.time() if issued is None else issued
    cmd = Command(id=command_id or uuid.uuid4().hex, device_id=device, name=name,
                  args=args or {}, issued_at=issued, expires_at=issued + ttl)
    return (cmd.signed_with(key) if key is not None else cmd).to_payload()


def run(proc: CommandProcessor, payload: bytes) -> CommandResult:
    result, after = proc.handle(payload)
    if after is not None:
        after()
    return CommandResult.from_payload(result.to_payload())  # it travels as JSON


# --- every command --------------------------------------------------------------------


def test_ping_and_health(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    pong = run(proc, command(fleet_key, "ping"))
    assert pong.status == "done" and pong.data["pong"] is True
    assert abs(pong.data["time"] - time.time()) < 5
    health = run(proc, command(fleet_key, "health"))
    assert health.status == "done"
    sample = health.data["sample"]
    assert 0 < sample["memory_percent"] <= 100 and sample["disk_free_mb"] > 0


def test_set_volume_applies_live_and_refuses_out_of_range(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    heard: list = []
    proc.config.on_change(lambda key, value: heard.append((key, value)))
    result = run(proc, command(fleet_key, "set-volume", {"volume": 0.25}))
    assert result.status == "done" and device_settings.voice.tts_volume == 0.25
    assert heard == [("voice.tts_volume", 0.25)]
    loud = run(proc, command(fleet_key, "set-volume", {"volume": 7}))
    assert loud.status == "rejected" and "volume" in loud.reason
    assert "less than or equal" in loud.reason
    assert device_settings.voice.tts_volume == 0.25


def test_set_config_applies_live_reports_restart_and_refuses_invalid(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    ok = run(proc, command(fleet_key, "set-config", {"values": {
        "dialogue.age_band": "3-5", "store.retention_days": 7, "pins.paw_pin": 5}}))
    assert ok.status == "done"
    assert ok.data == {"applied": {"dialogue.age_band": "3-5", "store.retention_days": 7},
                       "pending_restart": {"pins.paw_pin": 5}}
    assert device_settings.dialogue.age_band == "3-5" and device_settings.store.retention_days == 7
    bad = run(proc, command(fleet_key, "set-config", {"values": {
        "dialogue.age_band": "6-8", "store.retention_days": 0, "mqtt.host": "evil.example"}}))
    assert bad.status == "failed"
    assert ("store.retention_days=0 is invalid: Input should be greater than or equal to 1"
            in bad.reason)
    assert "mqtt.host cannot be set remotely" in bad.reason
    assert device_settings.dialogue.age_band == "3-5"  # all or nothing


def test_delete_data_shreds_everything_kept(device_settings, fleet_key, kept):
    assert len(kept.conversations()) == 1
    turns = len(kept.turns())
    result = run(processor(device_settings, fleet_key, kept), command(fleet_key, "delete-data"))
    assert result.status == "done"
    assert result.data["turns_deleted"] == turns and result.data["conversations_left"] == 0
    assert kept.turns() == [] and kept.outbox_depth() == 0


def test_export_summary_has_counts_and_no_words(device_settings, fleet_key, kept):
    result = run(processor(device_settings, fleet_key, kept), command(fleet_key, "export-summary"))
    assert result.status == "done"
    assert result.data["turns"] == 4 and result.data["consent"]["scopes"] == ["keep", "sync"]
    text = json.dumps(result.data)
    assert "hello" not in text and "joke" not in text and "sam@example.org" not in text


def test_restart_runs_after_the_result(device_settings, fleet_key):
    restarts = Restarts()
    proc = processor(device_settings, fleet_key, restart=restarts)
    result, after = proc.handle(command(fleet_key, "restart"))
    assert result.status == "done" and restarts.count == 0  # not before the result is out
    after()
    assert restarts.count == 1
    no_supervisor = run(processor(device_settings, fleet_key), command(fleet_key, "restart"))
    assert no_supervisor.status == "failed" and "cannot restart" in no_supervisor.reason


def test_unpair_shreds_data_and_credentials(device_settings, fleet_key, kept):
    vault = CredentialVault(device_settings.store)
    vault.save(FleetCredentials(DEVICE, DEVICE, "x" * 32, public_key_bytes(fleet_key), 0.0))
    told: list = []
    proc = processor(device_settings, fleet_key, kept, unpaired=lambda: told.append(True))
    result = run(proc, command(fleet_key, "unpair"))
    assert result.status == "done" and result.data["conversations_deleted"] >= 1
    assert kept.consent() is None and kept.turns() == []
    assert not vault.exists() and not vault.key_path.exists() and told == [True]


def test_update_content_pack_installs_a_signed_bundle(device_settings, fleet_key):
    from agent.dialogue.content import CONTENT_DIR, load_pack

    jokes = json.loads((CONTENT_DIR / "jokes.json").read_text())
    jokes["jokes"].insert(0, {"q": "What do bears eat for breakfast?", "a": "Bear-ies!"})
    bundle = ContentBundle(version=2, files={"jokes.json": json.dumps(jokes)})
    proc = processor(device_settings, fleet_key)
    result = run(proc, command(fleet_key, "update-content-pack",
                               {"bundle": bundle.signed_with(fleet_key).model_dump()}))
    assert result.status == "done", result.reason
    assert result.data == {"version": 2, "files": ["jokes.json"]}
    directory = installed_dir(device_settings.store.data_dir)
    pack = load_pack("6-8", directory)
    assert any(j.question == "What do bears eat for breakfast?" for j in pack.jokes)
    assert installed_version(device_settings.store.data_dir) == 2
    with open_bear(device_settings) as teddy:  # the next start speaks from the installed pack
        assert any(j.question == "What do bears eat for breakfast?"
                   for j in teddy.dialogue.pack.jokes)

    again = run(proc, command(fleet_key, "update-content-pack",
                              {"bundle": bundle.signed_with(fleet_key).model_dump()}))
    assert again.status == "failed" and "not newer than the installed version 2" in again.reason
    forged = ContentBundle(version=3, files={"jokes.json": "{}"}).signed_with(
        Ed25519PrivateKey.generate())
    refused = run(proc, command(fleet_key, "update-content-pack",
                                {"bundle": forged.model_dump()}))
    assert refused.status == "failed" and "signature does not verify" in refused.reason
    broken = ContentBundle(version=4, files={"jokes.json": '{"jokes": []}'}).signed_with(fleet_key)
    unusable = run(proc, command(fleet_key, "update-content-pack",
                                 {"bundle": broken.model_dump()}))
    assert unusable.status == "failed" and "does not load" in unusable.reason
    assert installed_version(device_settings.store.data_dir) == 2  # the good pack stays


# --- refusals -------------------------------------------------------------------------


def test_update_waits_while_the_child_is_talking(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key, is_busy=lambda: True)
    result = run(proc, command(fleet_key, "update", {
        "release_url": "http://127.0.0.1:9/releases/9.9.9/", "version": "9.9.9"}))
    assert result.status == "done"
    assert result.data["outcome"] == "deferred" and result.data["version"] == "9.9.9"


def test_update_without_a_release_key_is_refused_with_the_way_out(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    result = run(proc, command(fleet_key, "update", {
        "release_url": "http://127.0.0.1:9/releases/9.9.9/", "version": "9.9.9"}))
    assert result.status == "done" and result.data["outcome"] == "refused"
    assert "TEDDY_UPDATE__PUBLIC_KEY" in result.data["reason"]


def test_unsigned_command_is_rejected(device_settings, fleet_key):
    result = run(processor(device_settings, fleet_key), command(None, "ping"))
    assert result.status == "rejected" and result.reason.startswith("unsigned command")


def test_foreign_signed_command_is_rejected(device_settings, fleet_key):
    result = run(processor(device_settings, fleet_key), command(Ed25519PrivateKey.generate(),
                                                                "ping"))
    assert result.status == "rejected" and "signature does not verify" in result.reason


def test_tampered_command_is_rejected(device_settings, fleet_key, kept):
    payload = json.loads(command(fleet_key, "ping"))
    payload["name"] = "delete-data"
    result = run(processor(device_settings, fleet_key, kept), json.dumps(payload).encode())
    assert result.status == "rejected" and "signature does not verify" in result.reason
    assert kept.turns() != []


def test_expired_command_is_rejected(device_settings, fleet_key):
    result = run(processor(device_settings, fleet_key),
                 command(fleet_key, "ping", issued=time.time() - 120, ttl=60))
    assert result.status == "rejected" and result.reason.startswith("expired command")


def test_command_from_the_future_is_rejected(device_settings, fleet_key):
    result = run(processor(device_settings, fleet_key),
                 command(fleet_key, "ping", issued=time.time() + 3600))
    assert result.status == "rejected" and "issued in the future" in result.reason


def test_replayed_command_is_rejected_even_after_a_restart(device_settings, fleet_key):
    payload = command(fleet_key, "ping")
    assert run(processor(device_settings, fleet_key), payload).status == "done"
    again = run(processor(device_settings, fleet_key),
                payload)  # a new process: the ids are on disk
    assert again.status == "rejected" and again.reason.startswith("replayed command")


def test_command_for_another_bear_is_rejected(device_settings, fleet_key):
    result = run(processor(device_settings, fleet_key), command(fleet_key, "ping",
                                                                device="bear-other"))
    assert result.status == "rejected" and "for device 'bear-other'" in result.reason


def test_unknown_command_and_bad_arguments_are_rejected(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    unknown = run(proc, command(fleet_key, "self-destruct"))
    assert unknown.status == "rejected" and "unknown command 'self-destruct'" in unknown.reason
    extra = run(proc, command(fleet_key, "ping", {"x": 1}))
    assert extra.status == "rejected" and "invalid arguments for ping" in extra.reason
    garbage = run(proc, b"not json")
    assert garbage.status == "rejected" and garbage.id == "unknown"


# --- desired config -------------------------------------------------------------------


def desired(key, version: int, values: dict, device: str = DEVICE) -> bytes:
    return ConfigDesired(device_id=device, version=version, values=values,
                         issued_at=time.time()).signed_with(key).to_payload()


def test_desired_config_is_verified_applied_and_never_rolled_back(device_settings, fleet_key):
    proc = processor(device_settings, fleet_key)
    report = proc.handle_config(desired(fleet_key, 2, {"voice.tts_rate": 120}))
    assert report.version == 2 and report.applied == {"voice.tts_rate": 120} and not report.rejected
    assert device_settings.voice.tts_rate == 120
    old = proc.handle_config(desired(fleet_key, 1, {"voice.tts_rate": 300}))
    assert "older than the applied version 2" in old.rejected["(config)"]
    foreign = proc.handle_config(desired(Ed25519PrivateKey.generate(), 3, {"voice.tts_rate": 90}))
    assert "signature does not verify" in foreign.rejected["(config)"]
    invalid = proc.handle_config(desired(fleet_key, 4, {"voice.tts_rate": -5}))
    assert "voice.tts_rate" in invalid.rejected and device_settings.voice.tts_rate == 120
    assert proc.handle_config(b"") is None  # a cleared retained config


def test_seen_ids_survive_a_torn_line_and_expired_ones_are_compacted(device_settings, fleet_key,
                                                                     monkeypatch):
    from agent.commands import SEEN_FILE, SeenCommands

    path = Path(device_settings.store.data_dir) / SEEN_FILE
    seen = SeenCommands(path)
    seen.remember("old-command", time.time() - 3600)
    seen.remember("live-command", time.time() + 3600)
    seen.set_config_version(7)
    with path.open("a") as handle:
        handle.write('{"id": "torn')  # power lost mid-line
    monkeypatch.setattr(SeenCommands, "COMPACT_AFTER", 2)
    again = SeenCommands(path)
    assert again.seen("live-command") and not again.seen("old-command")
    assert again.config_version == 7
    assert "old-command" not in path.read_text() and "torn" not in path.read_text()


@pytest.mark.parametrize("key, value", [
    ("update.public_key", "AAAA"),          # who the bear trusts for releases
    ("mqtt.host", "evil.example"),          # where its data goes
    ("store.key_provider", "os:system"),    # code it would import
    ("voice.model_path", "/tmp/model"),     # a file on the bear
    ("audio.wav_output", "/tmp/out.wav"),   # a file on the bear
    ("notify.dedupe_window_s", 1),          # not the bear's business
])
def test_settings_the_fleet_may_not_touch_are_refused(device_settings, fleet_key, key, value):
    result = run(processor(device_settings, fleet_key), command(fleet_key, "set-config",
                                                                {"values": {key: value}}))
    assert result.status == "failed"
    assert result.reason == f"config refused: {key} cannot be set remotely — change it on the bear"


# --- the registry ---------------------------------------------------------------------


def test_every_command_of_the_registry_has_exactly_one_handler():
    from agent.commands import HANDLERS
    from sync.protocol.commands import COMMANDS

    assert tuple(HANDLERS) == COMMAND_NAMES == tuple(COMMANDS)


def test_a_command_added_without_a_handler_stops_the_bear_at_import():
    """A new name in COMMANDS with no handler fails ``import agent.commands`` (so ``teddy
    run`` never starts), instead of a KeyError later that would lose the cmd-result."""
    import subprocess
    import sys

    script = (
        "from types import MappingProxyType\n"
        "import sync.protocol.commands as registry\n"
        "registry.COMMANDS = MappingProxyType({**registry.COMMANDS,"
        " 'self-destruct': registry.NoArgs})\n"
        "registry.COMMAND_NAMES = tuple(registry.COMMANDS)\n"
        "import agent.commands\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "CommandRegistryError" in done.stderr
    assert "no handler for ['self-destruct']" in done.stderr


def test_require_handlers_refuses_a_missing_an_unknown_or_a_mistyped_handler():
    def takes_nothing(processor, args: NoArgs): ...

    def takes_volume(processor, args: VolumeArgs): ...

    complete = dict.fromkeys(COMMAND_NAMES, takes_nothing)
    complete["set-volume"] = takes_volume
    for name in COMMAND_NAMES:  # the models of the others differ: no annotation there
        if name not in ("ping", "health", "export-summary", "restart", "set-volume"):
            complete[name] = lambda processor, args: None
    require_handlers(complete, "test")
    with pytest.raises(CommandRegistryError, match=r"no handler for \['ping'\]"):
        require_handlers({n: h for n, h in complete.items() if n != "ping"}, "test")
    with pytest.raises(CommandRegistryError, match=r"unknown commands \['reboot'\]"):
        require_handlers({**complete, "reboot": takes_nothing}, "test")
    with pytest.raises(CommandRegistryError, match="the handler of set-volume takes NoArgs"):
        require_handlers({**complete, "set-volume": takes_nothing}, "test")


def test_a_command_that_cannot_be_recorded_answers_failed_and_can_run_later(device_settings,
                                                                           fleet_key):
    """The seen-ids file cannot be written (here: a directory stands in its way): the
    command does not run, the result says why, and the id is not taken as run."""
    from agent.commands import SEEN_FILE

    proc = processor(device_settings, fleet_key)
    seen_file = Path(device_settings.store.data_dir) / SEEN_FILE
    seen_file.unlink(missing_ok=True)
    seen_file.mkdir(parents=True)
    payload = command(fleet_key, "ping")
    broken = run(proc, payload)
    assert broken.status == "failed" and broken.reason.startswith("not run, the bear could not")
    assert "IsADirectoryError" in broken.reason and broken.id == Command.from_payload(payload).id
    seen_file.rmdir()
    assert run(proc, payload).status == "done"  # the same command, once the disk is fixed
    assert run(proc, payload).reason.startswith("replayed command")
