"""The city configuration (TOML): what a city decides — districts, queues, routing, deadlines, limits,
texts. Validated here, with Changsha's configuration as the default; another city replaces the file."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handlers.texts import LOCALES, bundled, placeholders
from nlp.labels import LABELS

DEFAULT_CITY_CONFIG = Path(__file__).with_name("default_config.toml")


class _Section(BaseModel):
    """A part of the file: a key it does not know is a typo (max_attachmnets), refused, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(Exception):
    """A setting or the city configuration is invalid; the message is one line for the operator."""


class _AtKey(ValueError):
    """A mistake at `key` (parts below the place the validator checks): the operator is told that key, not only
    the section, and its line."""

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


def _not_blank(name: str) -> str:
    if not name.strip():
        raise ValueError("a name may not be blank")
    return name


Name = Annotated[str, AfterValidator(_not_blank)]
"""A name residents or staff read (a district's, a queue's, the city's): not empty, not only spaces."""


def _given_twice(values: list[str]) -> str | None:
    counts = Counter(values)
    return next((value for value in values if counts[value] > 1), None)


def _text_problem(locale: str, key: str, template: str) -> str | None:
    """Why a city's text `key` in `locale` cannot replace the product's (None if it can): an unknown key (a typo the
    dialog would never show), or a placeholder the dialog does not fill (every resident who reaches the text would
    get an error instead)."""
    own = bundled(locale)
    if key not in own:
        close = difflib.get_close_matches(key, own, n=1)
        return "unknown text" + (f"; did you mean {close[0]}?" if close else "")
    try:
        used = placeholders(template)
    except ValueError:
        return "a brace is not closed (write {{ and }} for a brace itself)"
    allowed = placeholders(own[key])
    unknown = sorted(used - allowed)
    if unknown:
        may = ("may use " + ", ".join(f"{{{name}}}" for name in sorted(allowed))) if allowed else "has no placeholders"
        names = ", ".join(f"{{{name}}}" for name in unknown)
        return f"unknown placeholder{'s' if len(unknown) > 1 else ''} {names}; this text {may}"
    return None


class District(_Section):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    zh: Name
    en: Name


class CannedReply(_Section):
    """A reply text a queue's staff start an answer from (read-only in the console; one without a title or a
    body is not offered); at most as long as the ones supervisors keep (storage.canned_replies)."""
    title: str = Field(default="", max_length=80)
    body: str = Field(default="", max_length=3000)


class Queue(_Section):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,59}$")]
    zh: Name
    en: Name
    #: a case is to be accepted by the end of this many working days after it enters the queue
    accept_within_working_days: int = Field(default=15, ge=1)
    #: ... and answered within this many calendar days (the 60 日 of the petition regulations) ...
    resolve_within_days: int = Field(default=60, ge=1)
    #: ... or, when set, by the end of this many working days (the city's holidays and make-up working days
    #: count as in `[console]`); it wins over `resolve_within_days`, which files from before it keep using
    resolve_within_working_days: int | None = Field(default=None, ge=1)
    telegram_chat_id: int | None = None
    #: replies offered to the queue's staff beside the ones supervisors keep in the console
    canned_replies: list[CannedReply] = Field(default_factory=list)
    wecom_webhook_env: Annotated[str | None, Field(pattern=r"^QINGLIAN_[A-Z0-9_]+$")] = None


class Console(_Section):
    identity_roles: list[Literal["reviewer", "supervisor", "admin"]] = ["supervisor", "admin"]
    session_hours: float = Field(default=8, gt=0)
    login_attempts: int = Field(default=5, ge=1)
    login_lock_minutes: int = Field(default=15, ge=1)
    digest_hour: int = Field(default=8, ge=0, le=23)
    holidays: list[date] = Field(default_factory=list)
    workdays_override: list[date] = Field(default_factory=list)


class Routing(_Section):
    """`label → queue`; a label mapped to the district placeholder routes by the reporter's district."""

    labels: dict[str, str]
    district_queue_prefix: str = "district_"
    district_placeholder: str = "@district"
    triage_queue: str = "triage"
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        unknown = [label for label in labels if label not in LABELS]
        if unknown:  # a typo would leave the real label unrouted: its reports would all go to triage
            raise _AtKey((unknown[0],), f"unknown label; the labels are {', '.join(LABELS)}")
        return labels


