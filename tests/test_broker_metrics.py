"""``teddy-cloud broker-metrics`` against real Mosquitto: a core from the shipped config
(dynamic security, the exporter's own ``monitor`` account) and an edge from the shipped
``edge-broker.conf`` bridged to it over mutual TLS.

The exporter reports the broker up with its ``$SYS`` figures, then down when the broker is
killed; each edge's bridge up and its connected bears, then the bridge down (its will) when
the edge is killed; and the expiry of the certificate the core's TLS listener serves and of a
certificate file, equal to what ``openssl`` reads from them."""

from __future__ import annotations

import re
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from support.brokers import free_port
from support.edges import CLOUD_PASSWORD, CLOUD_USER, make_edge_fleet
from support.processes import run_cli, start_cli, wait_for_log
from support.waiting import wait_until

from sync.cloud.broker_metrics import BrokerState, parse_figure, pem_expiry

MONITOR = "svc.monitor"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def value(text: str, series: str) -> float | None:
    """The value of ``series`` (name and labels exactly as exported) in a scrape."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def ready(text: str) -> str | None:
    """The scrape once the broker is up, counts us and the bridge (``$SYS`` is refreshed every
    10 s: the retained figure may predate us) and the edge's report arrived."""
    edge = value(text, 'teddy_edge_clients_connected{edge="teddy-edge-1"}')
    clients = value(text, "teddy_broker_clients_connected") or 0
    up = value(text, "teddy_broker_up") == 1
    return text if edge is not None and up and clients >= 2 else None


def test_figures_are_range_checked():
    assert parse_figure(b"3054 seconds") == 3054.0
    assert parse_figure(b"12") == 12.0
    for bad in (b"-1", b"nan", b"inf", b"many", b"\xff", b""):
        assert parse_figure(bad) is None, bad
    state = BrokerState()
    state.take("teddy/edges/edge-a/bridge", b"1")
    state.take("teddy/edges/edge-a/bridge", b"7")  # not 0 or 1: ignored, counted
    state.take("teddy/edges/edge a/bridge", b"0")  # not an edge name
    state.take("teddy/edges/edge-a/clients/connected", b"-3")
    state.take("$SYS/broker/clients/connected", b"4")
    sys_values, bridges, clients, bad, _ = state.snapshot()
    assert bridges == {"edge-a": 1.0} and clients == {} and bad == 3
    assert sys_values == {"$SYS/broker/clients/connected": 4.0}


@pytest.fixture
def fleet(tmp_path, env):
    """A core and one edge; the monitor account made as the runbook says
    (``teddy-cloud provision --service monitor``), its password from its fragment."""
    import tomllib

    edges = make_edge_fleet(tmp_path / "brokers", 1, {})
    edges.start()
    run_cli("teddy-cloud", "provision", "--service", "monitor", MONITOR, "--out",
            str(tmp_path / "secrets"), env=dict(
                env, TEDDY_MQTT__PORT=str(edges.core.port),
                TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(edges.core.admin_password_file)))
    fragment = tomllib.loads((tmp_path / "secrets" / f"{MONITOR}.toml").read_text())
    yield edges, fragment["mqtt"]["password"]
    edges.kill()


def test_the_exporter_reports_broker_bridges_and_certificates_and_their_loss(
        fleet, env, tmp_path):
    edges, password = fleet
    core, (edge,) = edges.core, edges.edges
    port = free_port()
    log = tmp_path / "monitor.log"
    process = start_cli(
        "teddy-cloud", "--log-level", "INFO", "broker-metrics", "--port", str(port),
        "--tls-endpoint", f"127.0.0.1:{core.tls_port}",
        "--cert-file", str(core.certs / "edge-1.pem"), log=log,
        env=dict(env, TEDDY_MQTT__PORT=str(core.port), TEDDY_MQTT__USERNAME=MONITOR,
                 TEDDY_MQTT__PASSWORD=password))
    try:
        wait_for_log(log, "broker metrics on")
        text = wait_until(lambda: ready(scrape(port)), 30, lambda: log.read_text())
        assert value(text, 'teddy_edge_bridge_up{edge="teddy-edge-1"}') == 1.0
        assert value(text, "teddy_broker_messages_received_total") > 0
        assert value(text, "teddy_broker_uptime_seconds") >= 0
        served = value(text, f'teddy_cert_expiry_timestamp_seconds{{source="127.0.0.1:'
                             f'{core.tls_port}"}}')
        assert served == pem_expiry((core.certs / "core.pem").read_text())
        on_file = value(text, f'teddy_cert_expiry_timestamp_seconds{{source="'
                              f'{core.certs / "edge-1.pem"}"}}')
        enddate = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in",
                                  str(core.certs / "edge-1.pem")], capture_output=True,
                                 text=True, check=True).stdout
        assert on_file == ssl.cert_time_to_seconds(enddate.strip().split("=", 1)[1])

        edge.kill()  # the core publishes the bridge's will
        wait_until(lambda: value(scrape(port),
                                 'teddy_edge_bridge_up{edge="teddy-edge-1"}') == 0.0, 90,
                   "the bridge's will (0) on teddy/edges/teddy-edge-1/bridge")
        core.kill()
        wait_until(lambda: value(scrape(port), "teddy_broker_up") == 0.0, 30,
                   "teddy_broker_up 0 after the broker was killed")
        down = scrape(port)
        assert value(down, "teddy_broker_clients_connected") is None  # no stale figure
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    assert process.returncode == 0, log.read_text()


