"""The bear's own health: psutil sampling, the agent's signals, alert rules, a local journal.

- :mod:`agent.health.sampler`: CPU, load, memory, swap, disk, temperature, throttling,
  process RSS and open files, uptime, clock sync, key-file mode, outbox depth/age;
- :mod:`agent.health.signals`: what the rest of the bear feeds (broker, audio, speech...);
- :mod:`agent.health.rules`: thresholds held for a duration, hysteresis, suppression per
  rule and device, correlation (one alert, not three);
- :mod:`agent.health.journal`: ``health.db``, alerts kept while offline;
- :mod:`agent.health.monitor`: ties them together and feeds the ``AlertSink``.
"""

from agent.health.journal import HealthJournal, JournalAlert, JournalError
from agent.health.monitor import HealthMonitor, HealthSnapshot, Outgoing, to_alert_message
from agent.health.rules import AlertEvent, Rule, RuleEngine, rules_from_settings
from agent.health.signals import SIGNALS, Signals, UnknownSignalError

__all__ = [
    "SIGNALS",
    "AlertEvent",
    "HealthJournal",
    "HealthMonitor",
    "HealthSnapshot",
    "JournalAlert",
    "JournalError",
    "Outgoing",
    "Rule",
    "RuleEngine",
    "Signals",
    "UnknownSignalError",
    "rules_from_settings",
    "to_alert_message",
]
