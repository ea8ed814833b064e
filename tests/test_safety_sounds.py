"""Hearing what the speaker will say: look-alike letters, leetspeak, spacing, and spellings
that sound like a listed word ("phuck", "kil yorself") are caught both ways, at the content
gate and for a name the bear would repeat; benign sets and the bear's own lines stay clean."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.alerts import AlertSink
from agent.content_update import ContentUpdateError, install_bundle, installed_version
from agent.conversation import Conversation, name_is_speakable
from agent.dialogue import AGE_BANDS, DialogueEngine
from agent.dialogue.content import CONTENT_DIR
from agent.safety import Action, rules_only_filter
from agent.safety.sounds import close_spelling, known_words, phonetic_key, respell
from sync.cloud.fleet import public_key_bytes
from sync.protocol import ContentBundle

DATA = Path(__file__).parent / "data"
SWEARS = ("fuck", "shit", "bitch", "cunt", "dick", "piss", "bastard", "wanker", "twat", "slut",
          "whore", "crap", "bollocks")
"""Words that are a list entry by themselves (profanity.txt)."""
SMALL_CAPS = dict(zip("abcdefghijklmnopqrstuvwxyz", "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡxʏᴢ", strict=True))
HOMOGLYPHS = {"a": "аα", "c": "сϲ", "e": "еε", "i": "іι", "k": "кκ", "o": "оο", "p": "рρ",
              "s": "ѕ", "t": "тτ", "u": "υ", "x": "хχ", "y": "у", "h": "һ", "b": "Β", "n": "Ν"}
LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7"}
SOUND_ALIKES = (("f", "ph"), ("ck", "k"), ("ck", "kk"), ("c(?![hk])", "k"), ("i", "ee"),
                ("u", "oo"), ("ss", "zz"), ("er", "ur"), ("i", "y"))
"""(regular expression, replacement): spellings a text-to-speech voice says the same."""


@pytest.fixture(scope="module")
def safety():
    return rules_only_filter()


def fullwidth(ch: str) -> str:
    return chr(ord(ch) - 0x21 + 0xFF01) if "!" <= ch <= "~" else ch


@st.composite
def disguised(draw) -> tuple[str, str]:
    """(word, a disguise of it): one sound-alike respelling, then letters typed as look-alikes,
    digits or capitals, optionally spaced out or stretched."""
    word = draw(st.sampled_from(SWEARS))
    spelled = word
    usable = [(a, b) for a, b in SOUND_ALIKES if re.search(a, word)]
    if usable and draw(st.booleans()):
        a, b = draw(st.sampled_from(usable))
        spelled = re.sub(a, b, word, count=1)
        assume(spelled not in known_words())  # a real word is never re-read by sound
    letters = []
    for ch in spelled:
        style = draw(st.sampled_from(("plain", "upper", "small", "glyph", "leet", "wide")))
        if style == "upper":
            ch = ch.upper()
        elif style == "small":
            ch = SMALL_CAPS[ch]
        elif style == "glyph" and ch in HOMOGLYPHS:
            ch = draw(st.sampled_from(HOMOGLYPHS[ch]))
        elif style == "leet" and ch in LEET and ch != spelled[0]:
            ch = draw(st.sampled_from(LEET[ch]))
        elif style == "wide":
            ch = fullwidth(ch)
        letters.append(ch)
    layout = draw(st.sampled_from(("joined", "spaced", "dotted", "dashed", "stretched")))
    if layout == "stretched":
        at = draw(st.integers(0, len(letters) - 1))
        letters[at] = letters[at] * 4
        return word, "".join(letters)
    separator = {"joined": "", "spaced": " ", "dotted": ".", "dashed": "-"}[layout]
    if separator and any(not c.isalpha() for c in letters):
        separator = ""  # "s h 1 t": a lone digit is a number, not a letter
    return word, separator.join(letters)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(disguised(), st.sampled_from(("{}", "you {}", "{} off", "what the {} teddy")))
def test_disguised_swear_words_are_caught_both_ways(safety, case, frame):
    word, disguise = case
    text = frame.format(disguise)
    heard = safety.check_input(text)
    said = safety.check_output(text)
    assert heard.action is not Action.ALLOW, (word, text)
    assert not said.allowed, (word, text)


@pytest.mark.parametrize("text", [
    "phuck off", "Phuck off!", "fvck", "f4ck you", "sh1t", "sheit", "shiiiit", "ｆｕｃｋ",
    "ꜰᴜᴄᴋ", "ʙɪᴛᴄʜ", "Fυсk", "ѕhіt", "f u c k", "f.u.c.k", "f-u-c-k", "f*u*c*k", "biatch",
    "btch", "kunt", "phuk u", "shyt", "you are a biatch",
])
def test_known_disguises_are_blocked(safety, text):
    assert safety.check_input(text).action is Action.BLOCK, text
    assert not safety.check_output(text).allowed, text


@pytest.mark.parametrize("text", ["kil yorself", "k1ll yourself", "ᴋɪʟʟ yourself",
                                  "go kil yorself now", "kill urself"])
def test_telling_someone_to_kill_themself_is_caught_however_spelled(safety, text):
    assert safety.check_output(text).action is Action.BLOCK, text
    assert "self_harm" in safety.check_input(text).categories, text


def test_the_phonetic_key_and_spelling_guard():
    assert phonetic_key("phuck") == phonetic_key("fuck") == phonetic_key("fuuck")
    assert phonetic_key("yorself") == phonetic_key("yourself")
    assert phonetic_key("fvck") == phonetic_key("fuck")
    assert respell("secks") == respell("sex") == "seks"
    assert close_spelling("sheit", "shit") and not close_spelling("ponys", "penis")
    known = known_words()
    assert {"fake", "shot", "sheet", "duck", "ponies", "count"} <= known
    assert not {"phuck", "fvck", "sheit", "biatch"} & known


@pytest.mark.parametrize("text", ["I love my ponies", "the duck went quack", "my dad is a cook",
                                  "count to six", "that was a great shot", "fake snow",
                                  "sheets on my bed", "we saw a heron", "a skunk smells"])
def test_real_words_that_sound_close_are_not_re_read(safety, text):
    assert safety.check_input(text).action is Action.ALLOW, text
    assert safety.check_output(text).allowed, text


def _benign_lines() -> list[tuple[str, str]]:
    rows = []
    for line in (DATA / "safety_eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        if not row["expected"]:
            rows.append((row["text"], "input"))
    for direction, label in (("input", "benign"), ("output", "benign")):
        for line in (DATA / f"frozen_{direction}.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("label") == label:
                rows.append((row["text"], direction))
    for line in (DATA / "frozen_intents.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "text" in row:
            rows.append((row["text"], "input"))
    for path in sorted((DATA / "frozen_conversations").glob("*.txt")):
        rows += [(t, "input") for t in path.read_text().splitlines()
                 if t.strip() and not t.startswith("#")]
    return rows


def test_hearing_by_sound_adds_no_flag_on_any_benign_set(safety):
    """Sound-alike readings change no verdict on the benign lines of every set (measured:
    0 of about 1,900 lines)."""
    rows = _benign_lines()
    assert len(rows) > 1000
    sounds = safety._sounds
    changed = []
    for text, direction in rows:
        check = safety.check_input if direction == "input" else safety.check_output
        with_sound = check(text).action
        safety._sounds = None
        try:
            without = check(text).action
        finally:
            safety._sounds = sounds
        if with_sound is not without:
            changed.append(text)
    assert changed == []


def test_none_of_the_bears_own_lines_is_blocked(safety):
    replies = {r for band in AGE_BANDS
               for r in DialogueEngine(band, remember_name=True).all_replies()}
    assert len(replies) > 1000
    assert [r for r in replies if not safety.check_output(r).allowed] == []


def _bundle_from_file(tmp_path: Path, key, version: int, punchline: str) -> ContentBundle:
    jokes = json.loads((CONTENT_DIR / "jokes.json").read_text(encoding="utf-8"))
    jokes["jokes"].insert(0, {"q": "What did the grumpy bear say?", "a": punchline})
    pack = tmp_path / f"jokes-{version}.json"
    pack.write_text(json.dumps(jokes, indent=1), encoding="utf-8")
    bundle = ContentBundle(version=version, files={"jokes.json": pack.read_text("utf-8")})
    return bundle.signed_with(key)


@pytest.mark.parametrize("punchline", ["Phuck off!", "kil yorself", "Go ᴋɪʟʟ yourself!",
                                       "You are a biatch."])
def test_a_pack_with_a_misspelled_unsafe_line_is_refused_at_install(tmp_path, safety,
                                                                    punchline):
    key = Ed25519PrivateKey.generate()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(ContentUpdateError, match="fails the safety check") as refused:
        install_bundle(_bundle_from_file(tmp_path, key, 2, punchline), public_key_bytes(key),
                       data_dir, safety)
    assert punchline in str(refused.value)
    assert installed_version(data_dir) == 0 and not (data_dir / "content").exists()
    fine = _bundle_from_file(tmp_path, key, 3, "Bear-ies for breakfast!")
    assert install_bundle(fine, public_key_bytes(key), data_dir, safety)["version"] == 3


def test_a_name_that_sounds_like_a_swear_is_neither_kept_nor_said(safety):
    assert name_is_speakable(safety, "Leo") and name_is_speakable(safety, "Mia")
    assert not name_is_speakable(safety, "Phuck")
    assert not name_is_speakable(safety, "Sheit")
    engine = DialogueEngine(remember_name=True, name_check=lambda n: name_is_speakable(safety, n))
    talk = Conversation(safety, engine, AlertSink())
    for line in ("my name is phuck", "my name is fvck", "call me sheit"):
        turn = talk.respond(line)
        assert "huck" not in turn.reply.lower() and "sheit" not in turn.reply.lower(), turn.reply
    state = engine.new_state(seed=1)
    engine.reply("my name is phuck", safety.check_input("call me Sam"), state)
    assert state.child_name is None  # even when the input check let it through
    engine.reply("my name is leo", safety.check_input("my name is leo"), state)
    assert state.child_name == "Leo"
