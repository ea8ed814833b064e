"""What the bear says: a skill engine over a content pack kept as data files.

``DialogueEngine(age_band, remember_name).reply(redacted_text, input_verdict, state)``
gives the next reply; ``all_replies()`` lists every reply the pack can produce.
"""

from agent.dialogue.content import AGE_BANDS, ContentPack, load_pack
from agent.dialogue.engine import DialogueEngine
from agent.dialogue.errors import ContentError
from agent.dialogue.speech import MAX_WORDS
from agent.dialogue.state import DialogueState

__all__ = [
    "AGE_BANDS",
    "ContentError",
    "ContentPack",
    "DialogueEngine",
    "DialogueState",
    "MAX_WORDS",
    "load_pack",
]
