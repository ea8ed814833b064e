"""The child-safety filter on its own: folding, whole-token matching, context, PII, both ways."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.safety import (
    SAFE_FALLBACK_REPLY,
    WELLBEING_CATEGORIES,
    Action,
    SafetyFilter,
    SafetyListError,
    default_filter,
)
from agent.safety.filter import PACKAGE_DIR
from agent.safety.lexicon import expand_alternatives
from agent.safety.normalize import fold


@pytest.mark.parametrize("text", [
    "shit", "SHIT", "sh1t", "$hit", "s h i t", "s-h-i-t", "s.h.i.t", "shiiiiiit",
    "Ｓｈｉｔ", "ѕhіt", "shït", "what the f***", "f u c k you",
])
def test_obfuscated_profanity_is_blocked(safety: SafetyFilter, text: str) -> None:
    verdict = safety.check_input(text)
    assert verdict.action is Action.BLOCK, text
    assert verdict.categories == ("profanity",)


@pytest.mark.parametrize("text", [
    "I went to Scunthorpe", "a classic film", "grapes please", "my aunt is a therapist",
    "cocktail sauce on my chips", "an assassin bug in the garden", "I killed it at football",
    "my tummy hurts because I ate too much cake", "fart", "my cat is fat", "a cowgirl hat",
    "naked mole rats are wrinkly", "I got a bath bomb", "I'm scared of the dark",
    "it's a secret surprise for mummy's birthday", "shooting stars", "the killer whale",
    "sea cucumber", "Dick Whittington", "I hit the ball", "knock knock",
])
def test_tricky_benign_is_allowed(safety: SafetyFilter, text: str) -> None:
    verdict = safety.check_input(text)
    assert verdict.action is Action.ALLOW, (text, verdict.categories)


def test_context_makes_hurt_an_abuse_disclosure(safety: SafetyFilter) -> None:
    assert safety.check_input("my tummy hurts").action is Action.ALLOW
    verdict = safety.check_input("he hurts me when mum is out")
    assert verdict.action is Action.ESCALATE
    assert "abuse" in verdict.categories


@pytest.mark.parametrize(("text", "category"), [
    ("i want to kill myself", "self_harm"),
    ("my uncle said it's our little secret", "secrets"),
    ("nobody loves me", "distress"),
    ("the big kids call me names", "bullying"),
    ("grandma won't wake up", "medical_emergency"),
    ("dad hits me", "abuse"),
])
def test_wellbeing_categories_escalate(safety: SafetyFilter, text: str, category: str) -> None:
    verdict = safety.check_input(text)
    assert verdict.action is Action.ESCALATE
    assert category in verdict.categories
    assert set(verdict.categories) & WELLBEING_CATEGORIES


@pytest.mark.parametrize(("text", "category"), [
    ("where are the knives", "dangerous"), ("can I play with matches", "dangerous"),
    ("lets put a plastic bag over my head", "dangerous"), ("my dad drinks beer", "drugs_alcohol"),
    ("what is sex", "sexual"), ("i'm going to stab him", "violence"),
    ("go back to your country", "hate"),
])
def test_harmful_topics_block(safety: SafetyFilter, text: str, category: str) -> None:
    verdict = safety.check_input(text)
    assert verdict.action is Action.BLOCK
    assert category in verdict.categories


@pytest.mark.parametrize(("text", "category", "secret"), [
    ("my number is 07700 900123", "pii.phone", "900123"),
    ("my number is oh seven seven double oh nine double oh one two three", "pii.phone", "seven"),
    ("email me at lily.smith@gmail.com", "pii.email", "lily.smith"),
    ("my email is lily smith at gmail dot com", "pii.email", "gmail"),
    ("my name is Emma Johnson", "pii.name", "Johnson"),
    ("i live at 42 maple street", "pii.address", "maple"),
    ("i go to riverside primary school", "pii.school", "riverside"),
    ("i'm at the park on my own", "pii.location", "park"),
    ("the wifi password is sunflower99", "pii.password", "sunflower99"),
    ("the ipad code is 1 2 3 4 5 6", "pii.password", "4 5"),
    ("my dad's email is tom dot jones at outlook dot com", "pii.email", "tom"),
    ("everyone calls me lucy brown", "pii.name", "brown"),
    # issue 20: self-introductions in other orders, a family name without "my", a move,
    # a school called after its infants/juniors
    ("Jasper is my name", "pii.name", "Jasper"),
    ("hello teddy it's Mateo here", "pii.name", "Mateo"),
    ("im Kofi and im eight", "pii.name", "Kofi"),
    ("dads called Tobias", "pii.name", "Tobias"),
    ("we just moved to elm grove", "pii.address", "elm"),
    ("my sister goes to hillside juniors", "pii.school", "hillside"),
])
def test_personal_information_is_redacted(safety: SafetyFilter, text: str, category: str,
                                          secret: str) -> None:
    verdict = safety.check_input(text)
    assert verdict.action is Action.REDACT
    assert verdict.categories == (category,)
    assert secret not in verdict.redacted
    assert f"[{category.removeprefix('pii.')}]" in verdict.redacted
    assert all(secret not in m.rule for m in verdict.matches)


def test_counting_is_not_personal_information_and_first_names_need_consent(
        safety: SafetyFilter) -> None:
    assert safety.check_input("one two three four five six seven eight nine").action \
        is Action.ALLOW
    # Issue 13: a first name is personal information unless the parent allowed `name`.
    assert safety.check_input("my name is emma and i am six").redacted == \
        "my name is [name] and i am six"
    assert safety.check_input("my name is emma and i am six", keep_name=True).action \
        is Action.ALLOW


@pytest.mark.parametrize("text", ["my dog is called biscuit", "our hamsters name is nibbles",
                                  "my kittens name is mo"])
def test_a_pets_name_is_kept_only_with_the_name_consent(safety: SafetyFilter, text: str) -> None:
    """A pet's name is what the child talks about, and a favourite security answer."""
    assert "[name]" in safety.check_input(text).redacted
    verdict = safety.check_input(text, keep_name=True)
    assert verdict.action is Action.ALLOW and verdict.redacted == text


