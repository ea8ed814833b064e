"""The appliance's one link: a paired bear syncs, takes signed commands and publishes its
alerts over the same connection, with its own login (agent/uplink.py)."""

from __future__ import annotations

import json
import threading
import time

from support.fleet import cloud_env, cloud_settings, pair_bear
from support.processes import run_cli
from support.waiting import wait_until

from agent.health import HealthMonitor
from agent.runtime import open_bear
from agent.uplink import Uplink
from sync.cloud.ingest import Ingestor


def test_paired_bear_syncs_takes_commands_and_publishes_alerts(bear, cloud, database, env,
                                                                secure_broker, tmp_path):
    with database.connect() as conn:
        pair_bear(bear, cloud, conn)
    ingestor = Ingestor(cloud_settings(secure_broker, database.dsn, tmp_path, "svc.ingest"))
    ingesting = threading.Thread(target=ingestor.run)
    ingesting.start()
    device = bear.device.id
    try:
        with open_bear(bear) as teddy, HealthMonitor(bear, teddy.alerts, device) as monitor:
            teddy.respond("hello teddy")
            uplink = Uplink(bear, teddy, monitor)
            assert uplink.start()
            try:
                teddy.alerts.raise_alert("audio.device_lost", "warning", "microphone vanished")
                out = run_cli("teddy-cloud", "fleet", "send", device, "ping", "--wait",
                              env=cloud_env(env, secure_broker, tmp_path))
                assert json.loads(out.stdout)["status"] == "done"
                with database.connect() as conn:
                    wait_until(lambda: conn.execute(
                        "SELECT count(*) FROM turns WHERE device_id = %s",
                        (device,)).fetchone()[0] == 2, 20, "both turns in PostgreSQL")
                    wait_until(lambda: conn.execute(
                        "SELECT count(*) FROM alerts WHERE device_id = %s AND kind = %s",
                        (device, "audio.device_lost")).fetchone()[0] == 1,
                        30, "the device_lost alert in PostgreSQL")
            finally:
                uplink.close()
                uplink.close()  # idempotent
    finally:
        ingestor.stop()
        ingesting.join(15)
        ingestor.close()


def test_a_wellbeing_alert_raised_while_ingest_is_down_arrives_exactly_once(
        bear, cloud, database, secure_broker, tmp_path):
    """The broker's PUBACK is not the cloud's commit: with no ingest subscribed the broker
    drops the alert, so the bear keeps it until ``down/receipt`` (issue 12, item 4)."""
    with database.connect() as conn:
        pair_bear(bear, cloud, conn)
    device = bear.device.id
    with open_bear(bear) as teddy, HealthMonitor(bear, teddy.alerts, device) as monitor:
        uplink = Uplink(bear, teddy, monitor)
        assert uplink.start()
        try:
            teddy.alerts.raise_alert("wellbeing.escalation", "high", "the child sounded sad",
                                     category="sadness")
            wait_until(lambda: uplink.connected, 20, "the uplink to connect")
            time.sleep(2 * 5.0)  # published (and PUBACKed) at least once; nobody stored it
            assert [a.raise_published for a in monitor.journal.recent(0)] == [False], \
                "the alert was marked published on the broker's PUBACK"
            ingestor = Ingestor(cloud_settings(secure_broker, database.dsn, tmp_path,
                                               "svc.ingest"))
            ingesting = threading.Thread(target=ingestor.run)
            ingesting.start()
            try:
                wait_until(lambda: all(a.raise_published for a in monitor.journal.recent(0)),
                           30, "the alert published")
                assert [a.raise_published for a in monitor.journal.recent(0)] == [True]
                time.sleep(1.0)
                with database.connect() as conn:
                    rows = conn.execute(
                        "SELECT count(*) FROM alerts WHERE device_id = %s AND kind = %s",
                        (device, "wellbeing.escalation")).fetchone()[0]
                assert rows == 1
            finally:
                ingestor.stop()
                ingesting.join(15)
                ingestor.close()
        finally:
            uplink.close()
