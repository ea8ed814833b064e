"""What the parent app tells a parent after an action: whether the bear has the settings
that were saved (its reported config answers the desired version, nothing refused)."""

from __future__ import annotations

from typing import Any

from sync.cloud.portal.words import config_error


def config_state(conn: Any, device_id: str) -> dict[str, Any]:
    """``{"state": "none"|"waiting"|"applied"|"refused", "words": ...}`` for the bear's
    desired config, from what the bear last reported (``up/config``, retained)."""
    row = conn.execute("SELECT version, reported FROM device_config WHERE device_id = %s",
                       (device_id,)).fetchone()
    if row is None:
        return {"state": "none", "words": ""}
    version, reported = row[0], row[1] or {}
    if not isinstance(reported, dict) or reported.get("version") != version:
        return {"state": "waiting", "words": "Sending to the bear. It gets the settings "
                "when it is next online; reload this page to check."}
    rejected = reported.get("rejected") or {}
    if rejected:
        reasons = " ".join(config_error(f"{k} {v}") for k, v in sorted(rejected.items()))
        return {"state": "refused", "words": f"The bear did not take these settings. {reasons}"}
    return {"state": "applied", "words": "The bear has it."}
