"""A quality check of a staff answer before it is sent: relevance, completeness, clarity and timeliness.

Each part is a number in [0, 1] (higher is better) with reasons that name what is missing. `score_reply` needs
no model: words come from `nlp.tokenizer.tokenize`, word weights from the inverse document frequencies that jieba
ships for its keyword extraction (`jieba/analyse/idf.txt`, read as a file; only its common words are kept in
memory, every other word gets the table's median, as `jieba.analyse` does).

- **Relevance** = 0.6 · coverage + 0.4 · min(1, cosine / 0.25). The report's key phrases are its 8 words of
  highest TF-IDF (adjacent key words joined: 社保 + 窗口 → 社保窗口) and its counted quantities (四次, 3个月,
  2000元), which weigh as much as its heaviest key phrase; coverage is the IDF-weighted share of them that the
  reply mentions, and cosine is the TF-IDF cosine of the two texts' words.
- **Completeness**: does the reply say what was found (经查/调查/核实…), what was done (已责令/整改/处理…), on which
  basis (根据《…》/依据/规定…) and whom to contact (电话/联系/咨询/致电/拨打 with a number)? Weights 0.3, 0.3, 0.2, 0.2.
  An English reply answers the same questions in its words (investigated/found that…, ordered/rectified/
  disciplined…, according to/under Article…/regulations…, call/phone/contact/hotline with a number).
- **Clarity** starts at 1 and loses 0.4 for a reply under 30 characters, up to 0.3 for sentences averaging over
  60 characters, up to 0.3 for courtesy sentences (您好/感谢/此复…) beyond a third of the reply, and 0.1 for a
  reply over 1,500 characters.
- **Timeliness**: working days (`is_working_day`: Monday–Friday unless the caller passes a city's calendar) after
  the day of receipt up to the day of the reply, against `deadline_working_days` (default 15): 1 within the
  deadline, then falling linearly to 0 at twice the deadline. None when either time is unknown.
- **score** = weighted mean: relevance 0.35, completeness 0.3, clarity 0.15, timeliness 0.2 (without timeliness
  the others are re-weighted).

Reasons are `Reason(code, params)` objects that render in Chinese or English (`Reason.text(locale)`); the console
shows them, the CLI writes the Chinese texts. docs/mining.md has the method's figures on real replies.
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from nlp.tokenizer import normalise, tokenize

DEFAULT_DEADLINE_WORKING_DAYS = 15
KEYWORDS = 8
MAX_NAMED_MISSING = 5
COMMON_IDF_CUTOFF = 9.5  # words of lower IDF are kept in memory; the rest are "rare" (the median)
COSINE_SATURATION = 0.25
WEIGHTS = {"relevance": 0.35, "completeness": 0.3, "clarity": 0.15, "timeliness": 0.2}

_FINDINGS = re.compile(r"经查|经调查|调查|核实|核查|经核|查明|经了解|了解到|现场查看|实地查看|走访|排查|检查发现")
_ACTIONS = re.compile(
    r"已责令|责令|已处理|处理|整改|已督促|督促|已安排|已协调|协调|立案|处罚|罚款|已要求|已派|已完成|已解决|拆除|"
    r"已下达|约谈|已通知|已移交|移送|清理|修复|维修|已办理|已发放|已落实|已纳入|将于|"
    r"批评教育|调离|诫勉|通报批评|问责|处分|警告|停职|免职|退还|追回"
)
_BASIS = re.compile(
    r"根据《|依据《|按照《|《[^》]{2,40}》|规定|第[一二三四五六七八九十百零\d]+条|政策|法律|法规|条例|办法"
)
_CONTACT_WORD = re.compile(r"电话|联系|咨询|垂询|热线|来电|致电|来访|窗口|拨打")
# The same four questions of an English answer (the text is lower-cased by `normalise`), word by word.
_FINDINGS_EN = re.compile(
    r"\b(?:investigat\w*|inquir(?:y|ies|ed)|looked into|verif\w*|checked|inspect\w*|examined|found that|we found|"
    r"it was found|established that|confirmed that|site visit|visited)\b")
_ACTIONS_EN = re.compile(
    r"\b(?:ordered|required|instructed|told to|rectif\w*|fined|penal\w*|punished|disciplined|warned|reprimanded|"
    r"suspended|dismissed|removed|transferred|refunded|returned|recovered|repaired|fixed|cleaned|demolished|"
    r"corrected|resolved|settled|issued|processed|arranged|handled|dealt with|took action|has been done|"
    r"will be (?:completed|fixed|repaired|removed|resolved))\b")
_BASIS_EN = re.compile(
    r"\b(?:according to|in accordance with|pursuant to|under (?:the )?(?:article|section|law|regulations?|rules?)|"
    r"article \d+|section \d+|regulations?|rules|provisions?|law|laws|policy|policies|measures)\b")
_CONTACT_WORD_EN = re.compile(r"\b(?:call|phone|telephone|tel|contact|hotline|dial|ring|enquir\w*)\b")
_PHONE = re.compile(r"(?<!\d)(?:\d{3,4}-?\d{7,8}|1\d{10}|\d{5,8}|12345)(?!\d)")
_COURTESY = re.compile(
    r"您好|你好|感谢|谢谢|收悉|此复|特此|祝您|敬请|理解|支持|关心|信任|欢迎|如有疑问|再次|网友|留言|现将|答复如下|回复如下"
)
_SENTENCE_END = re.compile(r"[。！？!?；;\n]+")
_CLAUSE_END = re.compile(r"[。！？!?；;，,：:\n]+")
_LATIN_WORD = re.compile(r"[a-z0-9]+")
_ENGLISH_STOP = frozenset("a an the and or of to in on at for with by from is are was were be been has have had it "
                          "its this that my me i we our you your he she they them his her who which when".split())
_QUANTITY = re.compile(
    r"[0-9一二三四五六七八九十两百千万几]+(?:个多?|多)?(?:次|趟|回|天|日|个月|月|年|周|星期|小时|元|万元|块|人|户|家|栋|层|米|公里)"
)
_CJK = re.compile(r"[\u4e00-\u9fff]")

_idf_lock = threading.Lock()
_idf: dict[str, float] | None = None
_median_idf = 11.7


@dataclass(frozen=True)
class Reason:
    """A reason with its parameters; `text(locale)` renders it ("zh" or "en")."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, locale: str = "zh") -> str:
        template = _TEMPLATES[self.code][0 if locale == "zh" else 1]
        values = dict(self.params)
        if "phrases" in values:
            values["phrases"] = ("、" if locale == "zh" else ", ").join(values["phrases"])
        return template.format(**values)


