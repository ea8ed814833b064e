"""The bear <-> cloud contract: topics and messages refuse what they should."""

from __future__ import annotations

import json

import pytest

from config.errors import ProtocolError
from sync.protocol import (
    Ack,
    TurnsBatch,
    parse_device_topic,
    shared_subscription,
    to_ranges,
    up_topic,
)


def _turn(seq: int) -> dict:
    return {"seq": seq, "conversation_id": "c1", "role": "child", "text": "hi",
            "created_at": 1.0, "action": "allow", "categories": []}


def test_round_trip():
    batch = TurnsBatch(device_id="bear-1", batch_id="b1", turns=[_turn(1), _turn(2)])
    assert TurnsBatch.from_payload(batch.to_payload()) == batch


@pytest.mark.parametrize("payload, fragment", [
    (b"{nope", "not JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"v": 2, "device_id": "bear-1", "batch_id": "b", "turns": []}', "field v"),
    (b'{"v": 1, "device_id": "bear-1", "batch_id": "b", "turns": [], "x": 1}', "field"),
    (b"x" * (300 * 1024), "over the"),
])
def test_bad_payloads_raise_one_line(payload, fragment):
    with pytest.raises(ProtocolError) as caught:
        TurnsBatch.from_payload(payload)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_repeated_seq_is_refused():
    payload = json.dumps({"v": 1, "device_id": "bear-1", "batch_id": "b",
                          "turns": [_turn(1), _turn(1)]}).encode()
    with pytest.raises(ProtocolError, match="repeat a seq"):
        TurnsBatch.from_payload(payload)


def test_topics():
    assert up_topic("bear-1", "turns") == "teddy/v1/bear-1/up/turns"
    assert parse_device_topic("teddy/v1/bear-1/down/ack").direction == "down"
    assert shared_subscription("ingest", "turns") == "$share/ingest/teddy/v1/+/up/turns"
    for bad in ("teddy/v1/+/up/turns", "teddy/v1/bear-1/sideways/x", "other/v1/bear-1/up/turns"):
        with pytest.raises(ProtocolError):
            parse_device_topic(bad)
    with pytest.raises(ProtocolError):
        up_topic("Bear#1", "turns")


def test_ranges():
    assert to_ranges([3, 1, 2, 7, 9, 8]) == [(1, 3), (7, 9)]
    with pytest.raises(ProtocolError):
        Ack.from_payload(b'{"v": 1, "batch_id": "b", "ranges": [[5, 2]]}')
