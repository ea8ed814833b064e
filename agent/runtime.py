"""Wires the bear's parts together from settings: safety, dialogue, store, alerts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent import __version__
from agent.alerts import AlertSink
from agent.conversation import Conversation, TurnResult, name_is_speakable
from agent.dialogue import DialogueEngine
from agent.play import STATE_FILE, Clock, PlayLimits
from agent.safety import SafetyFilter, filter_for
from agent.semantic import load_embedder
from agent.store import ConversationStore, Scope
from config.settings import Settings

logger = logging.getLogger(__name__)

FIRMWARE = __version__
"""The version this bear reports."""


@dataclass
class Bear:
    """A running bear's parts. Build with :func:`open_bear`."""

    settings: Settings
    """The settings it was built from."""
    safety: SafetyFilter
    """The child-safety filter, built once."""
    dialogue: DialogueEngine
    """The dialogue engine."""
    alerts: AlertSink
    """Where any part raises an alert."""
    store: ConversationStore | None
    """The store, or None while no parent has consented (then nothing is kept)."""
    conversation: Conversation
    """The conversation in progress."""
    play: PlayLimits | None = None
    """Quiet hours and the daily limit (``play`` settings)."""

    def respond(self, child_text: str) -> TurnResult:
        """Answer one utterance through the whole pipeline."""
        return self.conversation.respond(child_text)

    def new_conversation(self) -> None:
        """Start a fresh conversation (new dialogue state, new data key when kept)."""
        self.conversation = Conversation(self.safety, self.dialogue, self.alerts, self.store,
                                         self.play)

    def reopen_store(self) -> None:
        """Open the store again (pairing just created it or changed consent); new conversation."""
        self.close_store()
        if ConversationStore.exists(self.settings.store):
            self.store = ConversationStore.open(self.settings.store, alerts=self.alerts)
        self.new_conversation()

    def close_store(self) -> None:
        """Stop keeping anything (before a factory reset); the bear still talks. Idempotent."""
        if self.store is not None:
            self.store.close()
            self.store = None
        self.new_conversation()


def installed_content(settings: Settings) -> Path | None:
    """The content pack the fleet installed (``update-content-pack``), if any."""
    from agent.content_update import installed_dir

    folder = installed_dir(settings.store.data_dir)
    return folder if folder.is_dir() else None


def _name_allowed(settings: Settings, store: ConversationStore | None) -> str | None:
    """The child's first name from the parent's profile, if the consent in force lets the
    bear say a name (the ``name`` scope); None otherwise."""
    consent = store.consent() if store is not None else None
    if consent is None or not consent.allows(Scope.NAME):
        return None
    return settings.dialogue.child_name


@contextmanager
def open_bear(settings: Settings, clock: Clock | None = None) -> Iterator[Bear]:
    """Build a bear from settings (``clock``: local time, injectable); closes the store on
    exit."""
    alerts = AlertSink()
    store = bear = None
    if ConversationStore.exists(settings.store):
        store = ConversationStore.open(settings.store, alerts=alerts)
    try:
        consent = store.consent() if store is not None else None
        remember_name = consent is not None and consent.allows(Scope.NAME)
        safety = filter_for(settings)
        dialogue = DialogueEngine(age_band=settings.dialogue.age_band, remember_name=remember_name,
                                  content_dir=installed_content(settings),
                                  embedder=load_embedder(settings),
                                  cache_dir=Path(settings.store.data_dir) / "cache",
                                  name_check=partial(name_is_speakable, safety))
        play = PlayLimits(settings.play, clock, Path(settings.store.data_dir) / STATE_FILE,
                          name=partial(_name_allowed, settings, store))
        conversation = Conversation(safety, dialogue, alerts, store, play)
        logger.info("bear ready (consent: %s)", "yes" if consent else "none; keeping nothing")
        bear = Bear(settings, safety, dialogue, alerts, store, conversation, play)
        yield bear
    finally:
        if bear is not None:
            bear.close_store()
        elif store is not None:
            store.close()
