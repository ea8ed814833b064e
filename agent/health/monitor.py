"""The health monitor: samples, evaluates rules, journals and announces alerts.

Wiring (see README): build one :class:`HealthMonitor` with the bear's ``AlertSink``, call
:meth:`~HealthMonitor.start` (a background thread ticking every
``health.sample_interval_s``) and :meth:`~HealthMonitor.close` on the way out. Parts feed
:attr:`~HealthMonitor.signals`; the sync link takes :meth:`~HealthMonitor.pending_alerts`
and :meth:`~HealthMonitor.health_sample` to publish on ``up/alerts`` / ``up/health`` and
calls :meth:`~HealthMonitor.mark_published` once the cloud's ``down/receipt`` says the
alert is committed (never on the broker's PUBACK).

Alerts go to the journal, the log, and the sink's listeners (sync, LED). There is no path
from here to the speaker: a wellbeing escalation is never spoken to the child.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from agent.alerts import Alert, AlertSink, Severity
from agent.health.journal import HealthJournal, JournalAlert
from agent.health.rules import AlertEvent, RuleEngine, rules_from_settings
from agent.health.signals import Signals
from config.settings import Settings
from sync.protocol.health import (
    MAX_QUOTE_CHARS,
    AlertMessage,
    AlertSeverity,
    AlertState,
    HealthSample,
)

logger = logging.getLogger(__name__)

SEVERITY_ORDER = {s.value: i for i, s in enumerate(Severity)}
"""info < warning < high < critical."""

PRUNE_EVERY_S = 3600.0
"""Seconds between two prunings of old, published alerts from the journal."""

Sampler = Callable[[float], dict[str, float | None]]
"""``sampler(now)``: the system half of a sample taken at Unix time ``now`` (see
:class:`~agent.health.sampler.SystemSampler`)."""


Outgoing = AlertMessage | HealthSample
"""One message for the sync link to publish (its class declares topic, QoS and retain)."""


@dataclass(frozen=True)
class HealthSnapshot:
    """One evaluated sample."""

    sampled_at: float
    """Unix time, seconds."""
    metrics: dict[str, float | None]
    """Metric name -> value (None: unknown here)."""
    open_alerts: list[JournalAlert]
    """Rule alerts open after this sample."""


class HealthMonitor:
    """Ties the sampler, the signals, the rules and the journal together.

    A context manager; :meth:`close` is idempotent and records a clean exit (so only
    crashes count towards ``crash_loop``).
    """

    def __init__(self, settings: Settings, alerts: AlertSink, device_id: str,
                 sampler: Sampler | None = None, signals: Signals | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        """The settings it runs with (``health`` section)."""
        self.device_id = device_id
        """This bear's id (alerts are kept per rule and device)."""
        self.alerts = alerts
        """The bear's alert sink."""
        self.signals = signals or Signals(settings.health.event_window_s, clock)
        """The registry other parts feed."""
        self.engine = RuleEngine(rules_from_settings(settings.health))
        """The rules engine."""
        self.journal = HealthJournal(settings.store.data_dir / settings.health.journal_name)
        """The local alert journal."""
        self._sampler = sampler or _default_sampler(settings)
        self._clock = clock
        self._boot_id = self.journal.record_boot(clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: HealthSnapshot | None = None
        self._closed = False
        self._last_health_offered = float("-inf")
        self._last_prune = float("-inf")
        self._restore_open()
        alerts.subscribe(self._on_alert)

    def __enter__(self) -> HealthMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        """Tick every ``health.sample_interval_s`` in a daemon thread until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="health", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("health tick failed; trying again next interval")
            self._stop.wait(self.settings.health.sample_interval_s)

    def close(self) -> None:
        """Stop the loop, record a clean exit, close the journal (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.journal.record_clean_exit(self._boot_id, self._clock())
        self.journal.close()

    def tick(self, now: float | None = None,
             extra: dict[str, float | None] | None = None) -> list[AlertEvent]:
        """Sample once, evaluate every rule, journal and announce what changed.

        ``extra`` overrides metrics (tests and synthetic samples); returns the events.
        """
        now = self._clock() if now is None else now
        metrics = self.collect(now)
        metrics.update(extra or {})
        events = self.engine.evaluate(metrics, now, self.device_id)
        for event in events:
            self._apply(event)
        self.journal.save_sample(now, metrics)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            self.journal.prune(self.settings.health.journal_keep_days, now)
        self._last = HealthSnapshot(now, metrics, self.journal.open_alerts())
        return events

    def collect(self, now: float) -> dict[str, float | None]:
        """System readings, the agent's signals and the crash count, as one metrics dict."""
        metrics = dict(self._sampler(now))
        for name, value in self.signals.snapshot(now).items():
            if value is not None or name not in metrics:
                metrics[name] = value
        since = now - self.settings.health.crash_window_s
        metrics["crash_restarts"] = float(self.journal.unclean_restarts(since, self._boot_id))
        return metrics

    def _apply(self, event: AlertEvent) -> None:
        if event.action == "suppressed":
            self.journal.record_suppressed(event.device_id, event.rule)
            logger.info("alert %s suppressed (raised less than the window ago)", event.kind)
            return
        if event.action == "clear":
            self.journal.record_clear(event.device_id, event.rule, event.at)
            self.alerts.emit(Alert(event.kind, Severity.INFO, event.message, dict(event.details),
                                   event.at, rule=event.rule, cleared=True))
            return
        self.journal.record_raise(event.device_id, event.rule, event.kind, event.severity,
                                  event.message, event.details, event.at)
        self.alerts.emit(Alert(event.kind, Severity(event.severity), event.message,
                               dict(event.details), event.at, rule=event.rule))

    def _on_alert(self, alert: Alert) -> None:
        """Sink listener: journal and count alerts raised directly by parts."""
        if alert.rule is not None or self._closed:
            return
        self.signals.on_alert(alert)
        if alert.cleared:
            return
        self.journal.record_raise(self.device_id, None, alert.kind, alert.severity.value,
                                  alert.message, alert.details, alert.raised_at, one_shot=True)

    def _restore_open(self) -> None:
        """Alerts left open by the previous run are closed: the new run re-evaluates."""
        for stale in self.journal.open_alerts():
            if stale.rule is not None:
                self.journal.record_clear(stale.device_id, stale.rule, self._clock())

    # --- what others read ----------------------------------------------------------------

    def snapshot(self) -> HealthSnapshot | None:
        """The latest evaluated sample (None before the first tick)."""
        return self._last

    def open_alerts(self) -> list[JournalAlert]:
        """Rule alerts open now, from the journal."""
        return self.journal.open_alerts()

    def worst_open_severity(self) -> str | None:
        """The most urgent open alert's severity (for the LED); None when all is well."""
        open_now = self.journal.open_alerts()
        if not open_now:
            return None
        return max((a.severity for a in open_now), key=SEVERITY_ORDER.__getitem__)

    def pending_alerts(self, limit: int = 100) -> list[AlertMessage]:
        """``up/alerts`` messages not yet published (raises before clears), oldest first."""
        messages = []
        for row in self.journal.unpublished(limit):
            if not row.raise_published:
                messages.append(to_alert_message(row, "raised"))
            if row.cleared_at is not None and not row.one_shot and not row.clear_published:
                messages.append(to_alert_message(row, "cleared"))
        return messages

    def mark_published(self, message: AlertMessage) -> None:
        """The cloud committed ``message`` (its ``down/receipt``): it leaves the queue."""
        self.journal.mark_published(message.alert_id, message.state)

    def outgoing(self, now: float | None = None) -> list[Outgoing]:
        """What the sync link should publish now: every unpublished alert and, at most every
        ``health.publish_every_s``, the latest health sample.

        After the cloud's receipt for an alert call :meth:`mark_published` with it (see
        :class:`sync.receipts.PendingUplink`); of health samples only the newest is worth
        resending.
        """
        now = self._clock() if now is None else now
        items: list[Outgoing] = list(self.pending_alerts())
        sample = self.health_sample()
        due = now - self._last_health_offered >= self.settings.health.publish_every_s
        if sample is not None and due:
            self._last_health_offered = now
            items.append(sample)
        return items

    def health_sample(self) -> HealthSample | None:
        """The ``up/health`` message for the latest sample (None before the first tick)."""
        last = self._last
        if last is None:
            return None
        metrics = {name: value if value is None or math.isfinite(value) else None
                   for name, value in last.metrics.items()}  # the protocol refuses NaN/inf
        return HealthSample(device_id=self.device_id, sampled_at=last.sampled_at,
                            metrics=metrics, open_alerts=[a.kind for a in last.open_alerts])


def to_alert_message(row: JournalAlert, state: AlertState) -> AlertMessage:
    """The ``up/alerts`` message for a journal row's raise or clear."""
    details: dict[str, Any] = dict(row.details)
    if row.suppressed:
        details["suppressed"] = row.suppressed
    message = AlertMessage(
        device_id=row.device_id, alert_id=row.id, state=state, kind=row.kind,
        severity=cast(AlertSeverity, row.severity),  # the journal keeps a Severity's value
        message=row.message[:500], rule=row.rule, details=details,
        raised_at=row.raised_at, cleared_at=row.cleared_at if state == "cleared" else None,
    )
    return with_place(message)


def with_place(message: AlertMessage) -> AlertMessage:
    """``message`` with its wellbeing ``category`` and the kept line's place
    (``conversation_id``, ``turn_seq``) lifted from its details into the v2 fields; a
    detail that does not pass the protocol's checks is left out, never sent."""
    details = dict(message.details)
    turn = details.pop("turn", None)
    fields: dict[str, Any] = {"details": details}
    if message.kind.startswith("wellbeing.") and isinstance(details.get("category"), str):
        fields["category"] = details["category"]
    if isinstance(turn, dict):
        fields |= {"conversation_id": turn.get("conversation_id"), "turn_seq": turn.get("seq")}
    for dropped in ((), ("conversation_id", "turn_seq"), ("category",)):
        candidate = {k: v for k, v in fields.items() if k not in dropped}
        try:
            return AlertMessage.model_validate(message.model_dump() | candidate)
        except ValidationError:
            logger.warning("alert %s: a place or category detail failed the protocol's checks;"
                           " sent without it", message.alert_id)
    return message


def with_quote(message: AlertMessage, quote_of: Callable[[str, int], str | None]
               ) -> AlertMessage:
    """``message`` carrying the child's kept line it points at (``quote_of(conversation,
    seq)``, None: not to be sent), cut to the protocol's length, control characters made
    spaces; ``message`` unchanged when there is nothing to quote."""
    if message.conversation_id is None or message.turn_seq is None:
        return message
    text = quote_of(message.conversation_id, message.turn_seq)
    if not text or not text.strip():
        return message
    clean = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    try:
        return AlertMessage.model_validate(message.model_dump()
                                           | {"quote": clean.strip()[:MAX_QUOTE_CHARS]})
    except ValidationError:  # never a reason to hold the alert back
        logger.warning("alert %s: its quote failed the protocol's checks; sent without it",
                       message.alert_id)
        return message


def _default_sampler(settings: Settings) -> Sampler:
    from agent.health.sampler import SystemSampler

    store = settings.store
    return SystemSampler(store.data_dir, store.key_path, store.db_path,
                         store.retention_days).sample
