"""Checks of what a resident typed. Each returns the cleaned value or raises `Invalid` with a text key."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date

from nlp.tokenizer import normalise
from storage.receipts import parse_receipt_code


def whole_number(text: str) -> int | None:
    """The number a text of the digits 0–9 spells (a form field, a protocol's number); None for anything else.
    `str.isdigit` alone also passes "²" and "①", which `int` refuses."""
    return int(text) if text.isascii() and text.isdigit() else None


def letters(text: str | None) -> str:
    """What a resident typed without emoji, marks, spaces or case, in simplified characters and half-width forms:
    "✅ 提交" and "提交" have the same letters, and so have "跳過" and "跳过" (a resident writing traditional
    characters), so typing an option's words answers it."""
    return "".join(ch for ch in normalise(text or "").casefold() if ch.isalnum())


def named_option(typed: str | None, options: Iterable[Sequence[str]]) -> str | None:
    """The key of the first [key, words] option whose letters `typed` are ("提交" names "✅ 提交"); None when it
    names none (or has no letters)."""
    typed_letters = letters(typed)
    if not typed_letters:
        return None
    return next((key for key, words in options if typed_letters == letters(words)), None)


_CHINESE_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ORDINAL = re.compile(r"^第?(.+?)(?:个|项|条|号)?[。.]?$")


def typed_number(text: str) -> int | None:
    """A number as a resident types it: the full-width "３" and the circled "②" of a phone's Chinese keyboard
    read as 3 and 2 (NFKC); in Chinese numerals up to 99 ("三", "十二"), and as an ordinal ("第三个", "3号")."""
    typed = unicodedata.normalize("NFKC", text.strip())
    ordinal = _ORDINAL.match(typed)
    spelled = ordinal.group(1) if ordinal else typed
    return whole_number(spelled) if whole_number(spelled) is not None else _chinese_number(spelled)


def _chinese_number(text: str) -> int | None:
    """1–99 in Chinese numerals: 三, 十, 十二, 二十, 二十三 (两 for 2 on its own)."""
    if text in _CHINESE_NUMERALS:
        return _CHINESE_NUMERALS[text]
    tens, ten, units = text.partition("十")
    if not ten or (tens and tens not in "一二三四五六七八九") or (units and units not in "一二三四五六七八九"):
        return None
    return _CHINESE_NUMERALS.get(tens, 1) * 10 + _CHINESE_NUMERALS.get(units, 0)


__all__ = [
    "Invalid",
    "clean_description",
    "clean_name",
    "clean_occurred",
    "clean_phone",
    "clean_place",
    "join_parts",
    "letters",
    "named_option",
    "names_a_date",
    "parse_receipt_code",
    "readable",
    "says_enough",
    "sniff_media_type",
]


class Invalid(ValueError):
    def __init__(self, text_key: str, **values: object) -> None:
        super().__init__(text_key)
        self.text_key = text_key
        self.values = values


HIDDEN = frozenset("\u061c\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
                   "\u2066\u2067\u2068\u2069\ufeff")
"""Format characters that change how a text reads without being seen: bidirectional marks, embeddings, overrides
and isolates, zero-width spaces and joiners of words, the byte-order mark. (The zero-width joiner and non-joiner,
U+200D and U+200C, stay: emoji sequences and some scripts need them.)"""


def readable(text: str) -> str:
    """A text as it is stored and shown: NFC, line breaks as "\n", without control characters (tab and line break
    aside) and the invisible `HIDDEN` ones, stripped. Empty when nothing visible is left."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) != "Cc" and ch not in HIDDEN))
    return text.strip()


def substance(text: str) -> int:
    """Letters, digits and Chinese characters: what counts as content (not spaces, marks or emoji)."""
    return sum(1 for ch in text if ch.isalnum())


def clean_place(text: str, max_chars: int) -> str:
    value = readable(text)
    if substance(value) < 2:
        raise Invalid("error_place_short")
    if len(value) > max_chars:
        raise Invalid("error_too_long", limit=max_chars, length=len(value))
    return value


_ISO_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_YEAR_MONTH = re.compile(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月(?!\s*\d)")  # "2026年10月"
_MONTH_DAY = re.compile(r"(?<![\d年/.-])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")  # "12月30日", "2月3号"


def names_a_date(text: str) -> bool:
    """Whether `text` names a day or month of the calendar ("2026-11-30", "2026年10月", "3月5日"): a time that says
    its date already, whatever words of time are beside it."""
    return any(pattern.search(text) for pattern in (_ISO_DATE, _YEAR_MONTH, _MONTH_DAY))


_FUTURE_WORDS = re.compile(r"明天|后天|明早|明晚|下周|下星期|下个?礼拜|下个?月|明年"
                           r"|\b(?:tomorrow|next (?:week|month|year))\b", re.IGNORECASE)
_TIME_CUE = re.compile(
    r"[0-9零〇一二三四五六七八九十百两半几今昨前后日号月年周期礼拜早晚午夜时旬节假季春夏秋冬久近每刚]"
    r"|当天|那天|那次|上次|上回|当时|平时|至今|现在|目前|以来|后来|从来|一直|经常|多次|反复|长期"
    r"|记不|忘|不清|不知|不确定|说不准"
    r"|\b(?:today|yesterday|tonight|ago|last|this|earlier|recent(?:ly)?|days?|weeks?|weekends?|months?|years?"
    r"|hours?|minutes?|morning|afternoon|evening|night|noon|midnight|since|every|often|always|now|before|after"
    r"|during|once|twice|jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t|tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?"
    r"|thu(?:rs|rsday)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?|christmas|spring|summer|autumn|fall|winter"
    r"|sure|remember|forget|forgot|know|idea|unsure)\b",
    re.IGNORECASE)
"""Something that tells a time, however roughly: a number, a word of dates, times, seasons or how often, or not
remembering. The time question takes the resident's own words, so this only catches an answer that is plainly not
a time (a place typed at the wrong question, a greeting)."""


_PLACE_NUMBER = re.compile(r"[0-9零〇一二三四五六七八九十百两]+\s*(?:楼|层|栋|幢|单元|室|号?窗口|号?楼|号?门)")
"""A number that says where, not when ("二楼", "3号窗口", "5栋"): no time cue by itself."""


def clean_occurred(text: str, today: date) -> str:
    value = readable(text)
    if substance(value) < 1:
        raise Invalid("error_when_empty")
    if len(value) > 100:
        raise Invalid("error_too_long", limit=100, length=len(value))
    if not _TIME_CUE.search(_PLACE_NUMBER.sub("", unicodedata.normalize("NFKC", value))):
        raise Invalid("error_when_no_time", value=value)
    for match in _ISO_DATE.finditer(value):
        try:
            mentioned = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise Invalid("error_when_bad_date", value=match.group(0)) from None
        if mentioned > today:
            raise Invalid("error_when_future", value=mentioned.isoformat())
    for match in _YEAR_MONTH.finditer(value):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise Invalid("error_when_bad_date", value=match.group(0))
        if (year, month) > (today.year, today.month):
            raise Invalid("error_when_future", value=match.group(0))
    for match in _MONTH_DAY.finditer(value):  # without a year: this year's, or last year's if still to come
        try:
            date(2024, int(match.group(1)), int(match.group(2)))  # a leap year: 2月29日 can be
        except ValueError:
            raise Invalid("error_when_bad_date", value=match.group(0)) from None
    future = _FUTURE_WORDS.search(value)
    if future:
        raise Invalid("error_when_future", value=future.group(0))
    return value


def says_enough(text: str | None, min_chars: int, max_chars: int) -> bool:
    """Whether `text` says as much as a report's description needs — or more than its limit, which whoever keeps
    it explains (`clean_description`): a text that is meant as information, not a word or a greeting."""
    if text is None:
        return False
    try:
        clean_description(text, min_chars, max_chars)
    except Invalid as problem:
        return problem.text_key == "error_description_long"
    return True


def clean_description(text: str, min_chars: int, max_chars: int) -> str:
    value = readable(text)
    if len(value) > max_chars:
        raise Invalid("error_description_long", limit=max_chars, length=len(value))
    letters = [ch for ch in value if ch.isalnum()]
    if len(letters) < min_chars or len(set(letters)) < min(5, min_chars):
        raise Invalid("error_description_short", minimum=min_chars)
    return value


def join_parts(first: str, rest: str) -> str:
    """A text the resident's app sent in parts, whole again. The platform drops the space or line break it was cut
    at: Chinese (or Japanese) on either side of the cut is joined as it is, other words with a space."""
    first, rest = first.rstrip(), rest.lstrip()
    if not first or not rest:
        return first + rest
    if _WITHOUT_SPACES.match(first[-1]) or _WITHOUT_SPACES.match(rest[0]):
        return first + rest
    return f"{first} {rest}"


_WITHOUT_SPACES = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


def clean_name(text: str) -> str:
    value = " ".join(readable(text).split())
    if any(ch.isdigit() for ch in value):
        raise Invalid("error_name_digits")
    if sum(1 for ch in value if ch.isalpha()) < 2 or len(value) > 40:
        raise Invalid("error_name_length")
    return value


_PHONE_NOISE = re.compile(r"[\s\-()（）]+")
_MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def clean_phone(text: str) -> str:
    value = _PHONE_NOISE.sub("", readable(text)).translate(str.maketrans("０１２３４５６７８９＋", "0123456789+"))
    for prefix in ("+86", "0086", "86"):
        if value.startswith(prefix) and len(value) == len(prefix) + 11:
            value = value[len(prefix) :]
            break
    if not _MAINLAND_MOBILE.match(value):
        raise Invalid("error_phone")
    return value


_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
)


def sniff_media_type(content: bytes) -> str | None:
    """The file's real type from its first bytes (not its name): the evidence types we accept."""
    for signature, offset, media_type in _SIGNATURES:
        if content[offset : offset + len(signature)] == signature:
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None
