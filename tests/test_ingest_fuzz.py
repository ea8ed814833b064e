"""Fuzz: 10,000 random and mutated payloads on every ``up/`` topic (and the claim topic)
against the real ``teddy-cloud ingest``, Mosquitto and PostgreSQL (issue 12). Afterwards
ingest is alive, every valid message among them is stored, and the dead letters are within
their caps. The generator is seeded: a failure reproduces with the same seed."""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import time
import uuid

import paho.mqtt.client as mqtt
from support.syncing import IngestProcess
from support.waiting import wait_until

from config.errors import ProtocolError
from sync.protocol import (
    AlertMessage,
    ClaimRequest,
    CommandResult,
    ConfigReported,
    HealthSample,
    Status,
    TurnRecord,
    TurnsBatch,
    up_topic,
)

SEED = int(os.environ.get("TEDDY_FUZZ_SEED", "20261203"))
PAYLOADS = 10_000
VALID_SHARE = 0.25
PER_DEVICE_CAP, TOTAL_CAP = 300, 1_200
GOOD = [f"bear-fz-{i}" for i in range(4)]  # valid messages only: exact expectations
MUTANTS = [f"bear-fzm-{i}" for i in range(4)]  # mutated messages only
KINDS = ["turns", "status", "health", "alerts", "cmd-result", "config", "claim"]
EVIL = [None, True, False, -1, 0, 2**53, 2**64, -(2**70), 1e12, -1e12, 1e308, 32503680000.0,
        float("nan"), float("inf"), float("-inf"), "", "x" * 5000, "\u0000", "\u202e", [],
        {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, "2026-01-01", "teddy/v1/+/up/#"]


class Generator:
    """Valid messages of every kind (unique ids, plausible times) and mutations of them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = time.time()
        self.seq: dict[str, int] = {}
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def valid(self, kind: str, device: str) -> dict:
        rng, n, at = self.rng, self._next(), self.now - self.rng.uniform(0, 86400 * 30)
        if kind == "turns":
            turns = []
            for _ in range(rng.randint(1, 8)):
                seq = self.seq[device] = self.seq.get(device, 0) + 1
                turns.append(TurnRecord(seq=seq, conversation_id=f"c{n}", role=rng.choice(
                    ["child", "bear"]), text=rng.choice(["hi", "a story please", "ok " * 40]),
                    created_at=at, action="allow", categories=rng.choice([[], ["pii"]])))
            message = TurnsBatch(device_id=device, batch_id=f"b{n}", turns=turns)
        elif kind == "status":
            message = Status(state=rng.choice(["online", "offline"]), firmware="1.0",
                             boot_time=at)
        elif kind == "health":
            message = HealthSample(device_id=device, sampled_at=round(self.now) - n * 0.01,
                                   metrics={"cpu_percent": rng.uniform(0, 100), "temp_c": None},
                                   open_alerts=["x"])
        elif kind == "alerts":
            message = AlertMessage(device_id=device, alert_id=f"a{n}", state="raised",
                                   kind=rng.choice(["wellbeing.escalation", "audio.lost"]),
                                   severity="high", message="m", details={"n": n},
                                   raised_at=at)
        elif kind == "cmd-result":
            message = CommandResult(id=f"fz-{n:08d}", device_id=device, name="ping",
                                    status="done", data={"pong": True}, finished_at=at)
        elif kind == "config":
            message = ConfigReported(device_id=device, version=n, applied={"a.b": 1},
                                     reported_at=at)
        else:
            claim_id = "c" + uuid.UUID(int=rng.getrandbits(128)).hex[:24]
            message = ClaimRequest(claim_id=claim_id, ephemeral_key="A" * 43 + "=",
                                   sealed=base64.b64encode(rng.randbytes(96)).decode())
        return message.model_dump(mode="json")

    def mutate(self, data: dict) -> bytes:
        rng = self.rng
        how = rng.randrange(11)
        data = copy.deepcopy(data)
        if how == 0:
            return rng.randbytes(rng.randint(0, 300))
        raw = json.dumps(data).encode()
        if how == 1:
            return raw[:rng.randint(0, len(raw))]
        if how == 2:
            blob = bytearray(raw)
            for _ in range(rng.randint(1, 5)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            return bytes(blob)
        if how == 3:
            depth = rng.choice([17, 100, 5_000, 5_000, 5_000, 60_000])
            return b'{"v": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
        if how == 4:
            size = rng.choice([9_000, 9_000, 9_000, 20_000, 70_000, 300_000])
            return b'{"v": 1, "pad": "' + b"y" * size + b'"}'
        if how in (5, 6, 7):
            self._poke(data, rng.choice(EVIL))
        elif how == 8:
            data.pop(rng.choice(list(data)), None)
        elif how == 9:
            data[rng.choice(["extra", "v", "device_id"])] = rng.choice(EVIL + ["bear-other"])
        else:
            data = {"wrapped": data} if rng.random() < 0.5 else [data]
        return json.dumps(data, allow_nan=True).encode()

    def _poke(self, node, value) -> None:
        """Replace one random leaf (at any depth) with ``value``."""
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                return
            key = self.rng.choice(keys)
            if isinstance(node[key], dict | list) and node[key] and self.rng.random() < 0.7:
                node = node[key]
                continue
            node[key] = value
            return


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_fuzzed_payloads_never_stop_ingest(broker, database, env, tmp_path):
    rng = random.Random(SEED)
    gen = Generator(rng)
    ingest = IngestProcess(env, tmp_path, name="ingest-fuzz",
                           dead_letters_per_device=PER_DEVICE_CAP, dead_letters_total=TOTAL_CAP,
                           dead_letters_per_device_per_s=10_000)
    with database.connect() as conn:  # the caps count every dead letter of the database
        conn.execute("DELETE FROM dead_letters")
    ingest.start()
    expected: dict[str, dict[str, set]] = {d: {k: set() for k in KINDS} for d in GOOD}
    client = _publisher(broker.port)
    started = time.monotonic()
    try:
        infos = []
        for _ in range(PAYLOADS):
            kind = rng.choice(KINDS)
            if rng.random() < VALID_SHARE:
                device = rng.choice(GOOD)
                data = gen.valid(kind, device)
                payload = json.dumps(data).encode()
                _remember(expected[device][kind], kind, data)
            else:
                device = rng.choice(MUTANTS + ["BAD/ID", "x"])
                data = gen.valid(kind, rng.choice(MUTANTS))
                payload = gen.mutate(data)
                if kind == "claim":
                    _parse_claim(payload)
            if kind == "claim":
                topic = up_topic(device if device in GOOD + MUTANTS else GOOD[0], "claim")
            elif device in GOOD + MUTANTS:
                topic = up_topic(device, kind)
            else:  # a topic that names no valid device
                topic = f"teddy/v1/{device}/up/{kind}"
            infos.append(client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        for kind in ("turns", "health", "alerts", "cmd-result", "config"):
            assert sum(len(expected[d][kind]) for d in GOOD) >= 100, kind  # a real sample
        published = time.monotonic() - started
        sentinel = TurnsBatch(device_id="bear-fz-end", batch_id="end", turns=[TurnRecord(
            seq=1, conversation_id="c", role="child", text="end", created_at=gen.now,
            action="allow")])
        client.publish(up_topic("bear-fz-end", "turns"), sentinel.to_payload(),
                       qos=1).wait_for_publish(10)
        with database.connect() as conn:
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM turns WHERE device_id = 'bear-fz-end'").fetchone()[0],
                90, "ingest to get through the fuzz")
            # ingest takes bears in turn and alerts on their own lane, so the sentinel can land
            # before other bears' backlogs: wait for every expected row, then check exactly
            wait_until(lambda: _stored(conn, expected), 90, "every valid message stored")
            took = time.monotonic() - started
            _check_stored(conn, expected)
            per_device = conn.execute("SELECT device_id, count(*) FROM dead_letters"
                                      " GROUP BY device_id").fetchall()
            total = sum(n for _, n in per_device)
            biggest = conn.execute("SELECT max(length(payload)) FROM dead_letters").fetchone()[0]
        assert ingest.process.poll() is None, "ingest died during the fuzz"
        assert 0 < total <= TOTAL_CAP and all(n <= PER_DEVICE_CAP for _, n in per_device)
        assert biggest <= 4096
        print(f"fuzz seed {SEED}: published in {published:.1f} s, ingested in {took:.1f} s, "
              f"{total} dead letters kept")
    finally:
        client.disconnect()
        client.loop_stop()
        assert ingest.stop() == 0
    log = ingest.log.read_text()
    assert "Traceback" not in log and "unhandled" not in log


def _remember(into: set, kind: str, data: dict) -> None:
    if kind == "turns":
        into.update(t["seq"] for t in data["turns"])
    elif kind == "health":
        into.add(round(data["sampled_at"], 2))
    elif kind == "alerts":
        into.add(data["alert_id"])
    elif kind == "cmd-result":
        into.add(data["id"])
    elif kind == "config":
        into.add(data["version"])


def _parse_claim(payload: bytes) -> None:
    """The claim model refuses a mutated request with ProtocolError, never anything else."""
    try:
        ClaimRequest.from_payload(payload)
    except ProtocolError:
        pass


def _stored(conn, expected: dict[str, dict[str, set]]) -> bool:
    try:
        _check_stored(conn, expected)
    except AssertionError:
        return False
    return True


def _check_stored(conn, expected: dict[str, dict[str, set]]) -> None:
    for device, kinds in expected.items():
        seqs = {r[0] for r in conn.execute("SELECT seq FROM turns WHERE device_id = %s",
                                           (device,))}
        assert seqs == kinds["turns"], f"{device}: turns missing {kinds['turns'] - seqs}"
        alerts = {r[0] for r in conn.execute(
            "SELECT device_alert_id FROM alerts WHERE device_id = %s", (device,))}
        assert alerts == kinds["alerts"]
        samples = {round(r[0], 2) for r in conn.execute(
            "SELECT extract(epoch FROM sampled_at)::float8 FROM health_samples"
            " WHERE device_id = %s", (device,))}
        assert samples == kinds["health"]
        results = {r[0] for r in conn.execute(
            "SELECT command_id FROM command_events WHERE device_id = %s", (device,))}
        assert results == kinds["cmd-result"]
        if kinds["config"]:
            reported = conn.execute("SELECT reported FROM device_config WHERE device_id = %s",
                                    (device,)).fetchone()
            assert reported is not None and reported[0]["version"] in kinds["config"]