def test_only_an_edge_may_report(fleet):
    """The cloud's account cannot forge an edge's report, and the monitor account cannot
    publish at all: what the exporter shows came from the edge's own bridge."""
    edges, password = fleet
    core = edges.core
    for username, secret in ((CLOUD_USER, CLOUD_PASSWORD), (MONITOR, password)):
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             protocol=mqtt.MQTTv5, client_id=f"forge-{secrets.token_hex(3)}")
        client.username_pw_set(username, secret)
        client.connect("127.0.0.1", core.port)
        client.loop_start()
        try:
            info = client.publish("teddy/edges/teddy-edge-1/bridge", b"0", qos=1, retain=True)
            info.wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()
    watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                          protocol=mqtt.MQTTv5, client_id=f"watch-{secrets.token_hex(3)}")
    watcher.username_pw_set(MONITOR, password)
    seen: list[bytes] = []
    watcher.on_message = lambda c, u, m: seen.append(m.payload)
    watcher.connect("127.0.0.1", core.port)
    watcher.subscribe("teddy/edges/teddy-edge-1/bridge", qos=1)
    watcher.loop_start()
    try:
        wait_until(lambda: seen, 20, "the retained bridge state")
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    assert seen[-1] == b"1"  # the forged 0s were refused: the edge's own 1 stands


@pytest.mark.parametrize(("args", "names"), [
    (["--tls-endpoint", "mqtt.example.com"], "--tls-endpoint"),
    (["--tls-endpoint", "mqtt.example.com:99999"], "--tls-endpoint"),
    (["--port", "70000"], "--port"),
])
def test_bad_arguments_are_one_line_naming_the_fix(env, args, names):
    result = run_cli("teddy-cloud", "broker-metrics", *args, env=env, check=False, timeout=30)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert names in lines[-1] and "—" in lines[-1], lines


def test_a_taken_port_is_one_line_naming_the_setting(env, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("teddy-cloud", "broker-metrics", "--port", str(port), env=env,
                         check=False, timeout=30)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "already in use" in lines[-1] and "--port" in lines[-1], lines


def test_an_edge_that_went_silent_counts_as_down_though_its_last_word_was_up(env, tmp_path):
    """A retained ``1`` can outlive its edge (say, the core restarted while the edge was
    gone): the live edge, whose bridge forwards its uptime every ``sys_interval``, stays up;
    one that said ``1`` and nothing since is down after ``--edge-stale-s``."""
    edges = make_edge_fleet(tmp_path / "brokers", 1, {})
    (edge,) = edges.edges
    edge.config.write_text(edge.config.read_text() + "sys_interval 1\n")
    edges.start()
    try:
        password = secrets.token_urlsafe(12)
        with edges.core.auth_of_core() as auth:
            auth.set_service(MONITOR, "monitor", password)
        certs = edges.core.certs
        ghost = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                            protocol=mqtt.MQTTv5, client_id="teddy-edge-ghost")
        ghost.tls_set(ca_certs=str(certs / "ca.pem"), certfile=str(certs / "edge-1.pem"),
                      keyfile=str(certs / "edge-1.key"))
        ghost.connect("127.0.0.1", edges.core.tls_port)
        ghost.loop_start()
        ghost.publish("teddy/edges/ghost/bridge", b"1", qos=1, retain=True).wait_for_publish(10)
        ghost.disconnect()  # cleanly: no will; the retained 1 stays
        ghost.loop_stop()
        port = free_port()
        log = tmp_path / "monitor.log"
        process = start_cli(
            "teddy-cloud", "--log-level", "INFO", "broker-metrics", "--port", str(port),
            "--edge-stale-s", "3", log=log,
            env=dict(env, TEDDY_MQTT__PORT=str(edges.core.port), TEDDY_MQTT__USERNAME=MONITOR,
                     TEDDY_MQTT__PASSWORD=password))
        try:
            wait_for_log(log, "broker metrics on")
            wait_until(lambda: value(scrape(port), 'teddy_edge_bridge_up{edge="ghost"}') == 1.0,
                       20, "the ghost's retained 1")
            wait_until(lambda: value(scrape(port), 'teddy_edge_bridge_up{edge="ghost"}') == 0.0,
                       20, "the silent ghost counted down")
            time.sleep(3)
            text = scrape(port)
            assert value(text, 'teddy_edge_bridge_up{edge="teddy-edge-1"}') == 1.0, text
            assert value(text, 'teddy_edge_bridge_up{edge="ghost"}') == 0.0
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
    finally:
        edges.kill()
