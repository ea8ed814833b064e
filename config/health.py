"""Settings section ``health``: how often the bear samples itself and when it raises alerts.

Every alert rule has built-in defaults (:data:`DEFAULT_RULES`); config overrides only what it
names, e.g. in TOML::

    [health.rules.cpu_high]
    threshold = 95
    for_s = 300

or ``TEDDY_HEALTH__RULES__CPU_HIGH__THRESHOLD=95``. An unknown rule name is an error that
lists the known ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.settings import Section

Op = Literal[">", ">=", "<", "<="]
SeverityName = Literal["info", "warning", "high", "critical"]


class RuleSettings(Section):
    """One alert rule: fires when ``metric op threshold`` holds for ``for_s`` seconds."""

    kind: str
    """Alert kind raised, e.g. ``"system.cpu_high"``; ``wellbeing.*`` goes to parents only."""
    metric: str
    """Name of the sampled metric the rule watches (see ``teddy health --json``)."""
    op: Op
    """Comparison that means trouble: ``>``/``>=`` (too high) or ``<``/``<=`` (too low)."""
    threshold: float
    """Value at which the rule starts to count as breached, in the metric's unit."""
    clear: float
    """Hysteresis: a raised alert clears only below (too-high rules) or above (too-low
    rules) this value, in the metric's unit."""
    for_s: float = Field(default=0.0, ge=0)
    """Seconds the breach must last before the alert is raised."""
    severity: SeverityName = "warning"
    """How urgent the alert is."""
    suppress_s: float | None = Field(default=None, ge=0)
    """Seconds after a raise during which the same rule on the same device is not raised
    again; None: ``health.suppress_s``."""
    caused_by: tuple[str, ...] = ()
    """Rules whose breach explains this one: while any of them is breached, this rule
    stays quiet (one alert, not three)."""
    enabled: bool = True
    """Whether the rule is evaluated at all."""
    message: str = ""
    """One line for a person; ``{value}`` and ``{threshold}`` are filled in."""

    @model_validator(mode="after")
    def _check_hysteresis(self) -> RuleSettings:
        upward = self.op in (">", ">=")
        if upward and self.clear > self.threshold:
            raise ValueError(
                f"rule {self.kind}: clear {self.clear} must be <= threshold {self.threshold} "
                "for a too-high rule"
            )
        if not upward and self.clear < self.threshold:
            raise ValueError(
                f"rule {self.kind}: clear {self.clear} must be >= threshold {self.threshold} "
                "for a too-low rule"
            )
        return self


class RuleOverride(Section):
    """What config may change about a built-in rule; None keeps the default."""

    enabled: bool | None = None
    """Turn the rule on or off."""
    threshold: float | None = None
    """New threshold, in the metric's unit."""
    clear: float | None = None
    """New hysteresis clear level, in the metric's unit."""
    for_s: float | None = Field(default=None, ge=0)
    """New duration, seconds."""
    suppress_s: float | None = Field(default=None, ge=0)
    """New suppression window, seconds."""
    severity: SeverityName | None = None
    """New severity."""


def _rule(kind: str, metric: str, op: Op, threshold: float, clear: float, for_s: float,
          severity: SeverityName, message: str, caused_by: tuple[str, ...] = ()) -> RuleSettings:
    return RuleSettings(kind=kind, metric=metric, op=op, threshold=threshold, clear=clear,
                        for_s=for_s, severity=severity, message=message, caused_by=caused_by)


