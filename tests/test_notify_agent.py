"""``teddy run`` under a fake systemd: READY, WATCHDOG pings, SIGHUP, SIGTERM during a turn.

The bear is the real appliance as a subprocess: the real Vosk engine with the small Korean
model, the WAV microphone twin fed with speech espeak-ng made at test time, gpiozero's
MockFactory, a real Mosquitto. Only systemd is played by the test: a unix datagram socket
it binds and names in ``NOTIFY_SOCKET``, exactly what systemd hands a ``Type=notify`` unit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.audio import KO_PHRASES, korean_model, speech_pcm
from support.fake_systemd import FakeSystemd
from support.waiting import wait_until

TEDDY = str(Path(sys.executable).parent / "teddy")
WATCHDOG_SEC = 2.0
STARTUP_S = 90  # loading the Vosk model on two busy cores


@pytest.fixture
def systemd(tmp_path: Path):
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


def appliance_env(env: dict[str, str], systemd: FakeSystemd) -> dict[str, str]:
    return dict(env, NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC=str(int(WATCHDOG_SEC * 1e6)),
                TEDDY_AUDIO__BACKEND="wav", TEDDY_PINS__FACTORY="mock",
                TEDDY_VOICE__MODEL_PATH=str(korean_model()), TEDDY_VOICE__TTS_VOICE="ko")


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([TEDDY, "--log-level", "INFO", *args, "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def stop(process: subprocess.Popen) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the bear took to exit, seconds."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return code, time.monotonic() - sent


def test_ready_then_watchdog_pings_then_a_clean_stop(
    env: dict[str, str], systemd: FakeSystemd, tmp_path: Path
) -> None:
    process = start(appliance_env(env, systemd), tmp_path / "bear.log")
    try:
        ready = systemd.wait_for("READY=1", STARTUP_S)
        time.sleep(3 * WATCHDOG_SEC)
    finally:
        code, took = stop(process)
    pings = [t for t in systemd.times_of("WATCHDOG=1") if t >= ready]
    window = [t for t in pings if t <= ready + 3 * WATCHDOG_SEC]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    print(f"READY; {len(window)} pings in {3 * WATCHDOG_SEC:.0f} s (WatchdogSec={WATCHDOG_SEC}); "
          f"largest gap {max(gaps):.2f} s; exit {code} {took:.2f} s after SIGTERM")
    assert len(window) >= 6  # at least twice per WatchdogSec
    assert max(gaps) < WATCHDOG_SEC
    assert systemd.times_of("STOPPING=1"), systemd.messages
    assert code == 0 and took < 5


def test_sighup_reloads_live_config_and_names_what_needs_a_restart(
    env: dict[str, str], systemd: FakeSystemd, tmp_path: Path
) -> None:
    config = tmp_path / "teddy.toml"
    config.write_text('[logging]\nlevel = "INFO"\n')
    log = tmp_path / "bear.log"
    process = start(appliance_env(env, systemd), log, "--config", str(config))
    try:
        systemd.wait_for("READY=1", STARTUP_S)
        config.write_text('[logging]\nlevel = "DEBUG"\n\n[dialogue]\nage_band = "3-5"\n')
        process.send_signal(signal.SIGHUP)
        systemd.wait_for("RELOADING=1", 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(systemd.times_of("READY=1")) < 2:
            time.sleep(0.05)
        statuses = [m for _, m in systemd.messages if "config reloaded" in m]
        assert statuses and "restart to apply: dialogue" in statuses[-1], systemd.messages
        config.write_text("[logging\n")  # broken: the running config must stay
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(systemd.times_of("READY=1")) < 3:
            time.sleep(0.05)
        assert any("config reload failed" in m for _, m in systemd.messages)
    finally:
        code, _ = stop(process)
    assert code == 0
    levels = [json.loads(line)["level"] for line in log.read_text().splitlines()
              if line.startswith("{")]
    assert "DEBUG" in levels  # the new log level took effect without a restart


def synthesized_conversation(tmp_path: Path) -> Path:
    """Silence, the wake phrase, a pause, one sentence, silence: a WAV in the tmp dir."""
    from hardware.wav import wav_bytes

    rate = 16000
    pause = bytes(2 * int(rate * 1.5))
    pcm = (pause + speech_pcm(KO_PHRASES[0], tmp_path) + pause
           + speech_pcm(KO_PHRASES[1], tmp_path) + pause * 4)
    path = tmp_path / "child.wav"
    path.write_bytes(wav_bytes(pcm, rate))
    return path


def wait_for_line(log: Path, text: str, timeout: float) -> float:
    """When ``text`` showed up in ``log`` (``time.monotonic()``)."""
    wait_until(lambda: log.exists() and text in log.read_text(), timeout,
               lambda: f"{text!r} in {log}:\n{log.read_text()[-2000:]}")
    return time.monotonic()


def retained_status(port: int, device: str) -> dict:
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, message: got.append(message.payload)
    client.connect("127.0.0.1", port)
    client.subscribe(f"teddy/v1/{device}/up/status", qos=1)
    client.loop_start()
    try:
        wait_until(lambda: got, 5, "the retained status", interval=0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    return json.loads(got[-1])


@pytest.mark.parametrize("into_utterance_s", [0.3, 3.0])
def test_sigterm_during_a_turn_keeps_it_whole_publishes_offline_and_exits_0_within_5s(
    env: dict[str, str], systemd: FakeSystemd, tmp_path: Path, broker, into_utterance_s: float
) -> None:
    grant = subprocess.run([TEDDY, "consent", "grant", "--parent", "Sam", "--scopes", "keep,sync"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert grant.returncode == 0, grant.stderr
    device = (Path(env["TEDDY_STORE__DATA_DIR"]) / "device_id").read_text().strip()
    bear_env = appliance_env(env, systemd)
    bear_env.update(TEDDY_VOICE__LISTEN_MODE="wake_phrase", TEDDY_VOICE__WAKE_PHRASE=KO_PHRASES[0],
                    TEDDY_VOICE__GRAMMAR=json.dumps(KO_PHRASES), TEDDY_VOICE__MIN_CONFIDENCE="0",
                    TEDDY_AUDIO__WAV_INPUT=str(synthesized_conversation(tmp_path)))
    log = tmp_path / "bear.log"
    process = start(bear_env, log)
    try:
        systemd.wait_for("READY=1", STARTUP_S)
        assert retained_status(broker.port, device)["state"] == "online"
        woke = wait_for_line(log, "wake phrase heard", 30)
        time.sleep(max(0.0, 1.5 - 0.6 + into_utterance_s - (time.monotonic() - woke)))
    finally:
        code, took = stop(process)
    print(f"SIGTERM {into_utterance_s} s into the utterance: exit {code} after {took:.2f} s")
    assert code == 0 and took < 5, log.read_text()[-3000:]
    assert retained_status(broker.port, device)["state"] == "offline"
    stats = json.loads(subprocess.run([TEDDY, "store", "stats"], env=env, capture_output=True,
                                      text=True, timeout=60, check=True).stdout)
    print(f"kept after the stop: {stats}")
    assert stats["turns"] % 2 == 0  # the child's words and the bear's answer, or neither
    verify = subprocess.run([TEDDY, "store", "verify"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert stats["unsynced"] <= stats["turns"]  # what was kept is queued (or already synced)
    if into_utterance_s >= 3.0:
        assert stats["turns"] == 2, log.read_text()[-3000:]  # a finished turn, kept whole
    assert os.path.getsize(log) > 0
