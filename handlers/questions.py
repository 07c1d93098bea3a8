"""The wizard's questions: what each step of a report asks, with its buttons, and the summary to check before
submitting (`handlers.report` takes the answers)."""

from __future__ import annotations

from handlers.context import Turn
from handlers.districts import named_district
from handlers.types import Choice

WIZARD_STATES = ("intake", "district", "place", "when", "description", "evidence", "identity", "name", "phone",
                 "summary", "edit")
IDENTITY_STATES = ("identity", "name", "phone")
"""The questions of a real-name report: whether to give one's name, the name, the number (a shared contact card
answers them)."""
UNSURE_DISTRICT = "unsure"
EDITABLE_FIELDS = ("district", "place", "when", "description", "evidence", "identity")
INTAKE_EXCERPT = 60
"""How much of a text offered as a report's description the offer quotes back."""


def ask(turn: Turn, state: str) -> None:
    """Put the question of `state` to the resident and remember where the draft stands."""
    turn.set_state(state)
    if state in WIZARD_STATES and state != "edit":
        turn.update_draft(step=state)
    limits = turn.ctx.city.limits
    if state == "intake":
        description = turn.draft.get("description", "")
        count = len(turn.draft.get("attachments", []))
        excerpt = description if len(description) <= INTAKE_EXCERPT else description[:INTAKE_EXCERPT] + "……"
        question = turn.t("ask_intake", excerpt=excerpt) if description else turn.t("ask_intake_files", count=count)
        if description and count:
            question += "\n" + turn.t("evidence_count", count=count, maximum=limits.max_attachments)
        offer = "intake_report" if description else "intake_report_files"  # "用这段话举报" only for a text
        turn.ask(question, [Choice("intake:report", turn.t(offer)), Choice("intake:menu", turn.t("intake_menu"))])
    elif state == "district":
        choices = [
            Choice(f"district:{d.code}", d.zh if turn.locale == "zh" else d.en) for d in turn.ctx.city.districts
        ]
        choices.append(Choice(f"district:{UNSURE_DISTRICT}", turn.t("district_unsure")))
        question = turn.t("ask_district", city=city_name(turn))
        if (mentioned := district_mentioned(turn)) is not None:
            question += "\n" + turn.t("district_mentioned", district=district_name(turn, mentioned))
        turn.ask(question, choices, columns=3)
    elif state == "place":
        turn.ask(turn.t("ask_place"), story_given_back(turn, state))
    elif state == "when":
        keys = ("today", "yesterday", "week", "month", "unsure")
        turn.ask(turn.t("ask_when"), [*(Choice(f"when:{k}", turn.t(f"when_{k}")) for k in keys),
                                      *story_given_back(turn, state)], columns=2)
    elif state == "description":
        turn.ask(turn.t("ask_description", minimum=limits.description_min_chars,
                        maximum=limits.description_max_chars))
    elif state == "evidence":
        count = len(turn.draft.get("attachments", []))
        choices = [Choice("evidence:done", turn.t("evidence_done" if count else "evidence_skip"))]
        if count:
            choices.append(Choice("evidence:clear", turn.t("evidence_clear")))
        text = turn.t("ask_evidence", maximum=limits.max_attachments,
                      limit_mb=limits.max_attachment_bytes // (1024 * 1024))
        if count:
            text += "\n" + turn.t("evidence_count", count=count, maximum=limits.max_attachments)
        turn.ask(text, choices)
    elif state == "identity":
        turn.ask(turn.t("ask_identity"), [Choice("identity:anonymous", turn.t("identity_anonymous")),
                                          Choice("identity:real", turn.t("identity_real"))])
    elif state in ("name", "phone"):  # with the way back to an anonymous report (a number the check refuses)
        turn.ask(turn.t(f"ask_{state}"), [Choice("identity:anonymous", turn.t("identity_anonymous_instead"))])
    elif state == "summary":
        turn.ask(summary_text(turn), [Choice("summary:submit", turn.t("summary_submit")),
                                      Choice("summary:edit", turn.t("summary_edit")),
                                      Choice("summary:cancel", turn.t("summary_cancel"))])
    elif state == "edit":
        choices = [Choice(f"edit:{name}", turn.t(f"field_{name}")) for name in EDITABLE_FIELDS]
        choices.append(Choice("edit:back", turn.t("edit_back")))
        turn.ask(turn.t("ask_edit"), choices, columns=2)
    else:
        raise ValueError(f"no question for state {state!r}")


def story_given_back(turn: Turn, state: str) -> list[Choice]:
    """Under the question whose answer was taken for the story: the button that makes it the answer after all."""
    return [Choice("story:answer", turn.t(f"story_is_{state}"))] if turn.draft.get("story_taken") == state else []


def city_name(turn: Turn) -> str:
    return turn.ctx.city.city_zh if turn.locale == "zh" else turn.ctx.city.city_en


def district_name(turn: Turn, code: str | None) -> str:
    district = turn.ctx.city.district(code)
    if district is None:
        return turn.t("district_unsure")
    return district.zh if turn.locale == "zh" else district.en


def summary_text(turn: Turn) -> str:
    draft = turn.draft
    description = draft.get("description") or ""  # None where a text taken for the story was given back
    if len(description) > 800:
        description = description[:800] + turn.t("summary_truncated", length=len(draft["description"]))
    if draft.get("anonymous", True):
        identity = turn.t("identity_anonymous")
    else:
        phone = draft.get("phone", "")
        identity = f"{draft.get('name', '')} {phone[:3]}****{phone[-4:]}"
    return turn.t(
        "summary",
        district=district_name(turn, draft.get("district")),
        place=draft.get("place", ""),
        when=draft.get("occurred", ""),
        description=description,
        evidence=len(draft.get("attachments", [])),
        identity=identity,
    )


def district_mentioned(turn: Turn) -> str | None:
    """The one district the draft's description names in full (a report begun with the complaint, or a description
    written before the district is edited): offered at the district question, which still asks — a complaint
    may name the district the resident came from, not the one where it happened."""
    description = turn.draft.get("description")
    return named_district(turn.ctx.city, description, short_forms=False) if description else None