class Limits(_Section):
    description_min_chars: int = Field(default=10, ge=1)
    description_max_chars: int = Field(default=3000, ge=10)
    place_max_chars: int = Field(default=200, ge=10)
    max_attachments: int = Field(default=5, ge=0, le=20)
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    draft_ttl_days: int = Field(default=7, ge=1)
    #: evidence bytes an unsubmitted draft may hold, that the drafts from one client address may hold
    #: (where the channel knows it), and that all drafts together may hold; a file over a quota is refused
    #: with the reason and the draft goes on
    draft_evidence_bytes_per_conversation: int = Field(default=30 * 1024 * 1024, ge=1024)
    draft_evidence_bytes_per_address: int = Field(default=60 * 1024 * 1024, ge=1024)
    draft_evidence_bytes_total: int = Field(default=2 * 1024 * 1024 * 1024, ge=1024)
    #: hours after which a draft holding evidence files nobody came back to is discarded with its files
    #: (drafts without files last `draft_ttl_days`)
    draft_with_files_ttl_hours: int = Field(default=24, ge=1)
    status_wrong_codes: int = Field(default=5, ge=1)
    status_window_minutes: int = Field(default=10, ge=1)
    case_session_minutes: int = Field(default=30, ge=1)
    reports_per_day: int = Field(default=10, ge=1)
    #: reports filed from one client address (IPv6: one /64) within 24 hours; 0: no limit. Only where the
    #: channel knows the address (the web chat); behind a proxy see FORWARDED_ALLOW_IPS in docs/deploy.md
    reports_per_ip_per_day: int = Field(default=30, ge=0)
    #: wrong receipt codes from one client address within `status_window_minutes`; 0: no limit. A ceiling for
    #: an address used to attack, not the limit a resident meets: each resident (a web-chat cookie, a Telegram or
    #: WeChat user) is stopped at `status_wrong_codes` first, and what she sends while stopped is not counted
    #: here, so keep it an order of magnitude above `status_wrong_codes` (office and carrier NAT put many
    #: residents behind one address; reaching it refuses every code from there, valid ones included)
    status_wrong_codes_per_ip: int = Field(default=100, ge=0)
    #: wrong receipt codes within `status_window_minutes` arriving from one address of a messaging platform's
    #: servers (WeChat's callbacks): every resident of the platform shares these addresses, so the limit is
    #: far higher; it stops a forger who rotates user ids. 0: no limit
    status_wrong_codes_per_platform_address: int = Field(default=200, ge=0)
    contact_retention_days: int = Field(default=365, ge=1)
    #: hours a delivered message (emptied on delivery) is kept before it is deleted
    outbox_retention_hours: int = Field(default=24, ge=1)
    #: days a message given up on is kept (with the platform's reason, for staff) before it is deleted
    outbox_failed_retention_days: int = Field(default=30, ge=1)
    #: days after its last message when a conversation without a draft is deleted, with its messages
    conversation_retention_days: int = Field(default=365, ge=1)


NoticeEvent = Literal["accepted", "in_handling", "answered", "closed", "rejected", "duplicate", "more_info",
                      "extended", "reopened"]
TemplateItem = Literal["case_number", "status", "time", "summary"]


class WeChatNotices(_Section):
    """The Official Account's templates for notices outside WeChat's 48-hour window (docs/wechat.md)."""

    #: a subscription-notice template (订阅通知) chosen in the account's console; residents accept it in a
    #: pop-up. `subscribe_fields` maps what a notice says to the template's keywords, e.g.
    #: {case_number = "character_string1", status = "phrase2", time = "time3", summary = "thing4"}
    subscribe_template_id: str | None = None
    subscribe_fields: dict[TemplateItem, str] = Field(default_factory=dict)
    #: the template is a long-term subscription (政务民生 accounts): one accept allows any number of notices
    subscribe_long_term: bool = True
    #: a one-time subscription message template (一次性订阅消息): the bot offers its authorisation link after a
    #: report is submitted and after each status check; one consent lets one message about that case through
    once_template_id: str | None = None
    once_title: Annotated[str, Field(min_length=1, max_length=15)] = "举报办理进度"


class Notices(_Section):
    #: the events that reach a resident by a platform's notice when the reply window is closed; others wait
    #: for the resident's next message
    events: list[NoticeEvent] = ["accepted", "answered", "closed", "rejected", "more_info", "extended", "reopened"]
    wechat: WeChatNotices = WeChatNotices()


