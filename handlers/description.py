"""A report's description from a text the resident sent before it was asked for (a first message, "/report
<text>", the story written to an earlier question): over the limit, it is kept as far as it fits, never refused."""

from __future__ import annotations

import re

from handlers.context import Turn
from handlers.validation import Invalid, clean_description, readable

SENTENCE_END = re.compile(r"[。！？；!?;…\n]|\.(?=\s)")
"""Where a sentence or a line ends: a text over the limit is cut after the last one that fits."""
QUOTED = 12
"""How much of the part not kept the note quotes, for the resident to find where it begins."""


def fitting_part(text: str, max_chars: int) -> str:
    """The start of `text` that fits `max_chars`: up to the last end of a sentence or line within it, where that keeps
    at least four fifths of the limit, else cut at the limit."""
    if len(text) <= max_chars:
        return text
    ends = [match.end() for match in SENTENCE_END.finditer(text, 0, max_chars)]
    cut = ends[-1] if ends and ends[-1] >= max_chars * 4 // 5 else max_chars
    return text[:cut].rstrip()


def in_parts(text: str, max_chars: int) -> list[str]:
    """`text` whole, in parts of at most `max_chars`, each cut where `fitting_part` cuts (after a sentence)."""
    parts: list[str] = []
    rest = text
    while rest:
        part = fitting_part(rest, max_chars)
        parts.append(part)
        rest = rest[len(part):].strip()
    return parts


def kept_description(turn: Turn, text: str) -> str:
    """`text` as the draft's description (`clean_description`). A text over the limit is kept as far as it fits
    (`fitting_part`), and the resident told how much was kept and where the rest, not kept, begins: they still have
    it in their chat, to put in when they check the summary or add after submitting. A text too short raises."""
    limits = turn.ctx.city.limits
    try:
        return clean_description(text, limits.description_min_chars, limits.description_max_chars)
    except Invalid as problem:
        if problem.text_key != "error_description_long":
            raise
    whole = readable(text)
    kept = fitting_part(whole, limits.description_max_chars)
    rest = whole[len(kept):].strip()
    # checked before it is said to be kept: a part that cannot be a description (one character over and over) is
    # refused with its own reason, never "kept" and refused in one answer
    description = clean_description(kept, limits.description_min_chars, limits.description_max_chars)
    turn.say(turn.t("description_cut", length=len(whole), limit=limits.description_max_chars, kept=len(kept),
                    left=len(rest), rest=rest[:QUOTED]))
    return description
