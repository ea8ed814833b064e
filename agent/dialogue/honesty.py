"""An honest bear: what it keeps and who sees it, secrets, and never sharing with strangers.

Questions about recording, remembering and who can see the talk are answered from the
consent in force (:class:`~agent.dialogue.state.Privacy`, set by the conversation from the
store each turn), never from a script that could be untrue. A child asked by someone in a
game or chat for an address, a school, a photo or a meeting is told never to share it and
to tell a grown-up now, and the reply asks for a parent alert (``DialogueState.alert``).
"""

from __future__ import annotations

import re

from agent.dialogue.state import Privacy

SHARE_CATEGORY = "lures"
"""Safety category of the parent alert for a stranger asking for personal details."""
SHARE_FOLLOW_TURNS = 6
"""Turns after a sharing question in which "should i send it" still means the same."""
QUESTIONS = ("recording", "remember", "who_sees", "delete")
"""Questions about keeping the talk the bear answers."""
PRIVACY_KEYS = ("keep_sync", "keep", "none")
"""Variants of every honesty answer, one per consent state."""

_RECORDING = re.compile(
    r"\b(?:are|r|do|did|were|will) (?:you|u) (?:\w+ )?(?:record|recording|recorded|tape|taping"
    r"|spying|spy|listening all the time|listening to everything|always listening)\b"
    r"|\bare you listening all the time\b|\bis this (?:being )?recorded\b")
_REMEMBER = re.compile(
    r"\b(?:do|will|did|can) you (?:remember|keep|save|store) (?:what|everything|anything|all)"
    r"\b|\bdo you keep (?:our|my|what)\b|\bwill you forget\b|\bdo you save\b")
_WHO = (r"(?:my |your )?(?:mum|mom|mummy|mommy|mother|dad|daddy|father|parents|grown ?ups"
        r"|anyone|anybody|someone|somebody|nan|grandma|teacher)")
_WHO_SEES = re.compile(
    rf"\b(?:can|could|will|does|do) {_WHO} (?:see|hear|read|know|watch|listen)\b"
    r"|\bwho (?:can |else |else can )?(?:see|sees|hear|hears|read|reads|listen)"
    rf"|\b(?:do|will|would|did) you (?:send|tell|show|give) (?:it|this|that|them|our \w+)"
    rf"(?: to)? {_WHO}|\bwill you tell {_WHO}|\byou send (?:it|this|them) to {_WHO}"
    rf"|\bdoes (?:it|this) go to {_WHO}"
    rf"|\b(?:do|will|would|did) you (?:tell|show|send) {_WHO} (?:what|about|everything|our)"
    rf"|\b(?:is|are) {_WHO} (?:going to|gonna|able to) (?:see|hear|read|watch|listen)")
_DELETE = re.compile(r"\b(?:can|could|will) you (?:delete|forget|rub out|wipe)\b")
_SECRET = re.compile(r"\b(?:keep|keeping) (?:a |my |our |this )?secrets?\b"
                     r"|\bcan i tell you a secret\b|\bwant to (?:know|hear) a secret\b")
_GOOD_SECRET = re.compile(r"\b(?:surprise|present|party|birthday|gift)\b")
_PRIVATE = re.compile(
    r"\b(?:address|where i live|my house|school|picture"
    r"|pictures|photo|photos|pic|pics|selfie|phone number|my number|password|last name"
    r"|full name|meet (?:me|him|her|them|up)|come over|video call|facetime)\b")
_STRANGER = re.compile(
    r"\b(?:game|games|gaming|chat|online|internet|roblox|minecraft|fortnite|app|someone"
    r"|somebody|guy|man|lady|woman|player|person|stranger|he|she|him|her|they|them)\b")
_REQUEST = re.compile(
    r"\b(?:send|sent|sending|give|gave|share|want|wants|wanted|asked|asks|asking|ask|know"
    r"|post|meet|come|show|go|said|says|told|tell|should|can i|what)\b")
_SHARE_FOLLOW = re.compile(
    r"^(?:so |but |ok |okay )?(?:should|can|could|shall) i (?:send|give|go|tell|meet|do|show)"
    r"|^what if\b|\bsend (?:it|him|her|them)\b|\b(?:he|she|they) (?:said|says|wants|asked"
    r"|told|promised)\b|\bis (?:he|she) (?:a )?(?:bad|nice|good|safe)\b")
_TOLD_GROWN_UP = re.compile(
    r"\b(?:i will|ill|i'll|im going to|i'm going to|gonna|i can) (?:tell|ask|show) "
    r"(?:my |a )?(?:mum|mom|mummy|mommy|dad|daddy|parents|grown ?up|teacher|nan|grandma)")


def privacy_key(privacy: Privacy) -> str:
    """Which variant of an honesty answer is true under ``privacy``."""
    if privacy.keep:
        return "keep_sync" if privacy.sync else "keep"
    return "none"


def about_keeping(cleaned: str) -> str | None:
    """Which question about keeping the talk ``cleaned`` asks ("recording", "who_sees",
    "remember", "delete"), or None."""
    for name, pattern in (("who_sees", _WHO_SEES), ("recording", _RECORDING),
                          ("remember", _REMEMBER), ("delete", _DELETE)):
        if pattern.search(cleaned):
            return name
    return None


def asks_secret(cleaned: str) -> bool:
    """Whether the child asks the bear to keep (or hear) a secret."""
    return bool(_SECRET.search(cleaned))


def good_secret(cleaned: str) -> bool:
    """Whether the secret the child tells is a good surprise (a present, a party)."""
    return bool(_GOOD_SECRET.search(cleaned))


def asks_to_share(cleaned: str, following: bool) -> bool:
    """Whether ``cleaned`` is about giving personal details to (or meeting) someone from a
    game or chat; ``following``: a sharing question was asked a few turns ago."""
    if _PRIVATE.search(cleaned) and _REQUEST.search(cleaned) and (
            _STRANGER.search(cleaned) or following):
        return True
    return following and bool(_SHARE_FOLLOW.search(cleaned))


def tells_grown_up(cleaned: str) -> bool:
    """Whether the child says they will tell a grown-up."""
    return bool(_TOLD_GROWN_UP.search(cleaned))
