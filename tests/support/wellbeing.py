"""A real bear that hears a child's lines and raises wellbeing alerts: the filter, dialogue,
encrypted store and health journal of ``teddy run``; its ``up/alerts`` messages as the
uplink sends them (each quoting, from the sealed store, the line that raised it)."""

from __future__ import annotations

from pathlib import Path

from agent.health import HealthMonitor
from agent.health.monitor import with_quote
from agent.runtime import open_bear
from agent.store import ConversationStore, Scope
from config.settings import load_settings
from sync.protocol import AlertMessage

SAD = "my friends were mean to me and i feel sad"
STORY = "tell me a story about a dragon"
DREAM = "i had a bad dream and i am scared"
HURT = "my uncle hits me and says it is our secret"
LINES = ["hello teddy", SAD, STORY, DREAM, HURT, STORY]
"""The issue's lines: two that are sad (low), one that is urgent (high), and the story
line the old inbox quoted instead."""


def talk(data_dir: Path, device: str, lines: list[str],
         scopes: tuple[Scope, ...] = (Scope.KEEP, Scope.SYNC)) -> list[AlertMessage]:
    """A real bear (filter, dialogue, encrypted store, health journal) hears ``lines``;
    returns its ``up/alerts`` messages as the uplink sends them (quoted from the store)."""
    settings = load_settings(store={"data_dir": data_dir}, device={"id": device})
    store = ConversationStore.open(settings.store, create=True)
    store.grant_consent("Mum", list(scopes))
    store.close()
    with open_bear(settings) as bear, HealthMonitor(settings, bear.alerts, device,
                                                    sampler=lambda now: {}) as monitor:
        for line in lines:
            bear.conversation.respond(line)
        assert bear.store is not None
        return [with_quote(m, bear.store.quote) for m in monitor.pending_alerts()]
