"""How console pages are rendered: the Jinja2 templates and their helpers (display names of codes, local
times, highlighting), the security headers every console response carries, and redirects."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from console import texts
from console.auth import Principal
from console.context import CONTEXT_STATE, ConsoleContext
from console.operations import LABELS, SETTABLE_STATUSES, OperationError
from handlers.city import CityConfig
from handlers.routing import warning_horizon
from nlp.labels import LABELS as LABEL_NAMES
from storage import queries
from storage.models import Case, StaffRole, StaffUser

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class ConsoleRoute(APIRoute):
    """A route whose every response carries the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            return secure(await handler(request))

        return secured


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


# --- display names and formatting -------------------------------------------------------------


_LABEL_MOVE = re.compile(r"label (\w+) → (\w+)")
"""The reason `storage.staff_actions.correct_label` gives the move it makes."""
_COMMAND_LINE = re.compile(r"command line(?: \((.+)\))?")
"""Who ran a command, as `nlp.cli.operator_name` writes it into the audit log ("command line (<account>)")."""
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)")
"""A moment as the audit log's details hold it (`datetime.isoformat()` of a UTC time): shown in the city's time."""


def bilingual(zh: str, en: str) -> Markup:
    """Chinese with the English beside it (smaller, grey); both escaped."""
    return Markup('<span class="bi">{}<span class="en">{}</span></span>').format(zh, en)


def stacked(zh: str, en: str) -> Markup:
    """Chinese with the English under it (smaller, grey), for the narrow cells of dense tables; both escaped."""
    return Markup('<span class="bi">{}<span class="en sub">{}</span></span>').format(zh, en)


def staff_name(user: StaffUser) -> Markup:
    """A colleague as the console names staff: by display name, the username (unambiguous, for an auditor) as
    its title."""
    return Markup('<span class="staff" title="{}">{}</span>').format(user.username, user.display_name)


FILTER_FLAGS = frozenset({"overdue", "labelling", "handling", "unread", "mine", "open"})
"""The case lists' filters that are on or off: said by their name alone."""