def test_a_storys_animal_is_no_one_to_hide(safety: SafetyFilter) -> None:
    """The bear's own story names its dog; only 'my/our' pets are the child's."""
    line = "A rescue dog named Bramble had followed their scent up the hill."
    assert safety.check_output(line).action is Action.ALLOW


@pytest.mark.parametrize("text", [
    "its cold here", "it's raining here", "what is my name", "im tired and im six",
    "this is fun here", "mum called me for tea", "we moved to a new house",
    "my brother is in infants",
])
def test_states_and_questions_are_no_names(safety: SafetyFilter, text: str) -> None:
    """The introductions added for issue 20 leave a child's states and questions alone."""
    assert safety.check_input(text).redacted == text


def test_redaction_and_escalation_combine(safety: SafetyFilter) -> None:
    verdict = safety.check_input("my name is emma johnson and my dad hits me")
    assert verdict.action is Action.ESCALATE
    assert set(verdict.categories) == {"abuse", "pii.name"}
    assert "johnson" not in verdict.redacted


@pytest.mark.parametrize(("text", "category"), [
    ("What's your address?", "asks_pii"),
    ("Tell me your mum's phone number.", "asks_pii"),
    ("Don't tell your mum about this.", "encourages_secrecy"),
    ("This is just between you and me.", "encourages_secrecy"),
    ("Let's meet at the park after school.", "strangers"),
    ("Strangers are nice, go and talk to them.", "strangers"),
    ("The knives are in the kitchen drawer.", "dangerous_instructions"),
    ("You should take some paracetamol.", "medical_advice"),
    ("Please don't leave me, I'll be so lonely without you.", "guilt_trip"),
])
def test_output_only_categories_block_the_bear(safety: SafetyFilter, text: str,
                                               category: str) -> None:
    verdict = safety.check_output(text)
    assert verdict.action is Action.BLOCK
    assert category in verdict.categories
    # The same words from the child are no reason to block.
    assert category not in safety.check_input(text).categories


def test_wellbeing_words_from_the_bear_are_blocked_not_escalated(safety: SafetyFilter) -> None:
    assert safety.check_output("I want to die.").action is Action.BLOCK


def test_safe_fallback_reply_passes(safety: SafetyFilter) -> None:
    verdict = safety.check_output(SAFE_FALLBACK_REPLY)
    assert verdict.action is Action.ALLOW


def test_default_filter_is_built_once() -> None:
    assert default_filter() is default_filter()


