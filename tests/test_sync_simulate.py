"""``teddy-sim`` (package ``fleetsim``): real sync clients with their own stores, idle bears
holding real connections on one network thread, and what arrived."""

from __future__ import annotations

from functools import partial

from edge_support import bear_password
from support import run_cli
from sync_helpers import IngestProcess

from config.settings import Settings
from fleetsim.fleet import run_spread_fleet


def test_simulate_reports_every_turn_arrived_once(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    env = dict(env, TEDDY_SYNC__BATCH_MAX_AGE="0.1")
    try:
        result = run_cli("teddy-sim", "fleet", "--devices", "6", "--turns", "15",
                         "--rate", "300", "--prefix", "simtest", "--workdir",
                         str(tmp_path / "fleet"), env=env, timeout=120)
    finally:
        ingest.stop()
    out = result.stdout
    assert "bears: 6 started, 6 connected at once" in out
    assert "turns: 90 appended, 90 acked, 0 unacked" in out
    assert "postgresql: 90 rows, 90 distinct (device_id, seq)" in out
    assert "p99" in out and "n/a" not in out
    with database.connect() as conn:
        devices = conn.execute("SELECT count(*) FROM devices WHERE device_id LIKE 'simtest-%'"
                               " AND firmware = 'simulated'").fetchone()[0]
    assert devices == 6


def test_simulate_takes_its_settings_from_a_config_file(broker, database, env, tmp_path):
    """``teddy-sim --config FILE``: the settings class made from a file reaches the worker
    processes (it could not be pickled once), and the bears use the file's broker port."""
    ingest = IngestProcess(env, tmp_path).start()
    config = tmp_path / "sim.toml"
    config.write_text(f"[mqtt]\nport = {broker.port}\n\n[sync]\nbatch_max_age = 0.1\n")
    env = {key: value for key, value in env.items() if key != "TEDDY_MQTT__PORT"}
    try:
        result = run_cli("teddy-sim", "--config", str(config), "fleet", "--devices", "3",
                         "--turns", "5", "--prefix", "simcfg", "--workdir",
                         str(tmp_path / "fleet"), env=env, timeout=120)
    finally:
        ingest.stop()
    assert "bears: 3 started, 3 connected at once" in result.stdout
    assert "postgresql: 15 rows, 15 distinct (device_id, seq)" in result.stdout


def test_idle_bears_hold_real_connections_and_get_their_probe_acked(broker, database, env,
                                                                    tmp_path):
    """Senders (real stores) and idle bears (one network thread per process) together: every
    idle bear connected, subscribed, and got the cloud's ack of its probe turn back."""
    ingest = IngestProcess(env, tmp_path).start()
    settings = Settings(mqtt={"port": broker.port}, sync={"batch_max_age": 0.05})
    try:
        result = run_spread_fleet([settings, settings], tmp_path / "bears", 250, 10, 120,
                                  "idle", password=partial(bear_password, "s3cret"), senders=4)
    finally:
        ingest.stop()
    report = result.report
    assert (report.devices, report.senders, report.max_connected) == (250, 4, 250)
    assert report.bears_acked == 250 and report.drops == 0
    assert (report.turns_appended, report.turns_acked, report.left_unacked) == (40, 40, 0)
    with database.connect() as conn:
        senders, probes = conn.execute(
            "SELECT count(*) FILTER (WHERE device_id < 'idle-00004'),"
            " count(*) FILTER (WHERE device_id >= 'idle-00004')"
            " FROM turns WHERE device_id LIKE 'idle-%'").fetchone()
    assert (senders, probes) == (40, 246)


def test_idle_bears_reconnect_after_their_broker_restarts(broker):
    """The one network thread notices every lost connection (counted once the window is
    marked) and brings each bear back with jittered retries."""
    import threading

    from support import until

    from fleetsim.idle import IdleFleet

    fleet = IdleFleet()
    fleet.add(Settings(mqtt={"port": broker.port}).mqtt,
              [f"idle-re-{n:03d}" for n in range(40)], partial(bear_password, "s3cret"))
    stop = threading.Event()
    network = threading.Thread(target=fleet.serve, args=(stop,), daemon=True)
    network.start()
    try:
        assert until(lambda: fleet.report().connected == 40, 30), fleet.report()
        fleet.mark()
        broker.kill()
        assert until(lambda: fleet.report().drops == 40, 30), fleet.report()
        broker.start()
        assert until(lambda: fleet.report().connected == 40, 30), fleet.report()
    finally:
        stop.set()
        network.join(30)
    assert not network.is_alive()
    assert fleet.report().drops == 40
