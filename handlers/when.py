"""The day, week, month or year a resident's words for a time name relative to today ("昨天下午", "上週三", "3天前",
"上个月", "last Monday", "2 days ago"), written beside the words as the buttons "今天"/"昨天" store it: a case read
weeks later still says which day was meant. Words that name no day ("最近", "前几天", "记不清") name nothing here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from handlers.validation import Invalid, names_a_date, typed_number
from nlp.tokenizer import normalise


@dataclass(frozen=True)
class Named:
    """What some words of a time name: the days from `first` to `last`, written as a day, a week's days, a month
    ("2026-11") or a year ("2026")."""

    words: str
    first: date
    last: date
    unit: str  # "day", "days", "month" or "year"

    def label(self) -> str:
        if self.unit == "year":
            return str(self.first.year)
        if self.unit == "month":
            return f"{self.first.year:04d}-{self.first.month:02d}"
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()} – {self.last.isoformat()}"


def dated(text: str, today: date) -> str:
    """`text` (a time as the resident typed it, already checked) with the dates its words name added in brackets:
    "昨天下午 (2026-11-23)", "上周 (2026-11-16 – 2026-11-22)", "上个月 (2026-10)". A text that names a date of the
    calendar already, or no day at all, is returned as it is; words that name a time still to come are refused
    (`Invalid("error_when_future")`), as a date still to come is."""
    if names_a_date(text):
        return text
    labels: list[str] = []
    for named in named_times(text, today):
        if named.first > today:
            raise Invalid("error_when_future", value=named.words)
        if named.label() not in labels:
            labels.append(named.label())
    return f"{text} ({', '.join(labels)})" if labels else text


_NUMBER = r"(?<![0-9零〇一二两三四五六七八九十几])([0-9]{1,3}|[一二两三四五六七八九十]{1,3})"
_ENGLISH_NUMBER = r"\b(\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_ENGLISH_NUMBERS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())} | {"a": 1, "an": 1}
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "1": 0, "2": 1, "3": 2, "4": 3,
             "5": 4, "6": 5, "7": 6, "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4,
             "saturday": 5, "sunday": 6}
_WEEK = r"(?:周|星期|礼拜)"
_WEEKDAY = (r"一(?![直起样共般定些点切次遍回趟个])|[二三四五六](?![次遍回趟个天])|日|天(?!天)"
            r"|[1-7](?![0-9次遍回趟个天])")
"""The day of a week after "周", "星期" or "礼拜" — not "上周一直…" (all last week), "这周三次" (three times)."""
_ENGLISH_WEEKDAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_NOT_AFTER_WORD = r"(?<![早晚马])"  # "晚上周三" is Wednesday evening, not last week's Wednesday
_NOT_AFTER_BEFORE = r"(?<![以之提目眼跟面])"  # "以前天天排队", "以前年轻时": formerly, not the day before yesterday
_NOT_IN_A_RANGE = r"(?<![到至~\-–—])(?<![到至~\-–—] )(?<!to )(?<!through )(?<!until )(?<!till )"
_NOT_A_RANGE_START = r"(?!\s?(?:到|至|~|-|–|—|to\b|through\b|until\b|till\b))"
""""周一到周五", "Monday to Friday": working days, none of them one day that was meant."""
_PREFIX_STEPS = {"上上": -2, "上": -1, "这": 0, "本": 0, "下": 1, "下下": 2, "last": -1, "this": 0, "next": 1}

Span = tuple[date, date, str]
_Resolver = Callable[[re.Match[str], date], "Span | None"]


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _day(offset: int) -> _Resolver:
    def resolve(_match: re.Match[str], today: date) -> Span:
        day = today + timedelta(days=offset)
        return day, day, "day"
    return resolve


def _year(offset: int) -> _Resolver:
    def resolve(_match: re.Match[str], today: date) -> Span:
        return date(today.year + offset, 1, 1), date(today.year + offset, 12, 31), "year"
    return resolve


def _count(text: str) -> int | None:
    number = int(text) if text.isdigit() else _ENGLISH_NUMBERS.get(text, typed_number(text))
    return number or None  # "0天前" names no day anyone means


def _week_of(day: date, today: date) -> Span:
    """The week (Monday to Sunday) of `day`, as far as it has come."""
    monday = _monday(day)
    return monday, min(monday + timedelta(days=6), max(today, monday)), "days"


def _days_ago(match: re.Match[str], today: date) -> Span | None:
    count = _count(match.group(1))
    return None if count is None else _day(-count)(match, today)


def _weeks_ago(match: re.Match[str], today: date) -> Span | None:
    count = _count(match.group(1))
    return None if count is None else _week_of(today - timedelta(weeks=count), today)


def _month(offset: int, today: date) -> Span:
    months = today.year * 12 + today.month - 1 + offset
    first = date(months // 12, months % 12 + 1, 1)
    return first, first, "month"


def _months_ago(match: re.Match[str], today: date) -> Span | None:
    count = _count(match.group(1))
    return None if count is None else _month(-count, today)


def _years_ago(match: re.Match[str], today: date) -> Span | None:
    count = _count(match.group(1))
    return None if count is None else _year(-count)(match, today)


def _prefixed_week(match: re.Match[str], today: date) -> Span:
    """"上周", "上上周三", "这个星期天", "本周末", "last week", "this Friday", "next weekend": a week counted from this
    one (Monday to Sunday), or one of its days or its weekend."""
    monday = _monday(today) + timedelta(weeks=_PREFIX_STEPS[match.group(1)])
    which = match.group(2)
    if which in ("末", "weekend"):
        saturday = monday + timedelta(days=5)
        return saturday, min(saturday + timedelta(days=1), max(today, saturday)), "days"
    if which in _WEEKDAYS:
        day = monday + timedelta(days=_WEEKDAYS[which])
        return day, day, "day"
    return _week_of(monday, today)


def _last_weekday(match: re.Match[str], today: date) -> Span:
    """"last Monday": the latest Monday before today."""
    day = today - timedelta(days=(today.weekday() - _WEEKDAYS[match.group(1)] - 1) % 7 + 1)
    return day, day, "day"


def _weekday(match: re.Match[str], today: date) -> Span:
    """"周三", "Wednesday" alone: the latest Wednesday not after today."""
    day = today - timedelta(days=(today.weekday() - _WEEKDAYS[match.group(1)]) % 7)
    return day, day, "day"


def _weekend(_match: re.Match[str], today: date) -> Span:
    """"周末", "at the weekend" alone: the latest weekend that has begun (today's, on a Saturday or Sunday)."""
    saturday = today - timedelta(days=(today.weekday() - 5) % 7)
    return saturday, min(saturday + timedelta(days=1), today), "days"


def _prefixed_month(match: re.Match[str], today: date) -> Span:
    return _month(_PREFIX_STEPS[match.group(1)], today)


def _prefixed_year(match: re.Match[str], today: date) -> Span | None:
    return _year(_PREFIX_STEPS[match.group(1)])(match, today)


_TIMES: tuple[tuple[str, _Resolver], ...] = (
    # Chinese as `normalise` writes it: simplified ("上週三" → "上周三"), half-width digits ("３天前" → "3天前")
    (rf"{_NUMBER}\s*个?\s*天\s*[之以]?前", _days_ago),
    (rf"{_NUMBER}\s*个?\s*{_WEEK}\s*[之以]?前", _weeks_ago),
    (rf"{_NUMBER}\s*个\s*月\s*[之以]?前", _months_ago),  # "3月前" may be before March
    (rf"{_NUMBER}\s*年\s*[之以]?前", _years_ago),
    (rf"{_NOT_AFTER_BEFORE}大前天", _day(-3)),
    (rf"{_NOT_AFTER_BEFORE}前(?:天|日)", _day(-2)),
    (r"昨", _day(-1)),
    (r"今(?:天|日|早|晚|夜|晨|儿)", _day(0)),
    (r"(?<![说证表声发聪透精])明(?:天|日|早|晚)", _day(1)),
    (r"(?<![然之以最随过而落])大?后天", _day(2)),
    (rf"{_NOT_AFTER_BEFORE}大前年", _year(-3)),
    (rf"{_NOT_AFTER_BEFORE}前年", _year(-2)),
    (r"去年", _year(-1)),
    (r"今年", _year(0)),
    (r"明年", _year(1)),
    (rf"{_NOT_AFTER_WORD}(上上|上|这|本|下下|下)\s*个?\s*{_WEEK}\s*({_WEEKDAY}|末)?", _prefixed_week),
    (rf"{_NOT_AFTER_WORD}(上上|上|这|本|下下|下)\s*个?\s*月", _prefixed_month),
    (rf"(?<![0-9零〇一二两三四五六七八九十几每个某]){_NOT_IN_A_RANGE}{_WEEK}({_WEEKDAY}){_NOT_A_RANGE_START}",
     _weekday),
    (r"(?<![每个某])周末", _weekend),
    # English, lower-cased
    (r"\bthe day before yesterday\b", _day(-2)),
    (r"\byesterday\b|\blast night\b", _day(-1)),
    (r"\btoday\b|\btonight\b|\bthis (?:morning|afternoon|evening)\b", _day(0)),
    (r"\btomorrow\b", _day(1)),
    (rf"{_ENGLISH_NUMBER} days? ago\b", _days_ago),
    (rf"{_ENGLISH_NUMBER} weeks? ago\b", _weeks_ago),
    (rf"{_ENGLISH_NUMBER} months? ago\b", _months_ago),
    (rf"{_ENGLISH_NUMBER} years? ago\b", _years_ago),
    (r"\b(last|this|next) (week|weekend)\b", _prefixed_week),
    (rf"\blast {_ENGLISH_WEEKDAY}\b", _last_weekday),
    (rf"\b(this|next) {_ENGLISH_WEEKDAY}\b", _prefixed_week),
    (r"\b(last|this|next) month\b", _prefixed_month),
    (r"\b(last|this|next) year\b", _prefixed_year),
    (rf"(?<!every ){_NOT_IN_A_RANGE}\b(?:on )?{_ENGLISH_WEEKDAY}\b{_NOT_A_RANGE_START}", _weekday),
    (r"(?<!every )\b(?:the )?weekend\b", _weekend),
)
_COMPILED = tuple((re.compile(pattern), resolve) for pattern, resolve in _TIMES)
_ANY = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _TIMES))


def named_times(text: str, today: date) -> list[Named]:
    """The days each relative time in `text` names, in the order they are written (a time still to come too)."""
    normalised = normalise(text)
    found: list[Named] = []
    position = 0
    while (match := _ANY.search(normalised, position)) is not None:
        inner, resolve = next((inner, resolve) for pattern, resolve in _COMPILED  # the one the alternation chose
                              if (inner := pattern.match(normalised, match.start())) is not None)
        span = resolve(inner, today)
        if span is not None:
            words = text[match.start():match.end()] if len(normalised) == len(text) else match.group(0)
            found.append(Named(words, *span))
        position = max(match.end(), match.start() + 1)
    return found