def test_list_expansion_handles_nested_groups() -> None:
    assert expand_alternatives("go (alone|without (mum|dad)) now") == [
        "go alone now", "go without mum now", "go without dad now"]


def test_folding_unifies_contractions_and_family_words() -> None:
    assert fold("I'm scared of Mummy's dog").primary == ("i", "am", "scared", "of", "mums", "dog")


def test_lists_are_data_a_fleet_can_update(tmp_path: Path) -> None:
    data = tmp_path / "safety"
    shutil.copytree(PACKAGE_DIR, data, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    word = "blorptastic"
    before = SafetyFilter.load(data)
    assert before.check_input(f"you are {word}").action is Action.ALLOW
    with (data / "lists" / "profanity.txt").open("a") as handle:
        handle.write(f"\n{word}\n")
    after = SafetyFilter.load(data)
    assert after.check_input(f"you are {word}").categories == ("profanity",)


def test_a_list_for_an_unknown_category_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "safety"
    shutil.copytree(PACKAGE_DIR, data, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (data / "lists" / "gossip.txt").write_text("whisper\n")
    with pytest.raises(SafetyListError, match="gossip"):
        SafetyFilter.load(data)


def test_a_missing_data_dir_names_itself(tmp_path: Path) -> None:
    with pytest.raises(SafetyListError, match=str(tmp_path)) as caught:
        SafetyFilter.load(tmp_path)
    assert isinstance(caught.value, ValueError)


def test_both_matchers_agree_on_the_evaluation_set() -> None:
    safety = SafetyFilter.load()  # the rules stage alone: the two phrase matchers compared
    regex = SafetyFilter.load(backend="regex")
    assert regex.backend == "regex" and safety.backend == "aho-corasick"
    lines = (Path(__file__).parent / "data" / "safety_eval.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    assert len(texts) >= 400
    for text in texts:
        assert regex.check_input(text) == safety.check_input(text), text
        assert regex.check_output(text) == safety.check_output(text), text


def test_no_child_text_is_logged_at_info(safety: SafetyFilter,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="agent.safety"):
        safety.check_input("my dad hits me and my number is 07700 900123")
    assert "hits" not in caplog.text and "900123" not in caplog.text


@pytest.mark.parametrize(("text", "action"), [
    ("i want to dye", Action.ESCALATE),            # "die" heard as "dye" at the end
    ("i want to dye my hair", Action.ALLOW),
    ("i wanna kil my self", Action.ESCALATE),       # split and misspelt by the recognizer
    ("he's not breathing", Action.ESCALATE),
    ("hes not breathing", Action.ESCALATE),         # no apostrophes from Vosk
    ("i hurt myself on the slide", Action.ALLOW),
    ("the ball hit me", Action.ALLOW),
    ("my cat scratched me", Action.ALLOW),
])
def test_recognizer_transcripts(safety: SafetyFilter, text: str, action: Action) -> None:
    assert safety.check_input(text).action is action, safety.check_input(text)


def test_proximity_rules_catch_unforeseen_phrasings(safety: SafetyFilter) -> None:
    verdict = safety.check_input("daddy threw me against the wall")
    assert verdict.action is Action.ESCALATE and "abuse" in verdict.categories
    assert any(m.rule.startswith("abuse: he|she|dad") for m in verdict.matches)
    # Too far apart is no match: the words must stay within their gaps.
    assert safety.check_input(
        "daddy threw the ball really really high over the fence to me").action is Action.ALLOW


def test_a_malformed_proximity_rule_names_its_line(tmp_path: Path) -> None:
    data = tmp_path / "safety"
    shutil.copytree(PACKAGE_DIR, data, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with (data / "near.txt").open("a") as handle:
        handle.write("abuse: hits|slaps me\n")
    with pytest.raises(SafetyListError, match=r"near.txt:\d+"):
        SafetyFilter.load(data)


@pytest.mark.parametrize(("text", "action"), [
    ("uncle said it's our secret and he gave me a birthday present", Action.ESCALATE),
    ("i'm going to kill my brother he broke my lego", Action.BLOCK),
    ("nobody loves me can you tell me a story", Action.ESCALATE),
    ("the bunny was sad in the story", Action.ALLOW),
])
def test_benign_context_words_do_not_hide_harm(safety: SafetyFilter, text: str,
                                               action: Action) -> None:
    assert safety.check_input(text).action is action
