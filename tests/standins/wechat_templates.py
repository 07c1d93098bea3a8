"""Subscription-notice templates (订阅通知模板) of the stand-in WeChat account, and WeChat's value rules.

A template's keywords are named by their kind and a number (``thing1``, ``time3``,
``character_string2``); each kind limits what its value may hold. The rules below are the table
"参数值内容限制说明" of WeChat's subscription-message documentation — the service account's
``sendNewSubscribeMsg`` page (developers.weixin.qq.com/doc/service/api/notify/notify/
api_sendnewsubscribemsg.html, Body.data) lists the same kinds, and WeChat's community staff state the
limits are the same for mini programs and service accounts:

=================  =====================================================================
thing              20 characters at most: Chinese, digits, letters or symbols
number             32 at most, digits only, a decimal part allowed
letter             32 letters at most
symbol             5 symbols at most (common symbols other than Chinese, letters, digits)
character_string   32 at most: digits, letters or symbols
time               24-hour time (HH:MM or HH:MM:SS), optionally after a date; a period as
                   two points joined by "~"
date               a date (y年m月d日, y年m月, m月d日, or joined by "-", "/", "."),
                   optionally followed by a 24-hour time; a period joined by "~"
amount             one currency symbol + 10 digits at most, a decimal part allowed, may end in 元
phone_number       17 at most, digits and symbols
car_number         8 at most; first and last may be Chinese, the rest letters or digits
name               10 Chinese characters at most, or 20 letters or symbols at most
                   (Chinese mixed with letters counts as a Chinese name)
phrase             5 Chinese characters at most
=================  =====================================================================

"Symbols" exclude line breaks and other control characters. One Chinese character counts as one
character. Where the table is vague the stand-in takes the strict reading and says so: a space is
not a symbol (so ``1234 5678`` is not a valid ``character_string``; write ``1234-5678``), and an empty
value is invalid for every kind (WeChat: "模板参数不准确，可能为空或者不满足规则"). A bad value is answered
47003 ``argument invalid! data.<field>.value invalid``, the wording WeChat uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

KINDS = ("thing", "number", "letter", "symbol", "character_string", "time", "date", "amount", "phone_number",
         "car_number", "name", "phrase")
_NAME = re.compile(r"(?P<kind>" + "|".join(sorted(KINDS, key=len, reverse=True)) + r")(?P<number>\d+)")

_DATE_PATTERNS = [
    re.compile(r"(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日"),
    re.compile(r"(?P<y>\d{4})年(?P<m>\d{1,2})月"),
    re.compile(r"(?P<m>\d{1,2})月(?P<d>\d{1,2})日"),
    re.compile(r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})"),
    re.compile(r"(?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"),
]
_TIME = re.compile(r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?")


def is_chinese(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" or "\uf900" <= char <= "\ufaff"


def is_symbol(char: str) -> bool:
    """Punctuation or a symbol (Unicode categories P* and S*): no letters, digits, spaces or controls."""
    return unicodedata.category(char)[0] in "PS"


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _is_digit(char: str) -> bool:
    return char.isascii() and char.isdigit()


def _valid_date(text: str) -> bool:
    for pattern in _DATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        year = int(parts.get("y") or 2000)  # a leap year when the date has none, so 2月29日 passes
        month, day = int(parts["m"]), int(parts.get("d") or 1)
        try:
            date(year, month, day)
        except ValueError:
            return False
        return True
    return False


def _valid_clock(text: str) -> bool:
    match = _TIME.fullmatch(text)
    return match is not None and int(match["h"]) < 24 and int(match["mi"]) < 60 and int(match["s"] or 0) < 60


def _point(text: str, *, need_date: bool, need_time: bool) -> bool:
    """One point in time: [date][ ]time for ``time``, date[ ][time] for ``date``."""
    match = re.fullmatch(r"(?P<date>[^\s:]*?)\s?(?P<time>\d{1,2}:\d{2}(?::\d{2})?)?", text.strip())
    if match is None or text != text.strip():
        return False
    day, clock = match["date"], match["time"]
    if (need_date and not day) or (need_time and not clock) or not (day or clock):
        return False
    return (not day or _valid_date(day)) and (not clock or _valid_clock(clock))


def _period(text: str, *, need_date: bool, need_time: bool) -> bool:
    points = text.split("~")
    return len(points) <= 2 and all(_point(p, need_date=need_date, need_time=need_time) for p in points)


def _thing(v: str) -> bool:
    return len(v) <= 20 and all(c.isprintable() for c in v) and bool(v.strip())


def _number(v: str) -> bool:
    return len(v) <= 32 and re.fullmatch(r"\d+(\.\d+)?", v) is not None


def _name(v: str) -> bool:
    if any(is_chinese(c) for c in v):
        return len(v) <= 10 and all(is_chinese(c) or _is_letter(c) or c == "·" for c in v)
    return len(v) <= 20 and all(_is_letter(c) or is_symbol(c) or c == " " for c in v) and bool(v.strip())


def _car_number(v: str) -> bool:
    if not 2 <= len(v) <= 8:
        return False
    ends_ok = all(is_chinese(c) or (c.isascii() and c.isalnum()) for c in (v[0], v[-1]))
    return ends_ok and all(c.isascii() and c.isalnum() for c in v[1:-1])


RULES: dict[str, Callable[[str], bool]] = {
    "thing": _thing,
    "number": _number,
    "letter": lambda v: len(v) <= 32 and all(_is_letter(c) for c in v),
    "symbol": lambda v: len(v) <= 5 and all(is_symbol(c) for c in v),
    "character_string": lambda v: len(v) <= 32 and all(_is_letter(c) or _is_digit(c) or is_symbol(c) for c in v),
    "time": lambda v: _period(v, need_date=False, need_time=True),
    "date": lambda v: _period(v, need_date=True, need_time=False),
    "amount": lambda v: re.fullmatch(r"[¥￥$€£]?\d{1,10}(\.\d+)?元?", v) is not None,
    "phone_number": lambda v: len(v) <= 17 and all(_is_digit(c) or is_symbol(c) for c in v),
    "car_number": _car_number,
    "name": _name,
    "phrase": lambda v: len(v) <= 5 and all(is_chinese(c) for c in v),
}


def kind_of(name: str) -> str:
    """The kind of a template keyword (``thing1`` → ``thing``); ValueError for a name WeChat never uses."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a template keyword (kind + number, e.g. thing1, character_string2)")
    return match["kind"]


