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

from nlp.tokenizer import DATA_DIR, normalise

CUES_FILE = DATA_DIR / "cues.toml"
SECTORS = ("project", "village", "medical", "school")
SECTOR_COMBINED = ("money", "car", "window", "window_service", "delay", "show", "enforcement")
CONDUCT = ("window", "window_service", "delay", "show")


_NON_WORD = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=1)
def lexicon(path: Path = CUES_FILE) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Group → (its Chinese phrases, its English phrases), normalised as the texts are (`normalise`; English
    ones also reduced to lower-case words separated by single spaces)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = {}
    for section in ("sectors", "kinds"):
        for group, phrases in data[section].items():
            chinese, english = [], []
            for phrase in (normalise(p) for p in phrases):
                if phrase.isascii():
                    english.append(_NON_WORD.sub(" ", phrase).strip())
                else:
                    chinese.append(phrase)
            groups[group] = (tuple(chinese), tuple(english))
    return groups


def _words_of(normalised: str) -> str:
    """The text's ASCII words, each after a space: " word" in it means a word starting with `word`."""
    return " " + _NON_WORD.sub(" ", normalised)


def groups_in(normalised: str) -> set[str]:
    """The cue groups with a phrase in the (normalised) text: a Chinese phrase anywhere, an English one at the
    start of a word (substring tests: ten times faster than one regular expression per group)."""
    words = _words_of(normalised)
    found = set()
    for group, (chinese, english) in lexicon().items():
        if any(phrase in normalised for phrase in chinese) or any(" " + phrase in words for phrase in english):
            found.add(group)
    return found


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
    """The phrases of the text that made a cue token (for the key terms): Chinese ones as they occur in it, an
    English one (the start of a word, "prescri") as the whole words of the text it starts ("prescribed")."""
    groups = lexicon()
    words = _words_of(normalised)
    found: list[str] = []
    for name in re.split(r"[+\-]", token):
        chinese, english = groups.get(name, ((), ()))
        found += [p for p in chinese if p in normalised and p not in found]
        for stem in english:
            if " " + stem not in words:
                continue
            # an English cue is the start of a word ("prescri"): shown as the words of the text it began, as the
            # text writes them ("low-income allowance" for the cue "low income allowance")
            written = r"[^a-z0-9]+".join(re.escape(part) for part in stem.split())
            for match in re.finditer(r"(?<![a-z0-9])" + written + r"[a-z0-9]*", normalised):
                if match.group() not in found:
                    found.append(match.group())
    return found
