"""Messages that are not an answer to what the resident just wrote: notices about their case (a status
changed, an answer arrived) and staff groups' notices of new cases, rendered in the reader's language;
and the summary of a case that waited for the resident to write again."""

from __future__ import annotations

from handlers.texts import Texts
from handlers.types import Outbound


def render(payload: dict[str, object], texts: Texts, public_url: str = "") -> Outbound:
    """A stored payload as a message: a dialog reply as it was, a notice in the reporter's language."""
    notice = payload.get("notice")
    if notice is None:
        return Outbound.from_payload(payload)
    locale = str(payload.get("locale") or "zh")
    if notice == "status_changed":
        status = texts.get(locale, f"status_{payload['status']}")
        return Outbound(texts.get(locale, "notice_status_changed", case_number=payload["case_number"],
                                  status=status))
    if notice == "answer":
        return Outbound(texts.get(locale, "notice_answer", case_number=payload["case_number"],
                                  answer=payload["answer"]))
    if notice == "new_case":
        link = f"{public_url}/console/case/{payload['case_number']}"
        return Outbound(texts.get(locale, "notice_new_case", case_number=payload["case_number"],
                                  queue=payload["queue"], label=payload.get("label") or "-",
                                  district=payload.get("district") or "-", first_line=payload["first_line"],
                                  link=link))
    raise ValueError(f"unknown notice {notice!r}")
