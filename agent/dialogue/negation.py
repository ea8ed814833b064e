"""Negation as children say it: "i not tired", "nooo keep playing", "not scary".

``tidy`` shortens stretched words ("nooo" -> "no"); ``negated_feeling`` reads "i'm not
tired" (and "not sad just tired", where the feeling after "just" is the one meant);
``no_then_request`` drops a leading "no" that only pushes back against stopping.
"""

from __future__ import annotations

import re

FEELINGS = {
    "tired": "tired", "sleepy": "tired", "sad": "sad", "unhappy": "sad", "angry": "angry",
    "mad": "angry", "cross": "angry", "grumpy": "angry", "scared": "scared",
    "afraid": "scared", "frightened": "scared", "bored": "bored", "happy": "happy",
    "excited": "excited", "nervous": "nervous", "worried": "nervous", "silly": "silly",
}
"""Feeling words -> the feeling intent they name (``feel_<name>``)."""
_FEELING = "|".join(FEELINGS)
_NEGATED = re.compile(
    rf"^(?:(?:but|and|no|well) )?(?:i|im|i'm|i am|am|i m|me)? ?(?:am )?(?:not|isnt|aint|no)"
    rf" (?:feeling |very |so |that |really |a bit |even )?({_FEELING})\b(?: (?:just|but|only"
    rf"|im|i'm|i am|more|really) (?:a bit |really |very |so |just )?({_FEELING})\b)?")
_NOT_SCARY = re.compile(r"^(?:but |and |a |one )?(?:not|nothing|no) (?:a |too |very )?"
                        r"(?:scary|scarey|spooky|frightening)(?: one| story| please| thanks)*$")
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_NO_THEN = re.compile(r"^(?:no|nope|nah|no no)+ (?=(?:keep|i want|again|play|let|don't"
                      r"|dont|another|go on)\b)")


def tidy(cleaned: str) -> str:
    """``cleaned`` with stretched letters shortened ("nooo" -> "no", "pleeease" -> "please")."""
    return " ".join(_unstretch(w) for w in cleaned.split())


def _unstretch(word: str) -> str:
    return _STRETCHED.sub(r"\1", word) if _STRETCHED.search(word) else word


def negated_feeling(cleaned: str) -> tuple[str, str | None] | None:
    """("tired", None) for "i'm not tired"; ("sad", "tired") for "not sad just tired";
    None when no feeling is denied."""
    match = _NEGATED.search(cleaned)
    if match is None:
        return None
    denied, meant = match.group(1), match.group(2)
    return denied, FEELINGS[meant] if meant else None


def not_scary(cleaned: str) -> bool:
    """Whether the whole line only asks for nothing scary ("not scary", "not a scary one")."""
    return bool(_NOT_SCARY.match(cleaned))


def no_then_request(cleaned: str) -> str:
    """"no keep playing" -> "keep playing": a "no" that pushes back, then the request."""
    return _NO_THEN.sub("", cleaned)
