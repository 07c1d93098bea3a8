"""The texts the console composes in Python (notices, errors, names of codes, chart titles, the digest), in
Chinese and English, from `console/locales/{zh,en}.toml`, read once per process.

Keys are `section.name` (`done.accepted`, `status.routed`). Staff see Chinese with the English beside it:
`pair` gives both, `joined` both in one line, `text` one language. A value that is itself said in each language
(a `Phrase`) is put in in the text's language.
"""

from __future__ import annotations

import tomllib
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import Any

from handlers.texts import fill

LOCALES = ("zh", "en")
LOCALES_DIR = Path(__file__).with_name("locales")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = str(value)
    return flat


def load_locale(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        return _flatten(tomllib.load(handle))


@cache
def _tables() -> dict[str, dict[str, str]]:
    tables = {locale: load_locale(LOCALES_DIR / f"{locale}.toml") for locale in LOCALES}
    missing = set(tables["zh"]) ^ set(tables["en"])
    if missing:
        raise ValueError(f"console texts missing in one language: {sorted(missing)}")
    return tables


def keys() -> set[str]:
    return set(_tables()["zh"])


def has(key: str) -> bool:
    return key in _tables()["zh"]


class Phrase(ABC):
    """A value of a text that is said in each language (a text's `{placeholder}` takes it in the text's)."""

    @abstractmethod
    def text(self, locale: str) -> str: ...

    def __str__(self) -> str:
        return self.text("en")


def get(locale: str, key: str, **values: object) -> str:
    template = _tables()[locale][key]
    if not values:
        return template
    return fill(template, **{name: value.text(locale) if isinstance(value, Phrase) else value  # with plurals
                             for name, value in values.items()})


@cache
def _zxcvbn_keys() -> dict[str, str]:
    """zxcvbn's English sentences (the English texts of `zxcvbn.*`) and their keys."""
    return {text: key for key, text in _tables()["en"].items() if key.startswith("zxcvbn.")}


def zxcvbn_sentence(locale: str, sentence: str) -> str:
    """One sentence of zxcvbn's advice on a password in `locale`; one these texts do not know (a newer zxcvbn's) is
    kept in English and said in general words in other languages."""
    key = _zxcvbn_keys().get(sentence)
    if key is not None:
        return get(locale, key)
    return sentence if locale == "en" else get(locale, "zxcvbn.unknown")


def pair(key: str, **values: object) -> tuple[str, str]:
    """(Chinese, English) of `key`."""
    return get("zh", key, **values), get("en", key, **values)


def pair_or(key: str, fallback: str) -> tuple[str, str]:
    """(Chinese, English) of `key`, or `fallback` twice when there is no such text (an unknown code)."""
    return pair(key) if has(key) else (fallback, fallback)


def joined(key: str, **values: object) -> str:
    """Chinese, a space, English: for messages shown as one line of text."""
    return " ".join(pair(key, **values))