@dataclass
class Names:
    """Display names from the city's configuration, the taxonomy and the console's texts, and local times."""

    city: CityConfig

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.city.timezone)

    def queue(self, code: str | None) -> tuple[str, str]:
        queue = self.city.queue(code) if code else None
        return (queue.zh, queue.en) if queue else (code or "—", code or "—")

    def queue_short(self, code: str | None, locale: str = "zh") -> str:
        """The queue's name (Chinese unless `locale` is "en") without the bodies in brackets, for dense tables."""
        return self.queue(code)[1 if locale == "en" else 0].split("（")[0].split("(")[0].strip()

    def district(self, code: str | None) -> tuple[str, str]:
        if code is None:
            return texts.pair("name.no_district")
        district = self.city.district(code)
        return (district.zh, district.en) if district else (code, code)

    def label(self, code: str | None) -> tuple[str, str]:
        if code is None:
            return texts.pair("name.unclassified")
        return LABEL_NAMES.get(code, (code, code))

    def status(self, code: str) -> tuple[str, str]:
        return texts.pair_or(f"status.{code}", code)

    def trace(self, kind: str) -> tuple[str, str]:
        return texts.pair(f"trace.{kind}") if texts.has(f"trace.{kind}") else self.status(kind)

    def role(self, code: str) -> tuple[str, str]:
        return texts.pair_or(f"role.{code}", code)

    def audit_action(self, code: str) -> tuple[str, str]:
        return texts.pair_or(f"audit.{code}", code)

    def audit_detail(self, detail: dict[str, object] | None, locale: str = "zh", *, with_ids: bool = False) -> str:
        """An audit entry's detail as a reviewer reads it: each item under its name, codes (labels, queues,
        statuses, roles) by their names, and the internal ids of rows left out (kept `with_ids`, for the audit
        log, where an id links one entry to another)."""
        return " · ".join(f"{name}{value}" for _key, name, value in self._detail_items(detail, locale, with_ids))

    def _detail_items(self, detail: dict[str, object] | None, locale: str,
                      with_ids: bool) -> list[tuple[str, str, str]]:
        """Each item of the detail `audit_detail` says: its key, its name with the colon, its value said."""
        colon = "：" if locale == "zh" else ": "
        return [(key, f"{self._detail_name(key, locale)}{colon}", self._named_value(key, value, locale))
                for key, value in (detail or {}).items()
                if not ((key.endswith("_id") and not with_ids) or value is None or value == "")]

    def audit_details(self, detail: dict[str, object] | None, *, with_ids: bool = False) -> tuple[str, str]:
        """`audit_detail` in Chinese and in English."""
        return (self.audit_detail(detail, "zh", with_ids=with_ids),
                self.audit_detail(detail, "en", with_ids=with_ids))

    def audit_details_linked(self, detail: dict[str, object] | None) -> tuple[Markup, Markup]:
        """`audit_details` with ids, as the audit page shows them: a bulk action's id is a link to the log of that bulk
        action alone (every entry it wrote)."""
        bulk = (detail or {}).get("bulk")

        def linked(locale: str) -> Markup:
            return Markup(" · ").join(
                Markup('{}<a href="/console/audit?{}">{}</a>').format(name, urlencode({"bulk": str(bulk)}), value)
                if key == "bulk" else Markup("{}{}").format(name, value)
                for key, name, value in self._detail_items(detail, locale, with_ids=True))

        return linked("zh"), linked("en")

    @staticmethod
    def _detail_name(key: str, locale: str) -> str:
        return texts.get(locale, f"audit_detail.{key}") if texts.has(f"audit_detail.{key}") else key

    def _named_value(self, key: str, value: object, locale: str) -> str:
        named = f"audit_detail.{key}_{value}"  # a value of this key with a name of its own ("via": "export")
        return texts.get(locale, named) if texts.has(named) else self._detail_value(value, locale)

    def _detail_value(self, value: object, locale: str) -> str:
        index = 1 if locale == "en" else 0
        if isinstance(value, dict):  # an export's filter: each of its items by name (`audit_detail.filter_<key>`
            # where the filter's meaning differs from the same key elsewhere: its from/to are dates received)
            def filter_name(key: str) -> str:
                return self._detail_name(f"filter_{key}" if texts.has(f"audit_detail.filter_{key}") else key, locale)

            return " ".join(f"{filter_name(str(key))}={self._named_value(str(key), item, locale)}"
                            for key, item in value.items())
        if isinstance(value, list | tuple):
            return ("、" if locale == "zh" else ", ").join(self._detail_value(item, locale) for item in value)
        if isinstance(value, bool):
            return texts.get(locale, "audit_detail.yes" if value else "audit_detail.no")
        if isinstance(value, str) and (corrected := _LABEL_MOVE.fullmatch(value)):  # a label correction's move
            before, after = (self.label(code)[index] for code in corrected.groups())
            return texts.get(locale, "audit_detail.label_corrected", before=before, after=after)
        if isinstance(value, str) and (command := _COMMAND_LINE.fullmatch(value)):  # who ran a command
            account = command.group(1)
            return (texts.get(locale, "audit_detail.via_command_line_of", account=account) if account
                    else texts.get(locale, "audit_detail.via_command_line"))
        if isinstance(value, str) and _ISO_TIME.fullmatch(value):
            return self.time(datetime.fromisoformat(value))
        if isinstance(value, str):
            if value in LABEL_NAMES:
                return LABEL_NAMES[value][index]
            if self.city.queue(value) is not None:
                return self.queue_short(value, locale)
            for kind in ("status", "role"):
                if texts.has(f"{kind}.{value}"):
                    return texts.get(locale, f"{kind}.{value}")
        return str(value)

    def filter_items(self, described: dict[str, str]) -> list[tuple[str, str]]:
        """Each item of a case list's filter (its query parameters) as staff read it, in Chinese and in English:
        "队列：人工分拣", "最高置信度：0.5 %", "超期"."""
        return [(self._filter_item(key, value, "zh"), self._filter_item(key, value, "en"))
                for key, value in described.items() if value]

    def _filter_item(self, key: str, value: str, locale: str) -> str:
        name = self._detail_name(f"filter_{key}" if texts.has(f"audit_detail.filter_{key}") else key, locale)
        if key in FILTER_FLAGS:
            return name
        if key in ("conf_min", "conf_max"):
            shown = f"{value.removesuffix('%').strip()} %"
        elif key == "district":
            shown = self.district(value)[1 if locale == "en" else 0] if value != "unsure" else texts.get(
                locale, "name.no_district")
        elif key == "problem":
            shown = f"#{value}"
        elif key == "q":
            shown = f"“{value}”"
        else:
            shown = self._named_value(key, value, locale)
        return f"{name}{'：' if locale == 'zh' else ': '}{shown}"

    def refusal(self, error: OperationError) -> tuple[str, str]:
        """Why the console refused, in Chinese and English: its values that are statuses, labels or queues (by
        their names: `status`, `expected_label`, …) by their names in each language."""
        zh, en = ({name: self._named(name, value)[index] for name, value in error.values.items()}
                  for index in (0, 1))
        return texts.get("zh", f"refusal.{error.key}", **zh), texts.get("en", f"refusal.{error.key}", **en)

    def _named(self, name: str, value: object) -> tuple[object, object]:
        kind = name.rsplit("_", 1)[-1]
        if isinstance(value, str) and kind in ("status", "label", "queue"):
            return getattr(self, kind)(value)
        return value, value

    def extension_status(self, code: str) -> tuple[str, str]:
        return texts.pair_or(f"extension_status.{code}", code)

    def delivery_status(self, code: str) -> str:
        return texts.joined(f"delivery.{code}") if texts.has(f"delivery.{code}") else code

    def notice_kind(self, code: str) -> tuple[str, str]:
        return texts.pair_or(f"notice.{code}", code)

    def route_reason(self, code: str | None) -> tuple[str, str]:
        return texts.pair_or(f"route_reason.{code}", code or "") if code else ("", "")

    def time(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if moment else "—"

    def seconds(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"

    def day(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d") if moment else "—"

    def iso(self, value: object) -> str:
        """An ISO 8601 time from a file (training status, registry events) in local time."""
        try:
            return self.time(datetime.fromisoformat(str(value)))
        except ValueError:
            return "—"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def highlight(text: str, terms: Iterable[Any] | None) -> Markup:
    """The report text with the classifier's key terms in <mark>; every piece of text is escaped."""
    words = sorted({str(t[0] if isinstance(t, list | tuple) else t).strip() for t in terms or ()} - {""},
                   key=len, reverse=True)
    if not words:
        return escape(text)
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE)
    pieces: list[Markup] = []
    position = 0
    for match in pattern.finditer(text):
        pieces.append(escape(text[position:match.start()]))
        pieces.append(Markup("<mark>{}</mark>").format(match.group(0)))
        position = match.end()
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)


def overdue_flags(case: Case, now: datetime) -> list[tuple[str, str]]:
    flags = []
    if case.status in queries.NOT_ACCEPTED and case.accept_due_at and case.accept_due_at < now:
        flags.append(texts.pair("flag.accept_overdue"))
    if case.status in queries.OPEN_STATUSES and case.resolve_due_at and case.resolve_due_at < now:
        flags.append(texts.pair("flag.resolve_overdue"))
    return flags


@dataclass(frozen=True)
class Deadline:
    """The deadline a case is working towards now, and how far it is: shown as a countdown in its colour."""

    due: datetime
    kind: str  # "accept" or "resolve"
    state: str  # "over", "soon" or "ok": the colour
    text: tuple[str, str]  # (Chinese, English) of the texts `due.left`, `due.soon` or `due.overdue`: "2 d 3 h left"
    soon_until: datetime  # a deadline at or before this is "soon" (the loop's warn_working_days, in working days)


COUNTDOWN_TEXTS = ("days_hours", "hours_minutes", "left", "soon", "overdue")
"""The texts `due.*` a countdown is said with, here and in countdown.js (which the page hands them)."""


def _span(seconds: float, locale: str) -> str:
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return texts.get(locale, "due.days_hours", days=days, hours=hours)
    return texts.get(locale, "due.hours_minutes", hours=hours, minutes=mins)


def countdown_texts() -> dict[str, str]:
    """The countdown's texts for countdown.js: `data-<locale>-<name>` (`days`, `hours`, `left`, `soon`, `overdue`)."""
    return {f"data-{locale}-{name.split('_')[0]}": texts.get(locale, f"due.{name}")
            for locale in texts.LOCALES for name in COUNTDOWN_TEXTS}


def deadline(case: Case, now: datetime, city: CityConfig) -> Deadline | None:
    """The accept deadline of a case not yet accepted, the resolve deadline of an open one, else None. It is
    "soon" (amber) within the loop's `warn_working_days` working days, when staff are warned of it."""
    if case.status in queries.NOT_ACCEPTED and case.accept_due_at is not None:
        due, kind = case.accept_due_at, "accept"
    elif case.status in queries.OPEN_STATUSES and case.resolve_due_at is not None:
        due, kind = case.resolve_due_at, "resolve"
    else:
        return None
    left = (due - now).total_seconds()
    horizon = warning_horizon(city, now)
    state = "over" if left < 0 else "soon" if due <= horizon else "ok"
    key = {"over": "due.overdue", "soon": "due.soon", "ok": "due.left"}[state]  # the state in words, not colour only
    text = (texts.get("zh", key, span=_span(abs(left), "zh")), texts.get("en", key, span=_span(abs(left), "en")))
    return Deadline(due, kind, state, text, horizon)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals |= {"t": bilingual, "stacked": stacked, "staff_name": staff_name, "countdown_texts": countdown_texts,
                    "percent": percent,
                    "filesize": filesize, "LABELS": LABELS,
                    "SETTABLE_STATUSES": SETTABLE_STATUSES, "ROLES": [role.value for role in StaffRole]}
    return env


templates = Jinja2Templates(env=_environment())


def weak_password_message(reason: tuple[str, str]) -> str:
    """The account and staff pages' line on a password refused as too weak: Chinese, then English."""
    zh, en = texts.pair("account.password_weak")
    return f"{zh}{reason[0]} {en} {reason[1]}"


def done_message(code: str) -> tuple[str, str] | None:
    """The notice of `?done=<code>` after an action; None for an unknown code."""
    return texts.pair(f"done.{code}") if code and texts.has(f"done.{code}") else None


def render(request: Request, principal: Principal | None, template: str, status_code: int = 200,
           **values: Any) -> Response:
    context: ConsoleContext = getattr(request.app.state, CONTEXT_STATE)
    city = context.city
    base = {
        "me": principal.user if principal else None,
        "unread_notices": principal.unread_notices if principal else 0,
        "csrf": principal.csrf_token if principal else "",
        "is_supervisor": principal is not None and principal.user.role in (StaffRole.SUPERVISOR, StaffRole.ADMIN),
        "is_admin": principal is not None and principal.user.role == StaffRole.ADMIN,
        "n": Names(city),
        "city": city,
        "city_short": city.city_zh.removesuffix("市"),
        "done": done_message(request.query_params.get("done", "")),
        "path": request.url.path,
    }
    return secure(templates.TemplateResponse(request, template, {**base, **values}, status_code=status_code))
