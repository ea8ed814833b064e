"""``teddy safety check``: one JSON verdict per text, from arguments or stdin."""

from __future__ import annotations

import json

from support.processes import run_cli


def test_check_prints_one_verdict_per_argument(env: dict[str, str]) -> None:
    result = run_cli("teddy", "safety", "check", "hello teddy", "my dad hits me",
                     "my number is 07700 900123", env=env, check=False)
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["action"] for v in verdicts] == ["allow", "escalate", "redact"]
    assert verdicts[1]["categories"] == ["abuse"]
    assert verdicts[2]["redacted"] == "my number is [phone]"
    assert "900123" not in result.stdout + result.stderr
    assert result.returncode == 1  # not everything was allowed


def test_check_reads_stdin_and_judges_output(env: dict[str, str]) -> None:
    result = run_cli("teddy", "safety", "check", "--output", env=env,
                     stdin="What's your address?\nHere's a joke!\n\n", check=False)
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["action"] for v in verdicts] == ["block", "allow"]
    assert verdicts[0]["categories"] == ["asks_pii"]
    assert verdicts[0]["matches"][0]["category"] == "asks_pii"


def test_all_allowed_exits_zero(env: dict[str, str]) -> None:
    result = run_cli("teddy", "safety", "check", "tell me a story", env=env)
    assert json.loads(result.stdout)["action"] == "allow"
