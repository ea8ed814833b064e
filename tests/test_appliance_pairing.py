"""The appliance's wiring of pairing: a paw hold pairs a bear that kept nothing, and the
running bear then keeps turns and syncs them as itself, without a restart."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fleet_support import INGEST_PASSWORD, RecordingLed, SpeakingFake
from pydantic import SecretStr
from support import until

from agent.lifecycle import Lifecycle
from agent.runtime import open_bear
from sync.cloud.ingest import Ingestor
from sync.cloud.pairing import approve
from sync.systemd_notify import SystemdNotifier

pytest_plugins = ["fleet_fixtures"]


class IdleLoop:
    """The voice loop's surface the lifecycle touches; this one never hears anything."""

    voice = None
    ears = None

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def request_stop(self) -> None:
        self.stopped.set()


@dataclass
class PawOnly:
    """An appliance reduced to what pairing needs: the LED, the voice, the paw's hooks."""

    led: RecordingLed = field(default_factory=RecordingLed)
    voice: SpeakingFake = field(default_factory=SpeakingFake)
    paw_listeners: list = field(default_factory=list)

    def hold_paw(self, seconds: float) -> None:
        for pressed, _ in self.paw_listeners:
            pressed()
        time.sleep(seconds)
        for _, released in self.paw_listeners:
            released()


def test_paw_hold_pairs_and_the_running_bear_syncs_as_itself(bear, cloud, database):
    appliance = PawOnly()
    ingestor = Ingestor(cloud.model_copy(update={"mqtt": cloud.mqtt.model_copy(update={
        "username": "svc.ingest", "password": SecretStr(INGEST_PASSWORD)})}))
    ingesting = threading.Thread(target=ingestor.run)
    ingesting.start()
    try:
        with open_bear(bear) as teddy:
            assert teddy.respond("hello teddy").stored is False  # unpaired: keeps nothing
            lifecycle = Lifecycle(bear, teddy, IdleLoop(), None, SystemdNotifier(None),
                                  appliance=appliance)
            lifecycle.start_uplink()
            lifecycle.start_pairing()
            try:
                appliance.hold_paw(0.5)
                appliance.voice.wait_for(1)
                with database.connect() as conn:
                    approve(cloud, conn, appliance.voice.code(), "sam@example.org",
                            ("keep", "sync"))
                assert until(lambda: teddy.store is not None), "the bear never rejoined"
                assert until(lambda: appliance.led.shown[-1:] == ["paired"])
                assert "pairing" in appliance.led.shown
                assert teddy.respond("tell me a joke").stored is True
                with database.connect() as conn:
                    assert until(lambda: conn.execute(
                        "SELECT count(*) FROM turns WHERE device_id = %s",
                        (bear.device.id,)).fetchone()[0] == 2)
            finally:
                lifecycle.stop_pairing()
                lifecycle.stop_uplink()
    finally:
        ingestor.stop()
        ingesting.join(15)
        ingestor.close()