def value_ok(kind: str, value: object) -> bool:
    """Whether WeChat accepts ``value`` for a keyword of ``kind``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    if not isinstance(value, str) and kind != "number":
        return False
    text = str(value)
    return bool(text) and RULES[kind](text)


@dataclass(frozen=True)
class SubscribeTemplate:
    """A template the account selected from the public library (选用模板), as ``gettemplate`` lists it."""

    template_id: str
    title: str
    fields: dict[str, str]
    """keyword name → kind, in display order"""
    labels: dict[str, str] = field(default_factory=dict)
    long_term: bool = False
    """type 3 (长期订阅, open to government and public-service accounts) or type 2 (一次性订阅)"""

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def content(self) -> str:
        return "".join(f"{self.label(name)}:{{{{{name}.DATA}}}}\n" for name in self.fields)

    def data_problem(self, data: object) -> str | None:
        """WeChat's 47003 errmsg for ``data`` of a bizsend call, or None when every keyword fits."""
        if not isinstance(data, dict):
            return "argument invalid! data is not an object"
        for name in data:
            if name not in self.fields:
                return f"argument invalid! data.{name} is not a keyword of the template"
        for name, kind in self.fields.items():
            entry = data.get(name)
            if not isinstance(entry, dict) or "value" not in entry:
                return f"argument invalid! data.{name}.value is empty"
            if not value_ok(kind, entry["value"]):
                return f"argument invalid! data.{name}.value invalid"
        return None

    def render(self, values: dict[str, str]) -> str:
        """The notice as the user reads it: the title, then one "label: value" line per keyword."""
        return "\n".join([self.title, *(f"{self.label(name)}: {values[name]}" for name in self.fields)])
