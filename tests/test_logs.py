"""Structured logs: JSON lines off a TTY, plain lines on one, never a transcript or a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.logs import GUARD, Sensitive, configure_logging, secrets_in
from config.settings import load_settings

TEDDY = str(Path(sys.executable).parent / "teddy")
CHILD_WORDS = "my grandma zebracorn lives on maple street"
PASSWORD = "hunter2-broker-pw"


@pytest.fixture
def capture():
    """configure_logging into a StringIO (not a TTY); restores the root logger after."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def lines_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_off_a_tty_every_record_is_one_json_object(capture: io.StringIO) -> None:
    configure_logging("DEBUG", stream=capture)
    log = logging.getLogger("teddy.test")
    log.info("turn %d kept in %.1f ms", 7, 3.25, extra={"conversation": "c-1"})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("it failed")
    entries = lines_of(capture)
    assert len(capture.getvalue().splitlines()) == 2
    assert entries[0]["msg"] == "turn 7 kept in 3.2 ms"
    assert entries[0]["level"] == "INFO" and entries[0]["logger"] == "teddy.test"
    assert entries[0]["conversation"] == "c-1" and entries[0]["ts"].endswith("+00:00")
    assert "ValueError: boom" in entries[1]["exc"]


def test_sensitive_values_show_only_at_debug(capture: io.StringIO) -> None:
    configure_logging("DEBUG", stream=capture)
    log = logging.getLogger("teddy.test")
    log.debug("heard %s", Sensitive(CHILD_WORDS))
    log.info("heard %s", Sensitive(CHILD_WORDS))
    log.warning("reply", extra={"reply": CHILD_WORDS, "turns": 3})
    debug, info, warning = lines_of(capture)
    assert debug["msg"] == f"heard {CHILD_WORDS}"
    assert info["msg"] == f"heard <redacted {len(CHILD_WORDS)} chars>"
    assert warning["reply"] == f"<redacted {len(CHILD_WORDS)} chars>" and warning["turns"] == 3
    assert "zebracorn" not in json.dumps([info, warning])


def test_secrets_from_settings_are_masked_at_every_level(capture: io.StringIO) -> None:
    settings = load_settings(mqtt={"password": PASSWORD},
                             cloud={"pg_dsn": "postgresql://ingest:pg-s3cret@db:5432/teddy"})
    assert {s.get_secret_value() for s in secrets_in(settings)} >= {PASSWORD}
    configure_logging("DEBUG", settings, stream=capture)
    log = logging.getLogger("teddy.test")
    log.debug("connecting with %s", PASSWORD)
    log.error("could not reach %s", "postgresql://ingest:pg-s3cret@db:5432/teddy")
    log.info("other url https://bob:letmein@example.invalid/x")
    text = capture.getvalue()
    assert PASSWORD not in text and "pg-s3cret" not in text and "letmein" not in text
    assert "postgresql://ingest:***@db:5432/teddy" in text
    assert "https://bob:***@example.invalid/x" in text


def test_short_secrets_are_not_registered() -> None:
    GUARD.add_secret(SecretStr("ab"))
    assert GUARD._scrub("a cab") == "a cab"


def test_a_bad_log_call_does_not_raise(capture: io.StringIO) -> None:
    handler = configure_logging("INFO", stream=capture)
    logging.getLogger().handlers[:] = [handler]  # pytest's own capture would raise first
    logging.getLogger("teddy.test").info("two %s %s", "only-one")
    assert "unformattable log call" in lines_of(capture)[0]["msg"]


def test_on_a_tty_lines_are_for_people(capture: io.StringIO) -> None:
    controller, terminal = os.openpty()
    with os.fdopen(terminal, "w") as tty:
        configure_logging("INFO", stream=tty)
        logging.getLogger("teddy.test").info("hello %s", "there")
        tty.flush()
        shown = os.read(controller, 4096).decode()
    os.close(controller)
    assert " INFO teddy.test: hello there" in shown and not shown.startswith("{")


def _chat(env: dict[str, str], level: str, stderr) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TEDDY, "--log-level", level, "chat"], input=f"{CHILD_WORDS}\nhello teddy\n",
        env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=60, check=True,
    )


def test_teddy_chat_logs_json_lines_without_the_childs_words_or_the_password(
    env: dict[str, str],
) -> None:
    env = dict(env, TEDDY_MQTT__PASSWORD=PASSWORD)
    subprocess.run([TEDDY, "consent", "grant", "--parent", "Sam"], env=env, check=True,
                   capture_output=True, timeout=60)
    result = _chat(env, "DEBUG", subprocess.PIPE)
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries, "teddy chat logged nothing at DEBUG"
    loud = [e for e in entries if e["level"] in ("INFO", "WARNING", "ERROR", "CRITICAL")]
    assert loud, "expected the INFO line that the bear is ready"
    assert all("zebracorn" not in json.dumps(e) and "maple" not in json.dumps(e) for e in loud)
    assert PASSWORD not in result.stderr


def test_teddy_chat_on_a_terminal_logs_plain_lines(env: dict[str, str]) -> None:
    controller, terminal = os.openpty()
    try:
        _chat(env, "INFO", terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    lines = [line for line in shown.decode().splitlines() if line.strip()]
    assert lines and all(not line.startswith("{") for line in lines)
    assert any(" INFO agent.runtime: bear ready" in line for line in lines)