_TEMPLATES: dict[str, tuple[str, str]] = {
    "missing_phrases": ("答复未提及报告中的：{phrases}", "does not mention the report's {phrases}"),
    "off_topic": ("答复与报告内容关联很弱", "hardly relates to the report"),
    "no_findings": ("未说明调查核实的情况", "does not say what was found"),
    "no_action": ("未说明采取了哪些措施", "does not say what was done"),
    "no_basis": ("未给出政策或法律依据", "gives no legal or policy basis"),
    "no_contact": ("未提供联系方式", "gives no contact"),
    "too_short": ("答复过短（{chars}字）", "is very short ({chars} characters)"),
    "too_long": ("答复过长（{chars}字）", "is very long ({chars} characters)"),
    "long_sentences": ("句子过长（平均{chars}字）", "has long sentences ({chars} characters on average)"),
    "boilerplate": ("客套话占{percent}%", "is {percent}% courtesy phrases"),
    "late": ("用时{days}个工作日，超过期限{deadline}个工作日", "took {days} working days, deadline {deadline}"),
}


@dataclass(frozen=True)
class ReplyScore:
    score: float
    relevance: float
    completeness: float
    clarity: float
    timeliness: float | None
    reasons: tuple[Reason, ...]
    working_days: int | None = None

    def reason_texts(self, locale: str = "zh") -> list[str]:
        return [reason.text(locale) for reason in self.reasons]

    def to_json(self, locale: str = "zh") -> dict[str, Any]:
        return {
            "score": round(self.score, 3),
            "relevance": round(self.relevance, 3),
            "completeness": round(self.completeness, 3),
            "clarity": round(self.clarity, 3),
            "timeliness": None if self.timeliness is None else round(self.timeliness, 3),
            "reasons": self.reason_texts(locale),
        }


def _idf_file() -> Path:
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jieba is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "analyse" / "idf.txt"


