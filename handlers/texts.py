"""Texts in Chinese and English, from TOML files that a city's configuration may override."""

from __future__ import annotations

import string
import tomllib
from functools import cache
from pathlib import Path

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

    def get(self, locale: str, key: str, **values: object) -> str:
        table = self._tables.get(locale) or self._tables["zh"]
        template = table[key]
        return template.format(**values) if values else template

    def keys(self) -> set[str]:
        return set(self._tables["zh"])


def placeholders(template: str) -> set[str]:
    """The names a text fills in ("{city}" → city; "{}" → ""); ValueError for a brace that is not closed."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
