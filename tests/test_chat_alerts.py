"""``teddy chat`` is the same pipeline as the appliance for alerts too: a wellbeing escalation
lands in ``health.db`` (the journal ``teddy run`` uses) for the uplink to publish later, with
no transcript text in it."""

from __future__ import annotations

import sqlite3

from support.processes import run_cli

from agent.health.journal import HealthJournal
from config.settings import load_settings

LINE = "my uncle hits me and says it is our secret"


def test_chat_escalation_leaves_an_unpublished_wellbeing_alert_in_health_db(env, data_dir):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    run_cli("teddy", "chat", env=env, stdin=f"hello teddy\n{LINE}\n")
    settings = load_settings(store={"data_dir": data_dir})
    path = data_dir / settings.health.journal_name
    assert path.exists(), "teddy chat journaled nothing"
    with HealthJournal(path) as journal:
        pending = [a for a in journal.unpublished() if a.kind == "wellbeing.escalation"]
    assert len(pending) == 1, pending
    alert = pending[0]
    assert not alert.raise_published  # waits for the uplink, like the appliance's
    assert alert.severity == "high" and {"abuse", "secrets"} & set(alert.details["categories"])
    assert alert.device_id == (data_dir / "device_id").read_text().strip()
    raw = sqlite3.connect(path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    for word in ("uncle", "hits", "our secret"):
        assert word not in dump  # never the child's words


def test_chat_without_consent_keeps_no_journal(env, data_dir):
    """Like the appliance: without a parent's consent nothing is written at all."""
    run_cli("teddy", "chat", env=env, stdin=f"{LINE}\n")
    assert not data_dir.exists() or list(data_dir.iterdir()) == []