class Loop(_Section):
    """The closed loop of a case (12345-style): warnings before deadlines, re-handling after a poor rating,
    appeals of rejections, transfers between queues."""

    #: staff are warned this many working days before an accept or resolve deadline
    warn_working_days: int = Field(default=2, ge=0, le=30)
    #: times a case is reopened for re-handling after a rating of 1–2 or "not solved"
    rehandle_limit: int = Field(default=1, ge=0)
    #: times a reporter may appeal a rejection (a supervisor decides)
    appeal_limit: int = Field(default=1, ge=0)
    #: days an extension may add to a case's resolve-by date (a supervisor still decides each)
    extension_max_days: int = Field(default=30, ge=1, le=365)
    #: a case transferred this often alerts the queue's supervisor
    transfer_alert_after: int = Field(default=3, ge=2)
    #: the reasons a reviewer chooses from when returning a case to triage or moving it out of their queues
    transfer_reasons: list[str] = Field(default_factory=lambda: [
        "不属于本单位职责 Not this office's remit", "分类有误 Wrong category", "涉及多个部门 Several offices involved",
        "需上级统筹 Needs the supervisor"])


class Similarity(_Section):
    """Similar cases at intake and hot issues (issue 15, docs/mining.md)."""

    #: how many days back a new report's similar cases are looked for
    window_days: int = Field(default=180, ge=1, le=3650)
    #: the combined score (text, place, district, time) from which a case is shown as similar; the place and
    #: district alone give 0.4
    threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    #: after submit, tell the resident that similar reports exist and are handled together (never their text)
    tell_resident: bool = True
    #: the period the console's hot issues cover by default, and how many it shows
    hotspot_days: int = Field(default=30, ge=1, le=366)
    hotspot_top: int = Field(default=10, ge=1, le=100)
    #: minutes between two refreshes of the hot issues (a 30-day refresh over a million stored cases takes
    #: about 15 s of one core: docs/mining.md)
    hotspot_refresh_minutes: int = Field(default=10, ge=1, le=1440)


class CityConfig(_Section):
    city_zh: Name
    city_en: Name
    timezone: str = "Asia/Shanghai"
    case_number_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,8}$")] = "QL"
    default_locale: Literal["zh", "en"] = "zh"
    districts: list[District]
    queues: list[Queue]
    routing: Routing
    limits: Limits = Limits()
    console: Console = Console()
    notices: Notices = Notices()
    loop: Loop = Loop()
    similarity: Similarity = Similarity()
    texts: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError; a malformed key a ValueError
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name such as Asia/Shanghai)") from None
        return timezone

    @field_validator("districts")
    @classmethod
    def _unique_districts(cls, districts: list[District]) -> list[District]:
        codes = [d.code for d in districts]
        if len(codes) != len(set(codes)):
            raise ValueError("district codes must be unique")
        if not districts:
            raise ValueError("at least one district is required")
        for names in ([d.zh.strip() for d in districts], [d.en.strip().casefold() for d in districts]):
            twice = _given_twice(names)
            if twice is not None:  # residents would see two buttons of one name, and a typed name would pick neither
                raise ValueError(f"district names must be unique: {twice} is given twice")
        return districts

    @field_validator("queues")
    @classmethod
    def _unique_queues(cls, queues: list[Queue]) -> list[Queue]:
        twice = _given_twice([q.code for q in queues])
        if twice is not None:  # the overview would show one of them, and staff pages both under one value
            raise ValueError(f"queue codes must be unique: {twice} is given twice")
        return queues

    @field_validator("texts")
    @classmethod
    def _texts_the_dialog_can_use(cls, texts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for locale, table in texts.items():
            if locale not in LOCALES:
                raise _AtKey((locale,), f"unknown language; texts are in {' or '.join(LOCALES)}")
            for key, template in table.items():
                problem = _text_problem(locale, key, template)
                if problem is not None:
                    raise _AtKey((locale, key), problem)
        return texts

    @model_validator(mode="after")
    def _routing_targets_exist(self) -> CityConfig:
        queue_codes = {q.code for q in self.queues}
        if self.routing.triage_queue not in queue_codes:
            raise _AtKey(("routing", "triage_queue"), f"{self.routing.triage_queue!r} is not a configured queue")
        unrouted = [label for label in LABELS if label not in self.routing.labels]
        if unrouted:  # its reports would all go to triage, however sure the classifier is
            raise _AtKey(("routing", "labels"), f"does not route {', '.join(unrouted)}: route every label to a queue, "
                             f"to {self.routing.district_placeholder!r} or to the triage queue "
                             f"{self.routing.triage_queue!r}")
        for label, target in self.routing.labels.items():
            if target == self.routing.district_placeholder:
                missing = [
                    self.routing.district_queue_prefix + d.code
                    for d in self.districts
                    if self.routing.district_queue_prefix + d.code not in queue_codes
                ]
                if missing:
                    raise _AtKey(("routing", "labels", label), f"routes by district but queues {missing} are missing")
            elif target not in queue_codes:
                raise _AtKey(("routing", "labels", label), f"routes to unknown queue {target!r}")
        return self

    def district(self, code: str | None) -> District | None:
        return next((d for d in self.districts if d.code == code), None)

    def queue(self, code: str) -> Queue | None:
        return next((q for q in self.queues if q.code == code), None)

    def queue_name(self, code: str, locale: str = "zh") -> str:
        """The queue's name in `locale` ("en" or Chinese), or the code itself when the city no longer has it."""
        queue = self.queue(code)
        return (queue.en if locale == "en" else queue.zh) if queue else code

    def local_day(self, moment: object) -> str:
        """The city's calendar day (YYYY-MM-DD) of a stored time (an ISO string or a datetime; naive means UTC):
        a resolve-by time of 23:59 in the city is that day, east or west of Greenwich. Text that is not a time is
        returned cut to its first ten characters, as it was shown before."""
        try:
            value = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment or ""))
        except ValueError:
            return str(moment or "")[:10]
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(ZoneInfo(self.timezone)).date().isoformat()

    def district_name(self, code: str, locale: str = "zh") -> str:
        """The district's name in `locale` ("en" or Chinese), or the code itself when the city does not know it."""
        district = self.district(code)
        return (district.en if locale == "en" else district.zh) if district else code


