"""The taxonomy's cues: which sectors, kinds of money and kinds of conduct a report mentions, and the
combinations that decide taxonomy.md's boundary rules, as tokens of the model's features.

The phrases of each group are in `nlp/data/cues.toml`. A linear model over words alone cannot say "money
decides, unless the report is set in a hospital": it adds evidence. The combination tokens give it the words
for the rules — `medical+money` (rule 1: a red envelope in a hospital is `medical`), `nosector+money` and
`nosector+car` (rule 2), `nosector+nomoney+window|delay|show` (rule 3), `praise-only`, `question-only`,
`spam`, `private-only` and their combinations with a sector such as `medical+praise-only` (rule 4) — and
training decides how much each counts.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path

from nlp.tokenizer import DATA_DIR

CUES_FILE = DATA_DIR / "cues.toml"
SECTORS = ("project", "village", "medical", "school")
SECTOR_COMBINED = ("money", "car", "window", "window_service", "delay", "show", "enforcement")
CONDUCT = ("window", "window_service", "delay", "show")


@lru_cache(maxsize=1)
def lexicon(path: Path = CUES_FILE) -> dict[str, re.Pattern[str]]:
    """Group → one pattern of its phrases (longest first; English ones only at the start of a word)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    patterns = {}
    for section in ("sectors", "kinds"):
        for group, phrases in data[section].items():
            parts = []
            for phrase in sorted({p.lower() for p in phrases}, key=len, reverse=True):
                escaped = re.escape(phrase)
                parts.append(rf"\b{escaped}" if phrase.isascii() else escaped)
            patterns[group] = re.compile("|".join(parts))
    return patterns


def groups_in(normalised: str) -> set[str]:
    """The cue groups with a phrase in the (normalised) text."""
    return {group for group, pattern in lexicon().items() if pattern.search(normalised)}


def cue_tokens(normalised: str) -> list[str]:
    """The groups found in the text and their combinations along the boundary rules."""
    found = groups_in(normalised)
    tokens = sorted(found)
    sectors = [sector for sector in SECTORS if sector in found]
    money = [kind for kind in ("money", "car") if kind in found]
    for sector in sectors:
        tokens += [f"{sector}+{kind}" for kind in SECTOR_COMBINED if kind in found]
        if len(sectors) == 1:
            tokens.append(f"{sector}-only")
    if "project" in found and "show" in found and "procured_properly" in found:
        tokens.append("project+show+procured_properly")
    if not sectors:
        tokens.append("nosector")
        for kind in money:
            tokens.append(f"nosector+{kind}")
            tokens += [f"nosector+{kind}+{other}" for other in (*CONDUCT, "enforcement", "official") if other in found]
        if not money:
            tokens += [f"nosector+nomoney+{conduct}" for conduct in CONDUCT if conduct in found]
    not_misconduct = []  # rule 4: praise or a question without a complaint, spam
    if "complaint" not in found:
        not_misconduct += [f"{kind}-only" for kind in ("praise", "question") if kind in found]
    if "spam" in found:
        not_misconduct.append("spam")
    tokens += not_misconduct
    tokens += [f"{sector}+{kind}" for sector in sectors for kind in not_misconduct]
    if "private" in found and "official" not in found:
        tokens.append("private-only")
    if not (found & {*SECTORS, "official", "window", "window_service", "enforcement", "car"}):
        tokens.append("no-public-power")
    return tokens


def phrases(normalised: str, token: str) -> list[str]:
    """The phrases of the text that made a cue token (for the key terms), in the order they occur."""
    patterns = lexicon()
    names = [name for name in re.split(r"[+\-]", token) if name in patterns]
    found: list[str] = []
    for name in names:
        for match in patterns[name].finditer(normalised):
            if match.group() not in found:
                found.append(match.group())
    return found