def _load_idf() -> dict[str, float]:
    global _idf, _median_idf
    if _idf is None:
        with _idf_lock:
            if _idf is None:
                common: dict[str, float] = {}
                values = []
                with _idf_file().open(encoding="utf-8") as lines:
                    for line in lines:
                        word, _, number = line.strip().partition(" ")
                        if not number:
                            continue
                        value = float(number)
                        values.append(value)
                        if value < COMMON_IDF_CUTOFF:
                            common[word] = value
                values.sort()
                _median_idf = values[len(values) // 2] if values else _median_idf
                _idf = common
    return _idf


def idf(word: str) -> float:
    return _load_idf().get(word, _median_idf)


def monday_to_friday(day: date) -> bool:
    """The working days of a text without a calendar: Monday to Friday."""
    return day.weekday() < 5


def working_days_between(received: date, replied: date,
                         is_working_day: Callable[[date], bool] = monday_to_friday) -> int:
    """Working days (by the caller's calendar: a city's holidays and make-up days are `handlers.routing`'s) after
    the day of receipt up to and including the reply's day."""
    if replied < received:
        raise ValueError("the reply is dated before the report")
    days = 0
    current = received + timedelta(days=1)
    while current <= replied:
        if is_working_day(current):
            days += 1
        current += timedelta(days=1)
    return days


def _weights(words: list[str]) -> dict[str, float]:
    counts = Counter(words)
    return {word: (1 + math.log(count)) * idf(word) for word, count in counts.items()}


def _cosine(first: Mapping[str, float], second: Mapping[str, float]) -> float:
    dot = sum(weight * second.get(word, 0.0) for word, weight in first.items())
    norm = math.sqrt(sum(v * v for v in first.values())) * math.sqrt(sum(v * v for v in second.values()))
    return dot / norm if norm else 0.0


def key_phrases(report: str) -> list[tuple[str, float]]:
    """The report's key phrases with their weights, most important first: its key words (words with a Chinese
    character, adjacent ones in the text joined) and its counted quantities."""
    text = normalise(report)
    words = tokenize(text)
    weights = _weights([word for word in words if len(word) >= 2 and _CJK.search(word)])
    chosen = {word for word, _ in sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:KEYWORDS]}
    phrases: dict[str, float] = {}
    run: list[str] = []

    def flush() -> None:
        if run:
            phrase = "".join(run)
            phrases[phrase] = max(phrases.get(phrase, 0.0), sum(weights[part] for part in run))
            run.clear()

    for word in words:
        if word not in chosen:
            flush()
        elif run and "".join([*run, word]) not in text:  # not adjacent in the text (a stop word between)
            flush()
            run.append(word)
        else:
            run.append(word)
    flush()
    # counted quantities (跑了四次, 等了3个月) are the report's facts: as heavy as its heaviest key phrase
    heaviest = max(phrases.values(), default=_median_idf)
    for match in _QUANTITY.finditer(text):
        phrases[match.group(0)] = heaviest
    # a phrase inside another one adds nothing: 社区 beside 白鹤社区, 一次 beside 一次性告知
    kept = [(phrase, weight) for phrase, weight in phrases.items()
            if not any(phrase != other and phrase in other for other in phrases)]
    return sorted(kept, key=lambda item: (-item[1], item[0]))


def _mentions(reply_text: str, reply_words: set[str], phrase: str) -> bool:
    if phrase in reply_text:
        return True
    parts = tokenize(phrase)
    return bool(parts) and all(part in reply_words for part in parts)


def _words(text: str) -> list[str]:
    """The words of a text for the cosine: jieba's Chinese words of two characters or more, and Latin words (lower
    case, without the commonest English function words)."""
    normalised = normalise(text)
    chinese = [word for word in tokenize(normalised) if _CJK.search(word)]
    latin = [word for word in _LATIN_WORD.findall(normalised.lower()) if word not in _ENGLISH_STOP]
    return chinese + latin


def _relevance(report: str, reply: str, reasons: list[Reason]) -> float:
    reply_text = normalise(reply)
    reply_words = tokenize(reply_text)
    phrases = key_phrases(report)
    if not phrases:  # no Chinese key words (an English report): the words' cosine alone says how related
        relevance = min(1.0, _cosine(_weights(_words(report)), _weights(_words(reply))) / COSINE_SATURATION)
        if relevance < 0.3:
            reasons.append(Reason("off_topic"))
        return relevance
    word_set = set(reply_words)
    missing = [(phrase, weight) for phrase, weight in phrases if not _mentions(reply_text, word_set, phrase)]
    total = sum(weight for _, weight in phrases)
    coverage = 1.0 - sum(weight for _, weight in missing) / total
    cosine = _cosine(_weights(tokenize(report)), _weights(reply_words))
    relevance = 0.6 * coverage + 0.4 * min(1.0, cosine / COSINE_SATURATION)
    if relevance < 0.3:
        reasons.append(Reason("off_topic"))
    if missing:
        reasons.append(Reason("missing_phrases", {"phrases": [phrase for phrase, _ in missing[:MAX_NAMED_MISSING]]}))
    return relevance


