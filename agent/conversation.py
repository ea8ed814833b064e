"""One conversation turn, the whole way: safety in, dialogue, safety out, keep.

The bear never speaks a text that ``check_output`` has not passed, and keeps a turn only
when a parent's consent allows it: the child's words redacted, both sides sealed, and
their outbox rows written in the same transaction.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from agent.alerts import AlertSink, Severity
from agent.dialogue import DialogueEngine
from agent.dialogue.state import Privacy
from agent.play import PlayLimits
from agent.safety import SAFE_FALLBACK_REPLY, Action, SafetyFilter, Verdict
from agent.safety.categories import ESCALATION_ORDER, POLICIES
from agent.store import ConversationStore, Scope, TurnToKeep

logger = logging.getLogger(__name__)

MAX_UTTERANCE_CHARS = 1000
"""Longer input is cut: no child says more in one breath, and it bounds every later step."""
RECENT_TURNS = 4
"""The child's last turns handed to ``check_input`` as context (it uses the last few)."""
ALERT_SEVERITY = {"high": Severity.HIGH, "low": Severity.INFO}
"""Escalation severity (from the category) -> parent alert severity: high pages the parent,
low is a note for the daily summary (below every paging channel's floor)."""


@dataclass(frozen=True)
class TurnResult:
    """What one turn produced."""

    reply: str
    """What the bear says: checked by ``check_output``."""
    input_verdict: Verdict
    """The safety verdict on the child's words."""
    output_verdict: Verdict
    """The safety verdict on the reply actually spoken."""
    stored: bool
    """Whether the turn was kept (only with consent)."""


def name_is_speakable(safety: SafetyFilter, name: str) -> bool:
    """Whether the bear may remember and say ``name``: it passes both safety checks as said
    by the child and as said by the bear ("Phuck" does not, however it is spelled)."""
    heard = safety.check_input(f"call me {name}", keep_name=True)
    said = safety.check_output(f"Nice to meet you, {name}!")
    return heard.action is Action.ALLOW and said.action is Action.ALLOW


class Conversation:
    """A conversation with one child: dialogue state, and where its turns are kept."""

    def __init__(
        self,
        safety: SafetyFilter,
        dialogue: DialogueEngine,
        alerts: AlertSink,
        store: ConversationStore | None = None,
        play: PlayLimits | None = None,
    ) -> None:
        self._safety = safety
        self._dialogue = dialogue
        self._alerts = alerts
        self._store = store
        self._play = play
        self._state = dialogue.new_state()
        self._conversation_id: str | None = None
        self._recent: deque[str] = deque(maxlen=RECENT_TURNS)

    def respond(self, child_text: str) -> TurnResult:
        """Answer the child's words and keep the turn if consent allows."""
        heard = child_text.strip()[:MAX_UTTERANCE_CHARS]
        self._state.privacy = self._privacy()
        verdict_in = self._safety.check_input(heard, history=list(self._recent),
                                              keep_name=self._state.privacy.name)
        self._recent.append(heard)
        dialogue_alert = None
        kept: list[int] = []
        try:  # the alert waits for the kept turn's place, but never on a failure
            refusal = self._play.refusal() if self._play is not None else None
            if refusal is not None and verdict_in.action is not Action.ESCALATE:
                candidate = refusal  # bedtime or the day's play is over: a kind answer
            else:
                candidate = self._dialogue.reply(verdict_in.redacted, verdict_in, self._state)
                if self._state.alert is not None and verdict_in.action is not Action.ESCALATE:
                    dialogue_alert = self._state.alert
            reply, verdict_out = self._checked_reply(candidate)
            kept = self._keep(verdict_in, reply, verdict_out)
        finally:  # the parent hears of it even when answering or keeping the turn failed
            child_seq = kept[0] if kept else None
            if verdict_in.action is Action.ESCALATE:
                self._escalate(verdict_in, child_seq)
            elif dialogue_alert is not None:
                self._alert_for_dialogue(dialogue_alert, child_seq)
        return TurnResult(reply, verdict_in, verdict_out, bool(kept))

    def _checked_reply(self, candidate: str) -> tuple[str, Verdict]:
        verdict = self._safety.check_output(candidate)
        if verdict.allowed:
            return verdict.redacted, verdict
        logger.warning("blocked a reply (categories %s); using the safe fallback",
                       ",".join(verdict.categories))
        return SAFE_FALLBACK_REPLY, self._safety.check_output(SAFE_FALLBACK_REPLY)

    def _privacy(self) -> Privacy:
        """What the parent's consent in force allows: the bear's honest answers rest on it."""
        store = self._store
        consent = store.consent() if store is not None else None
        if consent is None:
            return Privacy()
        keep = consent.allows(Scope.KEEP)
        return Privacy(keep=keep, sync=keep and consent.allows(Scope.SYNC),
                       name=consent.allows(Scope.NAME))

    def _alert_for_dialogue(self, category: str, child_seq: int | None) -> None:
        """The dialogue heard a danger the filter let through (a stranger in a game asking
        for an address): the parent is alerted as for the filter's own escalations."""
        policy = POLICIES[category]
        self._alerts.raise_alert(
            "wellbeing.escalation",
            ALERT_SEVERITY.get(policy.severity or "high", Severity.HIGH),
            "the child was asked to share personal details or meet someone from a game or chat",
            **self._where(child_seq), categories=[category], category=category,
        )

    def _where(self, child_seq: int | None) -> dict[str, object]:
        """The ``turn`` detail: where the child's line was kept (empty when it was not)."""
        if child_seq is None or self._conversation_id is None:
            return {}
        return {"turn": {"conversation_id": self._conversation_id, "seq": child_seq}}

    def _escalate(self, verdict: Verdict, child_seq: int | None) -> None:
        """Alert the parent: the verdict's categories, the most urgent of them, and where
        the child's line was kept (the uplink quotes it from the sealed store, never from
        here: the alert itself holds no words)."""
        details: dict[str, object] = {"categories": list(verdict.categories)}
        category = most_urgent(verdict.categories)
        if category is not None:
            details["category"] = category
        details.update(self._where(child_seq))
        self._alerts.raise_alert(
            "wellbeing.escalation",
            ALERT_SEVERITY.get(verdict.severity or "high", Severity.HIGH),
            "the child said something a parent should know about",
            **details,
        )

    def _keep(self, verdict_in: Verdict, reply: str, verdict_out: Verdict) -> list[int]:
        """Keep the turn if consent allows; the seqs given (child's first), else []."""
        store = self._store
        if store is None:
            return []
        consent = store.consent()
        if consent is None or not consent.allows(Scope.KEEP):
            return []
        if self._conversation_id is None:
            self._conversation_id = store.start_conversation()
        return store.append(
            self._conversation_id,
            [
                TurnToKeep("child", verdict_in.redacted, verdict_in),
                TurnToKeep("bear", reply, verdict_out),
            ],
        )


def most_urgent(categories: tuple[str, ...] | list[str]) -> str | None:
    """The escalating category that leads among ``categories`` (``categories.json``'s
    priority, as for the bear's answer); None when none escalates."""
    escalating = [c for c in ESCALATION_ORDER if c in categories]
    return escalating[0] if escalating else None
