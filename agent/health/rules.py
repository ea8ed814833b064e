"""The alert rules engine: thresholds held for a duration, hysteresis, suppression, correlation.

Per rule and device the engine keeps a small state machine:

- *ok* -> *pending* when the metric breaches the threshold; back to *ok* when it stops;
- *pending* -> *open* after ``for_s`` seconds of breach: a ``raise`` event, unless
  - a rule in ``caused_by`` is breached for the same device (correlation: the broker being
    unreachable explains the growing backlog; the effect stays quiet and is named in the
    cause's ``explains``), or
  - the same rule was raised for the same device less than ``suppress_s`` ago (suppression:
    the alert is open but not announced; a ``suppressed`` event records it);
- *open* -> *ok* only when the metric passes the ``clear`` level (hysteresis): a ``clear``
  event if the raise was announced.

A missing metric (None) never fires or clears a rule; it only resets a pending breach.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from config.health import HealthSettings, RuleSettings

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

EventAction = Literal["raise", "clear", "suppressed"]


@dataclass(frozen=True)
class Rule:
    """One named rule, its settings resolved."""

    name: str
    """Config name, e.g. ``"cpu_high"``."""
    settings: RuleSettings
    """Thresholds, duration, severity, correlation."""
    suppress_s: float
    """Suppression window, seconds (the rule's own or ``health.suppress_s``)."""

    def breached(self, value: float) -> bool:
        """Whether ``value`` is on the wrong side of the threshold."""
        return _OPS[self.settings.op](value, self.settings.threshold)

    def cleared(self, value: float) -> bool:
        """Whether ``value`` is past the hysteresis clear level."""
        if self.settings.op in (">", ">="):
            return value < self.settings.clear
        return value > self.settings.clear

    def describe(self, value: float) -> str:
        """The rule's one-line message for ``value``."""
        template = self.settings.message or f"{self.settings.metric} is {{value}}"
        return template.format(value=value, threshold=self.settings.threshold)


def rules_from_settings(health: HealthSettings) -> list[Rule]:
    """The enabled rules of a config, causes before their effects."""
    resolved = health.effective_rules()
    rules = [
        Rule(name, rs, health.suppress_s if rs.suppress_s is None else rs.suppress_s)
        for name, rs in resolved.items() if rs.enabled
    ]
    return sorted(rules, key=lambda r: len(r.settings.caused_by))


@dataclass(frozen=True)
class AlertEvent:
    """Something the engine decided: raise, clear, or a suppressed raise."""

    action: EventAction
    """``raise``, ``clear`` or ``suppressed``."""
    rule: str
    """Rule name."""
    kind: str
    """Alert kind."""
    severity: str
    """Severity name."""
    message: str
    """One line for a person."""
    device_id: str
    """The device the rule fired for."""
    at: float
    """Unix time of the decision, seconds."""
    details: dict = field(default_factory=dict)
    """Value, threshold, and for a cause the effects it explains."""


@dataclass
class _State:
    pending_since: float | None = None
    open: bool = False
    announced: bool = False
    last_raised_at: float | None = None
    suppressed: int = 0
    explained_by: str | None = None


class RuleEngine:
    """Evaluates samples against rules; keeps per (device, rule) state. Not thread-safe:
    call from one thread (the health monitor's)."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        """Rules in evaluation order (causes first)."""
        self._by_name = {rule.name: rule for rule in self.rules}
        self._states: dict[tuple[str, str], _State] = {}

    def evaluate(self, metrics: Mapping[str, float | None], now: float,
                 device_id: str = "local") -> list[AlertEvent]:
        """Feed one sample taken at ``now``; returns the events it causes."""
        breached = self._breaches(metrics, device_id)
        events: list[AlertEvent] = []
        for rule in self.rules:
            value = metrics.get(rule.settings.metric)
            if value is None:
                self._state(device_id, rule.name).pending_since = None
                continue
            event = self._step(rule, float(value), now, device_id, breached)
            if event is not None:
                events.append(event)
        return events

    def open_alerts(self, device_id: str = "local") -> list[str]:
        """Names of rules open (announced or suppressed) for ``device_id``."""
        return [name for (dev, name), st in self._states.items() if dev == device_id and st.open]

    def explained(self, device_id: str = "local") -> dict[str, str]:
        """Rules held back by correlation right now: ``{effect: cause}``."""
        return {name: st.explained_by for (dev, name), st in self._states.items()
                if dev == device_id and st.explained_by is not None}

    def _state(self, device_id: str, name: str) -> _State:
        return self._states.setdefault((device_id, name), _State())

    def _breaches(self, metrics: Mapping[str, float | None], device_id: str) -> set[str]:
        """Rules whose condition holds now (open ones until they clear)."""
        found = set()
        for rule in self.rules:
            value = metrics.get(rule.settings.metric)
            state = self._state(device_id, rule.name)
            if value is None:
                if state.open:
                    found.add(rule.name)
                continue
            if rule.breached(float(value)) or (state.open and not rule.cleared(float(value))):
                found.add(rule.name)
        return found

    def _step(self, rule: Rule, value: float, now: float, device_id: str,
              breached: set[str]) -> AlertEvent | None:
        state = self._state(device_id, rule.name)
        if state.open:
            return self._step_open(rule, state, value, now, device_id)
        if not rule.breached(value):
            state.pending_since = None
            state.explained_by = None
            return None
        cause = next((c for c in rule.settings.caused_by if c in breached), None)
        state.explained_by = cause
        if cause is not None or state.pending_since is None:
            state.pending_since = now  # once a cause is gone, the breach must last again
        if cause is not None or now - state.pending_since < rule.settings.for_s:
            return None
        return self._open(rule, state, value, now, device_id, breached)

    def _open(self, rule: Rule, state: _State, value: float, now: float, device_id: str,
              breached: set[str]) -> AlertEvent:
        state.open = True
        details: dict[str, object] = {"value": value, "threshold": rule.settings.threshold}
        effects = self._effects_of(rule.name, breached)
        if effects:
            details["explains"] = effects
        if state.last_raised_at is not None and now - state.last_raised_at < rule.suppress_s:
            state.announced = False
            state.suppressed += 1
            details["suppressed"] = state.suppressed
            return self._event("suppressed", rule, value, now, device_id, details)
        state.announced = True
        state.last_raised_at = now
        return self._event("raise", rule, value, now, device_id, details)

    def _step_open(self, rule: Rule, state: _State, value: float, now: float,
                   device_id: str) -> AlertEvent | None:
        if rule.cleared(value):
            state.open = False
            state.pending_since = None
            if state.announced:
                state.announced = False
                return self._event("clear", rule, value, now, device_id, {"value": value})
            return None
        last = now if state.last_raised_at is None else state.last_raised_at
        if not state.announced and now - last >= rule.suppress_s:
            state.announced = True
            state.last_raised_at = now
            details = {"value": value, "threshold": rule.settings.threshold,
                       "suppressed": state.suppressed}
            return self._event("raise", rule, value, now, device_id, details)
        return None

    def _effects_of(self, cause: str, breached: set[str]) -> list[str]:
        return [r.settings.kind for r in self.rules
                if cause in r.settings.caused_by and r.name in breached]

    @staticmethod
    def _event(action: EventAction, rule: Rule, value: float, now: float, device_id: str,
               details: dict) -> AlertEvent:
        message = f"{rule.settings.kind} cleared" if action == "clear" else rule.describe(value)
        return AlertEvent(action, rule.name, rule.settings.kind, rule.settings.severity,
                          message, device_id, now, details)