def _completeness(reply: str, reasons: list[Reason]) -> float:
    text = normalise(reply)
    contact = any(_PHONE.search(text[max(0, m.start() - 30):m.end() + 40])
                  for words in (_CONTACT_WORD, _CONTACT_WORD_EN) for m in words.finditer(text))
    parts = [
        (bool(_FINDINGS.search(text) or _FINDINGS_EN.search(text)), 0.3, "no_findings"),
        (bool(_ACTIONS.search(text) or _ACTIONS_EN.search(text)), 0.3, "no_action"),
        (bool(_BASIS.search(text) or _BASIS_EN.search(text)), 0.2, "no_basis"),
        (contact, 0.2, "no_contact"),
    ]
    for present, _, code in parts:
        if not present:
            reasons.append(Reason(code))
    return sum(weight for present, weight, _ in parts if present)


def _clarity(reply: str, reasons: list[Reason]) -> float:
    text = normalise(reply)
    chars = len(re.sub(r"\s", "", text))
    clarity = 1.0
    if chars < 30:
        clarity -= 0.4
        reasons.append(Reason("too_short", {"chars": chars}))
    elif chars > 1500:
        clarity -= 0.1
        reasons.append(Reason("too_long", {"chars": chars}))
    sentences = [sentence for sentence in _SENTENCE_END.split(text) if sentence.strip()]
    if sentences:
        mean_length = sum(len(sentence) for sentence in sentences) / len(sentences)
        if mean_length > 60:
            clarity -= min(0.3, (mean_length - 60) / 200)
            reasons.append(Reason("long_sentences", {"chars": round(mean_length)}))
        # courtesy by clause: "您好，经核查，…" opens with a greeting, not a sentence of courtesy
        clauses = [clause for clause in _CLAUSE_END.split(text) if clause.strip()]
        courtesy = sum(len(clause) for clause in clauses if _COURTESY.search(clause))
        share = courtesy / max(1, sum(len(clause) for clause in clauses))
        if share > 1 / 3:
            clarity -= min(0.3, (share - 1 / 3) * 0.9)
            reasons.append(Reason("boilerplate", {"percent": round(100 * share)}))
    return max(0.0, clarity)


def _timeliness(received: datetime | None, replied: datetime | None, deadline: int,
                is_working_day: Callable[[date], bool], reasons: list[Reason]) -> tuple[float | None, int | None]:
    if received is None or replied is None:
        return None, None
    days = working_days_between(received.date(), replied.date(), is_working_day)
    if days <= deadline:
        return 1.0, days
    reasons.append(Reason("late", {"days": days, "deadline": deadline}))
    return max(0.0, 1.0 - (days - deadline) / deadline), days


def score_reply(report_text: str, reply: str, *, received: datetime | None = None, replied: datetime | None = None,
                deadline_working_days: int | None = None,
                is_working_day: Callable[[date], bool] = monday_to_friday) -> ReplyScore:
    """The quality of `reply` as an answer to `report_text` (module docstring)."""
    reasons: list[Reason] = []
    relevance = _relevance(report_text, reply, reasons)
    completeness = _completeness(reply, reasons)
    clarity = _clarity(reply, reasons)
    deadline = deadline_working_days or DEFAULT_DEADLINE_WORKING_DAYS
    timeliness, days = _timeliness(received, replied, deadline, is_working_day, reasons)
    parts = {"relevance": relevance, "completeness": completeness, "clarity": clarity, "timeliness": timeliness}
    weighted = {name: value for name, value in parts.items() if value is not None}
    total_weight = sum(WEIGHTS[name] for name in weighted)
    score = sum(WEIGHTS[name] * value for name, value in weighted.items()) / total_weight
    return ReplyScore(score, relevance, completeness, clarity, timeliness, tuple(reasons), days)
