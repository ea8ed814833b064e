#!/usr/bin/env python3
"""Build the safety classifier's corpus: training/safety/data/{input,output}.jsonl.

Seeded and deterministic. Sources: the hand-written templates (templates.py; each template one
group, twins share a group) and the semantic stage's exemplars (agent/safety/exemplars; one
group per line). Augmented with recogniser noise (noise.py) and run-ons (a benign line said in
the same breath). Every row: text, label, group, split (train / calib / test, chosen by the
group's hash so a line's variants and twin never straddle splits). The frozen sets under
tests/data are never read here.

    python -m training.safety.build
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training.safety import templates  # noqa: E402
from training.safety.noise import clean, noisy, run_on  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
EXEMPLARS = ROOT / "agent" / "safety" / "exemplars"
SEED = 20
FILLS = {"input": 14, "output": 10}
"""Slot fillings drawn per template."""
NOISY_COPIES = 2
RUN_ONS = 1
SPLITS = (("test", 0.10), ("calib", 0.15), ("train", 0.75))
OUT_OPENERS = ["", "Hey! ", "Guess what? ", "Psst, ", "Listen. ", "Ooh, ", "You know what? ",
               "Hmm, ", "Okay! ", "Friend, "]
OUT_CLOSERS = ["", " Okay?", " Alright?", " Yay!", " Deal?", " Hee hee!", " Promise?",
               " Remember that.", " That's what friends do."]


def split_of(group: str) -> str:
    """The split a group belongs to (stable: from its hash)."""
    value = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if value < edge:
            return name
    return "train"


def fill(template: str, slots: dict[str, list[str]], rng: random.Random, limit: int) -> list[str]:
    """Up to ``limit`` distinct fillings of ``template``'s slots."""
    names = sorted({n for n in slots if "{" + n + "}" in template})
    if not names:
        return [template]
    combos = list(itertools.product(*(slots[n] for n in names)))
    rng.shuffle(combos)
    out = []
    for combo in combos[:limit]:
        values = dict(zip(names, combo, strict=True))
        text = template
        for name in names:  # a slot named twice may take two values ({parent} and {parent})
            while "{" + name + "}" in text:
                text = text.replace("{" + name + "}", rng.choice(slots[name]) if
                                    text.count("{" + name + "}") > 1 else values[name], 1)
        out.append(text)
    return out


def template_rows(direction: str) -> list[dict]:
    """Rows from the hand-written templates (each template's fillings drawn with its own
    seed, so editing one template leaves every other line as it was)."""
    source = templates.INPUT if direction == "input" else templates.OUTPUT
    slots = templates.SLOTS if direction == "input" else templates.OUT_SLOTS
    rows = []
    for label, items in source.items():
        for index, (template, twin) in enumerate(items):
            group = f"{direction}:twin:{twin}" if twin else f"{direction}:{label}:{index}"
            rng = random.Random(f"{SEED}:{direction}:{template}")
            for text in fill(template, slots, rng, FILLS[direction]):
                rows.append({"text": clean(text) if direction == "input" else text,
                             "label": label, "group": group, "origin": "template"})
    return rows


def exemplar_rows(direction: str) -> list[dict]:
    """Rows from the exemplar files (each line its own group)."""
    rows = []
    folder = EXEMPLARS / direction
    for path in sorted([*folder.glob("*.txt"), *folder.glob("*/*.txt")]):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            text = clean(line) if direction == "input" else line
            group = f"{direction}:ex:{hashlib.sha256(line.encode()).hexdigest()[:12]}"
            rows.append({"text": text, "label": path.stem, "origin": "exemplar",
                         "group": group})
    return rows


def augment_input(rows: list[dict]) -> list[dict]:
    """Noisy copies and run-ons, in each row's own group (seeded by the row's text)."""
    benign = [r["text"] for r in rows if r["label"] == "benign" and len(r["text"].split()) < 9]
    out = list(rows)
    for row in rows:
        rng = random.Random(f"{SEED}:{row['text']}")
        for _ in range(NOISY_COPIES):
            out.append(row | {"text": noisy(row["text"], rng, 2), "origin": "noise"})
        for _ in range(RUN_ONS):
            chatter = rng.choice(benign)
            pair = (chatter, row["text"]) if rng.random() < 0.6 else (row["text"], chatter)
            out.append(row | {"text": run_on(*pair, rng), "origin": "run-on"})
    return out


def augment_output(rows: list[dict]) -> list[dict]:
    """Openers, closers and an unpunctuated lower-case copy, in each row's own group (the
    content pack's many benign replies get one wrapped copy, the rest two)."""
    out = list(rows)
    for row in rows:
        rng = random.Random(f"{SEED}:{row['text']}")
        for _ in range(1 if row["group"].startswith("output:ex:") and row["label"] == "benign"
                       else 2):
            opener, closer = rng.choice(OUT_OPENERS), rng.choice(OUT_CLOSERS)
            text = row["text"]
            if opener:
                text = opener + text[0].lower() + text[1:]
            out.append(row | {"text": text + closer, "origin": "wrap"})
        if not (row["group"].startswith("output:ex:") and row["label"] == "benign"):
            out.append(row | {"text": clean(row["text"]), "origin": "flat"})
    return out


def build(direction: str) -> list[dict]:
    """Every row of one direction, deduplicated (first label wins), with its split."""
    rows = template_rows(direction) + exemplar_rows(direction)
    rows = augment_input(rows) if direction == "input" else augment_output(rows)
    seen: dict[str, dict] = {}
    for row in rows:
        if row["text"] and row["text"] not in seen:
            seen[row["text"]] = row | {"split": split_of(row["group"])}
    return list(seen.values())


KNOWN_REPLIES = ROOT / "agent" / "safety" / "model" / "known_replies.txt"
"""The built-in content pack's replies, trusted by the trained stage without a forward pass
(as the exemplars' benign lines are); refreshed with ``--replies`` after content changes."""


def write_known_replies() -> int:
    """Snapshot every reply of the built-in content pack, every age band."""
    from agent.dialogue import AGE_BANDS, DialogueEngine

    replies: dict[str, None] = {}
    for band in AGE_BANDS:
        replies.update(dict.fromkeys(DialogueEngine(band, remember_name=True).all_replies()))
    lines = sorted(r for r in replies if r.strip() and "\n" not in r)
    KNOWN_REPLIES.write_text(
        "# The built-in content pack's replies (python -m training.safety.build --replies):\n"
        "# trusted by agent/safety/model_stage.py without a forward pass.\n"
        + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"{len(lines)} built-in replies -> {KNOWN_REPLIES}")
    return 0


def main() -> int:
    """Write both corpus files and print their counts (``--replies``: the built-in replies'
    snapshot instead)."""
    if "--replies" in sys.argv[1:]:
        return write_known_replies()
    DATA.mkdir(exist_ok=True)
    for direction in ("input", "output"):
        rows = build(direction)
        with (DATA / f"{direction}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True) + "\n")
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
        print(direction, len(rows), dict(sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
