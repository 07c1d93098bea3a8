"""The report's later buttons answered in words a resident types, not only the buttons' whole labels: anonymous or
with a name ("实名举报", "real name", "还是匿名吧"), and a change asked for at the summary ("修改", "修改地点",
"change the place") or at the question of which item to change ("地点", "place", "返回")."""

from __future__ import annotations

from collections.abc import Sequence

from handlers.context import Turn
from handlers.validation import letters


def _words(turn: Turn, key: str) -> list[str]:
    """The letters of the words a text lists, longest first (so that "修改" is tried before "改")."""
    return sorted({letters(word) for word in turn.words(key)} - {""}, key=len, reverse=True)


def _item(turn: Turn, typed: str, fields: Sequence[str]) -> str | None:
    """The field whose label or words `typed` (letters only) is."""
    for field in fields:
        if typed == letters(turn.t(f"field_{field}")) or typed in _words(turn, f"field_{field}_words"):
            return field
    return None


def typed_change(turn: Turn, text: str | None, fields: Sequence[str], *, at_summary: bool) -> str | None:
    """The button `text` stands for: "edit:<field>" for an item named (with or without "修改" before it), "summary:edit"
    for "修改" alone at the summary, "edit:back" for "返回" at the question of which item; None for anything else."""
    typed = letters(text)
    if not typed:
        return None
    if not at_summary and typed in _words(turn, "edit_back_words"):
        return "edit:back"
    for verb in _words(turn, "summary_edit_words"):
        if typed.startswith(verb):
            rest = typed[len(verb):]
            for filler in _words(turn, "edit_filler_words"):  # "改成实名", "change the place"
                if rest.startswith(filler) and len(rest) > len(filler):
                    rest = rest[len(filler):]
                    break
            if not rest:
                return "summary:edit" if at_summary else None
            field = _item(turn, rest, fields)
            if field is not None:
                return f"edit:{field}"
    field = _item(turn, typed, fields)
    return f"edit:{field}" if field is not None else None


def typed_identity(turn: Turn, text: str | None, *, asked: bool) -> str | None:
    """"identity:anonymous" or "identity:real" for the words of either; `asked` at the question itself (step 6), else
    at the questions of the name and number, where only "anonymous" is an option (a name is any other text)."""
    typed = letters(text)
    if typed and typed in _words(turn, "identity_real_words"):  # first: "不匿名", "not anonymous"
        return "identity:real" if asked else None
    if typed and any(word in typed for word in _words(turn, "identity_anonymous_words")):
        return "identity:anonymous"
    return None
