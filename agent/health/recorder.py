"""Journals the alerts parts raise into ``health.db`` in a process without a health monitor.

``teddy run`` journals alerts through :class:`agent.health.HealthMonitor`; ``teddy chat``
runs the same pipeline without the monitor's sampling loop, and keeps the same record through
this: every alert a part raises (a wellbeing escalation, a disk-full store) is journaled as a
one-shot alert, unpublished, so the uplink of the running bear (or the next ``teddy run``)
sends it on ``up/alerts``. Details pass :func:`safe_details`: never a transcript.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from agent.alerts import Alert, AlertSink
from agent.health.journal import HealthJournal
from config.settings import Settings

logger = logging.getLogger(__name__)


class AlertRecorder:
    """Subscribes to an :class:`AlertSink` and journals raised part alerts. A context manager;
    :meth:`close` is idempotent (alerts raised after it are no longer journaled)."""

    def __init__(self, settings: Settings, alerts: AlertSink, device_id: str) -> None:
        self.device_id = device_id
        """This bear's id (the journal keeps alerts per device)."""
        self.journal = HealthJournal(settings.store.data_dir / settings.health.journal_name)
        """The bear's alert journal (``health.db``)."""
        self._closed = False
        alerts.subscribe(self._on_alert)

    def _on_alert(self, alert: Alert) -> None:
        if self._closed or alert.cleared or alert.rule is not None:
            return
        self.journal.record_raise(self.device_id, None, alert.kind, alert.severity.value,
                                  alert.message, alert.details, alert.raised_at, one_shot=True)
        logger.debug("journaled alert %s for the uplink", alert.kind)

    def close(self) -> None:
        """Stop journaling and close the journal (idempotent)."""
        if not self._closed:
            self._closed = True
            self.journal.close()

    def __enter__(self) -> AlertRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def recording_alerts(settings: Settings, alerts: AlertSink, consented: bool) -> Iterator[None]:
    """Journal part alerts while the block runs, when a parent consented (a store exists);
    like the appliance, a bear without consent writes nothing."""
    if not consented:
        yield
        return
    from agent.identity import device_id

    with AlertRecorder(settings, alerts, device_id(settings)):
        yield
