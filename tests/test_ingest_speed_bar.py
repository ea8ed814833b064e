"""Issue 23's ingest bar, as ``scripts/bench-sync`` measured it (speed is measured by the
benchmark, never by a timed test): this records the figure until a run meets the bar.

    nice scripts/bench-sync --skip-fleet --skip-edges

prints (c), end to end from full outboxes to committed, acked, sealed rows, beside the raw
limits (a) Mosquitto and (b) PostgreSQL COPY. The bar: >= 25,000 turns/s and >= 30% of the
slower raw limit, every turn sealed."""

from __future__ import annotations

import pytest

MEASURED = {"turns_per_s": 7_017, "copy_rows_per_s": 19_178, "mqtt_turns_per_s": 115_486,
            "sealed": 40_000, "stored": 40_000, "load": 12.8}
"""(c), (b), (a) of the last run (2 cores, load average 12.8: 8 engineers' jobs)."""


@pytest.mark.xfail(strict=True, reason=(
    "scripts/bench-sync --skip-fleet --skip-edges: (c) 7,017 turns/s end to end, 40,000 of "
    "40,000 rows sealed = 37% of the slower raw limit (COPY 19,178 rows/s; Mosquitto "
    "115,486 turns/s) at load 12.8 on 2 cores (7,459 turns/s = 22% of COPY 33,405 before "
    "the batch sealing); bar >= 25,000 turns/s"))
def test_ingest_end_to_end_meets_issue_23s_bar():
    slower = min(MEASURED["copy_rows_per_s"], MEASURED["mqtt_turns_per_s"])
    assert MEASURED["sealed"] == MEASURED["stored"]  # every turn sealed
    assert MEASURED["turns_per_s"] / slower >= 0.30
    assert MEASURED["turns_per_s"] >= 25_000
