"""Messages that are not an answer to what the resident just wrote: notices about their case (a status
changed, an answer arrived) and staff groups' notices of new cases, rendered in the reader's language;
and the summary of a case that waited for the resident to write again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from handlers.city import CityConfig
from handlers.texts import Texts
from handlers.types import Choice, Outbound
from nlp.labels import display_name as label_name


def _choices(payload: dict[str, object]) -> tuple[Choice, ...]:
    """The buttons a notice carries: its payload's [key, label] pairs."""
    raw = payload.get("choices")
    return tuple(Choice(str(key), str(label)) for key, label in (raw if isinstance(raw, list) else []))


def _status_changed(payload: dict[str, object], say: Callable[..., str]) -> Outbound:
    """A new status in one message: the case, the status, what staff wrote for it, and what the reporter can do
    now — appeal a rejection, see the trace; nothing more for a closing whose rating question follows right under
    it with its buttons (`storage.loop.offer_rating`)."""
    number, status, note = payload.get("case_number"), str(payload.get("status")), payload.get("note")
    named = say(f"status_{status}")
    if status == "duplicate" and note:  # the note of a duplicate is the number of the case it joins
        return Outbound(say("notice_duplicate", case_number=number, original=note) + "\n" +
                        say("notice_status_details"))
    if payload.get("rating_follows"):
        lines, after = [say("notice_closed", case_number=number)], None
    elif status == "rejected":
        lines, after = [say("notice_status_new", case_number=number, status=named)], "notice_rejected_appeal"
    else:  # "send /status" for the trace, then staff's note
        lines, after = [say("notice_status_changed", case_number=number, status=named)], None
    if note:
        lines.append(say("notice_status_note", note=note))
    if after:
        lines.append(say(after))
    return Outbound("\n".join(lines))


def _cut_short(payload: dict[str, object], say: Callable[..., str]) -> list[str]:
    """What became of the information (or the appeal) the resident was adding when the case closed."""
    cut_short = payload.get("cut_short")
    return [say(f"notice_cut_short_{cut_short}")] if cut_short in ("follow_up", "appeal") else []


def _named(payload: dict[str, object], city: CityConfig, locale: str) -> dict[str, str]:
    """The queue, category and district of a staff notice as staff read them (the city's names; a code the
    configuration no longer knows as it was stored; "-" for none)."""
    queue, label, district = (str(payload.get(key) or "") for key in ("queue", "label", "district"))
    return {
        "queue": city.queue_name(queue, locale) if queue else "-",
        "label": label_name(label, "en" if locale == "en" else "zh") if label else "-",
        "district": city.district_name(district, locale) if district else "-",
    }


def render(payload: dict[str, object], texts: Texts, public_url: str = "", *, city: CityConfig,
           channel: str | None = None) -> Outbound:
    """A stored payload as a message: a dialog reply as it was, a notice in the reporter's language and in the
    words of the `channel` it goes out on (`Texts.get_on`: on WeChat, "reply" rather than "tap"; a staff notice
    names its queue, category and district as the `city` does)."""
    if payload.get("notice") is None:
        return Outbound.from_payload(payload)
    return replace(_notice(payload, texts, public_url, city=city, channel=channel),
                   locale=str(payload.get("locale") or "zh"))


def _notice(payload: dict[str, object], texts: Texts, public_url: str, *, city: CityConfig,
            channel: str | None) -> Outbound:
    notice = payload.get("notice")
    locale = str(payload.get("locale") or "zh")

    def say(key: str, **values: object) -> str:
        return texts.get_on(channel, locale, key, **values)

    number = payload.get("case_number")
    if notice == "status_changed":
        return _status_changed(payload, say)
    if notice == "rate_request":  # the question alone right under the notice that told the closing
        lines = [*_cut_short(payload, say), say("notice_rate_question" if payload.get("status_told") else
                                                "notice_rate_request", case_number=number)]
        return Outbound("\n".join(lines), _choices(payload), columns=3)
    if notice == "note":
        return Outbound(say("notice_note", case_number=number, note=payload["note"]))
    if notice == "more_info":
        return Outbound(say("notice_more_info", case_number=number, question=payload["question"]),
                        _choices(payload))
    if notice == "reopened":
        return Outbound(say("notice_reopened", case_number=number))
    if notice == "extended":
        until = city.local_day(payload.get("until"))
        return Outbound(say("notice_extended", case_number=number, until=until))
    if notice == "appeal_decided":
        key = "notice_appeal_upheld" if payload.get("upheld") else "notice_appeal_granted"
        return Outbound(say(key, case_number=number, reason=payload.get("reason") or ""))
    if notice in ("rehandle", "appeal", "extension_request", "transfer_alert", "escalation", "due_soon"):
        values = {"case_number": number, "queue": _named(payload, city, locale)["queue"],
                  "until": city.local_day(payload.get("until")), "transfers": payload.get("transfers") or "",
                  "deadline": say(f"deadline_{payload.get('deadline') or 'resolve'}")}
        link = f"{public_url}/console/case/{number}"
        return Outbound(say(f"notice_{notice}", **values) + f"\n{link}")
    if notice == "answer":  # it names the case page's buttons by their own words (a city may reword them)
        return Outbound(say("notice_answer", case_number=payload["case_number"], answer=payload["answer"],
                            solved=say("case_solved"), follow_up=say("case_follow_up")))
    if notice == "new_case":
        link = f"{public_url}/console/case/{payload['case_number']}"
        return Outbound(say("notice_new_case", case_number=payload["case_number"],
                                  first_line=payload["first_line"], link=link, **_named(payload, city, locale)))
    raise ValueError(f"unknown notice {notice!r}")


def waited_line(payload: dict[str, object], texts: Texts, locale: str, city: CityConfig,
                channel: str | None = None) -> str | None:
    """What one notice that waited for the resident said, as a line under its case's newest status (None
    for a bare status change: the newest status already says it), in the words of `channel`."""
    notice = payload.get("notice")

    def say(key: str, **values: object) -> str:
        return texts.get_on(channel, locale, key, **values)

    if notice == "answer":
        return say("notice_waiting_answer", answer=payload.get("answer") or "")
    if notice == "status_changed":
        if not payload.get("note"):
            return None
        status = say(f"status_{payload.get('status')}")
        return say("notice_waiting_status_note", status=status, note=payload["note"])
    if notice == "note":
        return say("notice_waiting_note", note=payload.get("note") or "")
    if notice == "more_info":
        return say("notice_waiting_more_info", question=payload.get("question") or "")
    if notice == "extended":
        return say("notice_waiting_extended", until=city.local_day(payload.get("until")))
    return render({**payload, "locale": locale}, texts, city=city, channel=channel).text