def load_city_config(path: Path | None) -> CityConfig:
    source = path or DEFAULT_CITY_CONFIG
    try:
        with source.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"city configuration file {source} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"city configuration {source} is not UTF-8 (save it as UTF-8, not GBK)") from None
    except OSError as exc:
        raise ConfigError(f"city configuration {source} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"city configuration {source} is not valid TOML: {exc}") from None
    try:
        return CityConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        key = tuple(first["loc"]) + (cause.key if isinstance(cause, _AtKey) else ())
        message = str(cause) if isinstance(cause, ValueError) else first["msg"]  # without pydantic's "Value error, "
        where = ".".join(str(part) for part in key) or "(top level)"
        line = _line_of(source, raw, key)
        at = f"{source}, line {line}" if line else str(source)
        raise ConfigError(f"city configuration {at}: {where}: {message}") from None


def _line_of(source: Path, raw: object, key: tuple[str | int, ...]) -> int | None:
    """The line of the file where `key` (a table's key, a list's item, an item's key) is written, as far as a plain
    reading of the file finds it: its table's header ("[routing.labels]"), then the key ("education = ..."), then
    the item of a list written one per line ("{ code = ... },"; `raw`, the parsed file, says how many there are).
    The nearest line found before a part it cannot place (None: not even the first)."""
    lines = source.read_text(encoding="utf-8").splitlines()
    headers = [re.sub(r"\s", "", line) for line in lines]
    at, placed = 0, 0
    for parts in range(len(key), 0, -1):
        header = "[" + ".".join(str(part) for part in key[:parts]) + "]"
        if all(isinstance(part, str) for part in key[:parts]) and header in headers:
            at, placed = headers.index(header), parts
            break
    found = at + 1 if placed else None
    value = raw
    for index, part in enumerate(key):
        container, value = value, (value[part] if isinstance(value, list) and isinstance(part, int)
                                   and part < len(value) else value.get(part) if isinstance(value, dict) else None)
        if index < placed:
            continue
        if isinstance(part, int):
            end = next((n for n in range(at, len(lines)) if lines[n].strip().startswith("]")), len(lines))
            items = [n for n in range(at + 1, end) if lines[n].lstrip().startswith("{")]
            if not isinstance(container, list) or len(items) != len(container) or part >= len(items):
                return found  # not one item a line: the list's own line
            at = items[part]
        else:
            pattern = re.compile(rf"(?:^|[{{,])\s*(?:{re.escape(part)}|\"{re.escape(part)}\")\s*=")
            match = next((n for n in range(at, len(lines)) if pattern.search(lines[n])), None)
            if match is None:
                return found
            at = match
        found = at + 1
    return found
