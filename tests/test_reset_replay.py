"""Issue 21, item 7: a command issued before a factory reset never runs after it. The reset
shreds the command log (ids already run), so before the fix a signed command up to 7 days old
ran again on the reset bear; now the reset records its time and epoch (kept, not shredded)
and the bear refuses every command issued before it."""

from __future__ import annotations

import json
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import BearControls, CommandProcessor
from agent.factory_reset import RESET_FILE, factory_reset, last_reset
from config.settings import Settings
from sync.cloud.fleet import public_key_bytes
from sync.protocol import Command

DEVICE = "bear-reset-replay"


def _command(key: Ed25519PrivateKey, issued: float, ttl: float = 7 * 86400.0) -> bytes:
    return Command(id=uuid.uuid4().hex, device_id=DEVICE, name="ping", issued_at=issued,
                   expires_at=issued + ttl).signed_with(key).to_payload()


def _processor(settings: Settings, key: Ed25519PrivateKey) -> CommandProcessor:
    return CommandProcessor(BearControls(settings), DEVICE, public_key_bytes(key))


def test_a_command_issued_before_a_factory_reset_is_refused_after_it(tmp_path):
    settings = Settings(device={"id": DEVICE}, store={"data_dir": tmp_path / "bear"})
    key = Ed25519PrivateKey.generate()
    old = _command(key, issued=time.time() - 3600)
    assert _processor(settings, key).handle(old)[0].status == "done"
    report = factory_reset(settings)
    assert "commands-seen.jsonl" in report.files  # the log of ids that ran is gone
    again, _after = _processor(settings, key).handle(old)  # a fresh start after the reset
    assert again.status == "rejected" and "factory reset" in again.reason
    fresh = _command(key, issued=time.time())
    assert _processor(settings, key).handle(fresh)[0].status == "done"
    reset_at, epoch = last_reset(settings)
    assert epoch == 1 and abs(reset_at - time.time()) < 60
    time.sleep(0.01)
    factory_reset(settings)
    assert last_reset(settings)[1] == 2  # each reset a new epoch
    refused = _processor(settings, key).handle(fresh)[0]
    assert refused.status == "rejected" and "factory reset" in refused.reason


def test_a_damaged_reset_record_refuses_rather_than_forgets(tmp_path):
    settings = Settings(device={"id": DEVICE}, store={"data_dir": tmp_path / "bear"})
    key = Ed25519PrivateKey.generate()
    factory_reset(settings)
    path = settings.store.data_dir / RESET_FILE
    path.write_text("{not json")
    result, _ = _processor(settings, key).handle(_command(key, issued=time.time() - 60))
    assert result.status == "rejected"  # the file's own time stands in for the record
    path.write_text(json.dumps({"reset_at": "soon", "epoch": -1}))
    result, _ = _processor(settings, key).handle(_command(key, issued=time.time() - 60))
    assert result.status == "rejected"
