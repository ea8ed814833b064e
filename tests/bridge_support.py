"""Edge brokers bridged to a core, for tests/test_edge_bridge.py and scripts/bench-sync (f)."""

from __future__ import annotations

from pathlib import Path

from support import Mosquitto


def bridge_config(name: str, core_port: int) -> str:
    """The bridge part of config/examples/mosquitto-edge.conf, without TLS and accounts."""
    return (f"\nconnection {name}\naddress 127.0.0.1:{core_port}\n"
            f"bridge_protocol_version mqttv311\nclientid {name}\ncleansession false\n"
            "try_private true\nnotifications false\nrestart_timeout 1 2\n"
            "topic teddy/v1/+/up/# out 1\ntopic teddy/v1/+/down/# in 1\n")


def start_edges(workdir: Path, core_port: int, count: int, extra: str = "") -> list[Mosquitto]:
    """``count`` edge brokers on free ports, each bridged to the core, started."""
    edges = []
    for n in range(count):
        edge = Mosquitto(workdir / f"edge{n}",
                         extra_config=extra + bridge_config(f"edge-{n}", core_port))
        edge.start()
        edges.append(edge)
    return edges