DEFAULT_RULES: dict[str, RuleSettings] = {
    "cpu_high": _rule("system.cpu_high", "cpu_percent", ">", 90, 70, 120, "warning",
                      "CPU busy at {value:.0f}% (limit {threshold:.0f}%)"),
    "load_high": _rule("system.load_high", "load_per_cpu", ">", 2.0, 1.0, 300, "warning",
                       "load {value:.2f} per core (limit {threshold:.2f})"),
    "memory_high": _rule("system.memory_high", "memory_percent", ">", 90, 80, 60, "high",
                         "memory {value:.0f}% used (limit {threshold:.0f}%)"),
    "swap_high": _rule("system.swap_high", "swap_percent", ">", 50, 25, 300, "warning",
                       "swap {value:.0f}% used (limit {threshold:.0f}%)"),
    "disk_low": _rule("system.disk_low", "disk_free_mb", "<", 200, 300, 0, "critical",
                      "only {value:.0f} MB free on the data disk (need {threshold:.0f} MB)"),
    "temperature_high": _rule("system.temperature_high", "cpu_temp_c", ">", 75, 70, 60, "high",
                              "CPU at {value:.0f} °C (limit {threshold:.0f} °C)"),
    "throttled": _rule("system.throttled", "throttled", ">=", 1, 1, 0, "warning",
                       "the Pi is throttled or under-voltage (vcgencmd get_throttled)"),
    "clock_unsynchronised": _rule(
        "system.clock_unsynchronised", "clock_synchronised", "<=", 0, 0, 600, "warning",
        "the clock is not synchronised (NTP); timestamps may be wrong"),
    "process_memory_high": _rule("agent.rss_high", "rss_mb", ">", 300, 250, 300, "warning",
                                 "the bear's process uses {value:.0f} MB (limit {threshold:.0f})"),
    "open_files_high": _rule("agent.open_files_high", "open_files", ">", 256, 200, 60, "warning",
                             "the bear's process holds {value:.0f} open files"),
    "crash_loop": _rule("agent.crash_loop", "crash_restarts", ">=", 3, 1, 0, "critical",
                        "the bear restarted after {value:.0f} crashes in the last hour"),
    "broker_unreachable": _rule("sync.broker_unreachable", "broker_connected", "<=", 0, 0, 60,
                                "warning", "the MQTT broker has been unreachable"),
    "backlog_growing": _rule("sync.backlog", "outbox_depth", ">", 500, 200, 300, "warning",
                             "{value:.0f} turns wait to sync (limit {threshold:.0f})",
                             caused_by=("broker_unreachable",)),
    "unsynced_too_old": _rule("sync.unsynced_too_old", "oldest_unsynced_age_s", ">", 86400,
                              3600, 300, "high", "the oldest unsynced turn is {value:.0f} s old",
                              caused_by=("broker_unreachable",)),
    "audio_overflows": _rule("audio.overflows", "audio_overflows", ">=", 20, 5, 0, "warning",
                             "{value:.0f} microphone overflows recently (audio lost)"),
    "audio_device_errors": _rule("audio.device_errors", "audio_device_errors", ">=", 3, 1, 0,
                                 "high", "{value:.0f} microphone/speaker device errors recently"),
    "recognition_slow": _rule("voice.recognition_slow", "recognition_latency_p95_s", ">", 3.0,
                              2.0, 120, "warning",
                              "recognition p95 latency {value:.1f} s (limit {threshold:.1f})"),
    "speech_errors": _rule("voice.speech_errors", "speech_errors", ">=", 3, 1, 0, "warning",
                           "{value:.0f} speech output errors recently"),
    "store_errors": _rule("store.errors", "store_errors", ">=", 1, 1, 0, "high",
                          "{value:.0f} conversation store errors recently"),
    "key_file_insecure": _rule("security.key_file_insecure", "key_file_insecure", ">=", 1, 1, 0,
                               "critical", "the key file is readable by others (must be 0600)"),
    "retention_overdue": _rule(
        "privacy.retention_overdue", "retention_overdue_days", ">", 1.0, 0.0, 0, "high",
        "conversations are kept {value:.1f} days past the retention promised to parents"),
    "repeated_escalations": _rule(
        "wellbeing.repeated_escalations", "safety_escalations", ">=", 3, 1, 0, "critical",
        "the child said several worrying things recently"),
}
"""The built-in alert rules, by name."""


class HealthSettings(Section):
    """The bear's self-monitoring: sampling, alert rules, the local alert journal."""

    sample_interval_s: float = Field(default=15.0, gt=0, le=3600)
    """Seconds between two health samples."""
    event_window_s: float = Field(default=600.0, gt=0, le=86400)
    """Counted signals (overflows, errors, escalations) are counted over this window, seconds."""
    suppress_s: float = Field(default=1800.0, ge=0, le=7 * 86400)
    """Default suppression window per rule and device, seconds."""
    crash_window_s: float = Field(default=3600.0, gt=0, le=7 * 86400)
    """Unclean restarts within this window count towards a crash loop, seconds."""
    journal_name: str = "health.db"
    """File name of the local alert journal (SQLite) inside ``store.data_dir``."""
    journal_keep_days: int = Field(default=30, ge=1, le=3650)
    """Days cleared, published alerts are kept in the journal."""
    publish_every_s: float = Field(default=60.0, gt=0, le=86400)
    """Seconds between two ``up/health`` samples offered for publishing."""
    rules: dict[str, RuleOverride] = Field(default_factory=dict)
    """Overrides of :data:`DEFAULT_RULES`, by rule name. A new threshold without a new
    clear level keeps the default gap between the two."""

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        unknown = sorted(set(rules) - set(DEFAULT_RULES))
        if unknown:
            raise ValueError(
                f"unknown health rule(s) {', '.join(unknown)} — known: "
                + ", ".join(sorted(DEFAULT_RULES))
            )
        return rules

    @model_validator(mode="after")
    def _check_overrides(self) -> HealthSettings:
        for name in self.rules:
            self.rule(name)
        return self

    def rule(self, name: str) -> RuleSettings:
        """The rule ``name`` with this config's overrides applied (validated)."""
        override = self.rules.get(name)
        base = DEFAULT_RULES[name]
        if override is None:
            return base
        changes = override.model_dump(exclude_none=True)
        if "threshold" in changes and "clear" not in changes:
            changes["clear"] = changes["threshold"] - (base.threshold - base.clear)
        return RuleSettings.model_validate({**base.model_dump(), **changes})

    def effective_rules(self) -> dict[str, RuleSettings]:
        """Every rule, overrides applied, by name."""
        return {name: self.rule(name) for name in DEFAULT_RULES}
