"""Texts in Chinese and English, from TOML files that a city's configuration may override.

A text may have a variant for one channel, `<key>_on_<channel>` (`ask_evidence_on_wechat`: WeChat's residents
cannot send a PDF or press a button), used on that channel unless the city overrides the text but not its variant.

A count's noun agrees with it: `{count} {count:plural:file|files}` reads "1 file", "3 files" (the word before
the bar for exactly 1, the other for any other value)."""

from __future__ import annotations

import re
import string
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

LOCALES = ("zh", "en")
LOCALES_DIR = Path(__file__).with_name("locales")


def normalise_locale(language_code: str | None, default: str = "zh") -> str:
    """Map a client's language tag (Telegram's `language_code`, a browser's) to one of ours."""
    if not language_code:
        return default
    tag = language_code.strip().lower().replace("_", "-")
    if tag.startswith("zh"):
        return "zh"
    if tag.startswith("en"):
        return "en"
    return default


_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def written_language(text: str, english_words: int = 4) -> str | None:
    """The language a resident's message is plainly written in: "zh" for at least four Chinese characters that
    outweigh its Latin letters (a place name in pinyin may come with it), "en" for at least `english_words` English
    words without any Chinese character; None for anything shorter or mixed ("好的", "ok", "3", "IFS 国金中心")."""
    chinese = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    words = _LATIN_WORD.findall(text)
    if chinese >= 4 and chinese * 2 >= sum(len(word) for word in words):
        return "zh"
    if not chinese and len(words) >= english_words:
        return "en"
    return None


class _Formatter(string.Formatter):
    """`str.format`, and the `plural:one|many` format of a count."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if format_spec.startswith("plural:"):
            one, _, many = format_spec.removeprefix("plural:").partition("|")
            return one if value == 1 else many
        return super().format_field(value, format_spec)


FORMATTER = _Formatter()


def fill(template: str, **values: object) -> str:
    """`template` with `values` filled in, its plurals agreeing with their counts."""
    return FORMATTER.format(template, **values)


@cache
def bundled(locale: str) -> dict[str, str]:
    """The product's own texts in `locale` (before a city's overrides)."""
    with (LOCALES_DIR / f"{locale}.toml").open("rb") as handle:
        return {str(k): str(v) for k, v in tomllib.load(handle).items()}


class Texts:
    def __init__(self, overrides: dict[str, dict[str, str]] | None = None) -> None:
        self._tables = {locale: {**bundled(locale), **(overrides or {}).get(locale, {})} for locale in LOCALES}
        missing = set(self._tables["zh"]) ^ set(self._tables["en"])
        if missing:
            raise ValueError(f"texts missing in one language: {sorted(missing)}")
        # a channel's variant of a text the city rewrote, the variant left as bundled, would undo the city's words
        self._shadowed = {locale: {key for key in table if key.split("_on_")[0] in (overrides or {}).get(locale, {})
                                   and key not in (overrides or {}).get(locale, {})}
                          for locale, table in self._tables.items()}

    def get(self, locale: str, key: str, **values: object) -> str:
        """The text `key` in `locale` (Chinese for a language we do not have)."""
        return self.get_on(None, locale, key, **values)

    def get_on(self, channel: str | None, locale: str, key: str, **values: object) -> str:
        """The text `key` in `locale`, its variant for `channel` where there is one."""
        if locale not in self._tables:
            locale = "zh"
        table = self._tables[locale]
        variant = f"{key}_on_{channel}" if channel else None
        template = table[variant] if variant in table and variant not in self._shadowed[locale] else table[key]
        return fill(template, **values) if values else template

    def keys(self) -> set[str]:
        return set(self._tables["zh"])


def placeholders(template: str) -> set[str]:
    """The names a text fills in ("{city}" → city; "{}" → ""); ValueError for a brace that is not closed."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
