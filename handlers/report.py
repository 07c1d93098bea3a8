"""The report wizard: district → place → when → what → evidence → identity → summary → submit.

A resident who writes what happened before asking for anything (a first WeChat message is often the whole
complaint, or a photo) is offered to start a report with that text as its description and those files as its
evidence ("intake"): they wait in the draft (encrypted, as every draft and file), the wizard then skips the
description question, and the summary shows what was kept for checking. The questions and the summary are
`handlers.questions`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from handlers import similar as similar_cases
from handlers.cancelling import ask_cancel
from handlers.context import Turn
from handlers.description import kept_description
from handlers.districts import named_district
from handlers.editing import typed_change, typed_identity
from handlers.evidence import accept_file, delete_files
from handlers.menu import show_menu
from handlers.questions import (
    EDITABLE_FIELDS,
    IDENTITY_STATES,
    UNSURE_DISTRICT,
    ask,
    district_mentioned,
)
from handlers.questions import WIZARD_STATES as WIZARD_STATES  # the dialog asks `report` which states are its own
from handlers.types import Attachment, SharedContact
from handlers.validation import (
    Invalid,
    clean_description,
    clean_name,
    clean_occurred,
    clean_phone,
    clean_place,
    says_enough,
)
from handlers.when import dated
from nlp.search import index_terms
from storage import actions, client_limits, evidence_rows
from storage.models import ClientEventKind
from storage.receipts import format_receipt_code

REPORT_WINDOW = timedelta(hours=24)
STORY_QUESTIONS = ("place", "when")
"""Open questions before "what happened" that residents often answer with the whole story at once."""
STORY_MIN_LENGTH = 40
"""An answer to the place or the time at least this long (`_length`) that would pass as a description is taken for
the story: kept as the description (with a button to give it back as the answer), the question asked again. A
place or a time is rarely half as long ("开福区某村村委会", "上个月中旬，具体哪天记不清了", "Kaifu District Tax
Service Hall, window 7")."""
_LATIN_WORD = re.compile(r"[^\W\u3400-\u9fff]+")
SIMILAR_RANKED_AT_SUBMIT = 20
"""The submit only tells the resident whether similar cases exist: it scores the 20 candidates sharing the most
band keys with the report, not every one of the hundreds a common report can have."""


def _tells_the_story(turn: Turn, text: str | None) -> bool:
    """Whether an answer to the place or the time is the story instead: longer than any place or time, and a
    description would take it; only while the draft has none (one kept from a first message stays)."""
    limits = turn.ctx.city.limits
    return (text is not None and not turn.draft.get("description") and _length(text) >= STORY_MIN_LENGTH
            and says_enough(text, limits.description_min_chars, limits.description_max_chars))


def _length(text: str) -> int:
    """How much a text says, in Chinese characters: each one counts 1 and a word in letters or digits 2 (an English
    sentence takes about as many words as its Chinese one takes characters, and twice as many letters and spaces
    as characters again)."""
    return sum(1 for char in text if "\u3400" <= char <= "\u9fff") + 2 * len(_LATIN_WORD.findall(text))


def _answered(given_back: bool) -> dict[str, object]:
    """What answering the place or the time changes besides it: no story button any more, and the story given back
    as the answer is no longer the description."""
    return {"story_taken": None, **({"description": None} if given_back else {})}


def start(turn: Turn) -> None:
    turn.clear_draft()
    turn.update_draft(step="district", attachments=[])
    turn.say(turn.t("report_intro"))
    ask(turn, "district")


def resume(turn: Turn) -> None:
    step = turn.draft.get("step") or "district"
    if step == "intake":  # "continue" (or /report) where a text or files wait for a report: begin with them
        _begin_with_description(turn)
    else:
        ask(turn, step)


async def offer_intake(turn: Turn, text: str | None = None, attachment: Attachment | None = None, *,
                       offer: bool = True) -> bool:
    """Where no question was asked (the menu, or a first message), a text that would pass as a report's
    description, or an evidence file: keep it in the draft and offer to start a report with it. False (nothing
    kept or said) for a text too short to describe anything. A text over the description's limit is kept as far
    as it fits (`kept_description`); a file the evidence step would refuse is explained (`Invalid`), not kept. A
    further text joins the one kept (a complaint sent in several messages), as a further file joins the others;
    the text of "/report <text>" (`offer` False) replaces it."""
    limits = turn.ctx.city.limits
    waiting = turn.conversation.state == "intake"  # what was kept before stays; otherwise the draft starts anew
    if attachment is not None:
        attachments: list[int] = list(turn.draft.get("attachments", [])) if waiting else []
        if len(attachments) >= limits.max_attachments:
            raise Invalid("error_evidence_full", maximum=limits.max_attachments)
        stored = await accept_file(turn, attachment)
        kept: dict[str, object] = {"attachments": [*attachments, stored.id]}
        if text is not None and says_enough(text, limits.description_min_chars, limits.description_max_chars):
            # the complaint written under the file (a caption): kept as the description, as if sent alone
            earlier = turn.draft.get("description") if waiting else None
            kept["description"] = kept_description(turn, f"{earlier}\n{text.strip()}" if earlier else text)
    elif text is not None and says_enough(text, limits.description_min_chars, limits.description_max_chars):
        earlier = turn.draft.get("description") if waiting and offer else None
        if earlier:  # a complaint sent in several messages is kept whole ("/report <text>" says what it is)
            text = f"{earlier}\n{text.strip()}"
        kept = {"description": kept_description(turn, text)}
    else:
        return False  # nothing kept, and no draft begun: a greeting leaves the conversation as it was
    if not waiting:
        turn.clear_draft()
        turn.update_draft(attachments=[])
    turn.update_draft(**kept)
    if offer:
        ask(turn, "intake")
    else:  # kept for a report the resident has asked for already
        turn.update_draft(step="intake")
    return True


def _begin_with_description(turn: Turn) -> None:
    turn.update_draft(step="district")
    turn.say(turn.t("intake_started"))
    ask(turn, "district")


async def _intake(turn: Turn, choice: str | None, text: str | None, attachment: Attachment | None) -> None:
    if choice is None and attachment is None:  # "好", "yes" / "不用", "no" typed to "开始一份举报吗？"
        choice = "intake:report" if turn.typed_one_of(text, "intake_yes_words") else \
            "intake:menu" if turn.typed_one_of(text, "intake_no_words") else None
    if choice == "intake:report":
        _begin_with_description(turn)
    elif choice == "intake:menu":
        await discard(turn)
        show_menu(turn)
    elif not await offer_intake(turn, text, attachment):  # a further description or file is kept too
        raise Invalid("error_pick_option")


async def discard(turn: Turn) -> None:
    names = await evidence_rows.discard_draft_attachments(turn.session, turn.draft.get("attachments", []))
    await delete_files(turn.ctx.evidence_dir, names)
    turn.clear_draft()


def has_draft(turn: Turn) -> bool:
    return bool(turn.draft.get("step"))


# --- answers ----------------------------------------------------------------------------------


LATE_FILE_STATES = ("identity", "name", "phone", "summary", "edit")
"""Questions after the evidence step, where a file sent is still evidence of the report (not refused as early)."""


def _next(turn: Turn, state: str) -> None:
    """After a field is answered: back to the summary when editing, else the next question."""
    if turn.draft.get("editing") and state not in ("name", "phone"):
        ask(turn, "summary")
    else:
        ask(turn, state)


async def answer(turn: Turn, choice: str | None, text: str | None, attachment: Attachment | None) -> None:
    """Handle the resident's answer to the question of the current state."""
    state = turn.conversation.state
    limits = turn.ctx.city.limits
    if attachment is not None and state == "description" and text is not None and \
            says_enough(text, limits.description_min_chars, limits.description_max_chars):
        # a photo with the story written under it (a caption): the words answer the question, the photo is
        # the first evidence, once the step that takes it is reached. A caption that cannot be the description
        # leaves the photo to be refused below, with the reason, rather than dropped unsaid
        await answer(turn, choice, text, None)
        if turn.conversation.state == "evidence":
            await answer(turn, None, None, attachment)
        else:  # the words were refused, and said why: the photo was not taken either
            turn.say(turn.t("error_attachment_here"))
        return
    if attachment is not None and attachment.contact is not None:
        _contact_card(turn, attachment.contact)
        return
    if attachment is not None and state not in ("evidence", "intake", *LATE_FILE_STATES):
        turn.say(turn.t("error_attachment_here"))
        ask(turn, state)
        return
    given_back = state in STORY_QUESTIONS and choice == "story:answer" and turn.draft.get("story_taken") == state
    if given_back:  # the text taken for the story answers the question after all
        text, choice = turn.draft.get("description"), None
    try:
        if state == "intake":
            await _intake(turn, choice, text, attachment)
        elif attachment is not None and state in LATE_FILE_STATES:  # remembered after the evidence step
            await _evidence_file(turn, attachment, text, then=state)
        elif state in (*STORY_QUESTIONS, "district") and choice is None and not given_back and \
                _tells_the_story(turn, text):
            assert text is not None  # the story sent to a first question (over the limit: kept as far as it fits)
            turn.update_draft(description=kept_description(turn, text), story_taken=state)
            turn.say(turn.t("story_kept"))
            ask(turn, state)
        elif state == "district":
            if choice is None and text is not None and (named := named_district(turn.ctx.city, text)) is not None:
                choice = f"district:{named}"  # "岳麓", "在岳麓区", "Yuelu district"
            elif choice is None and turn.typed_one_of(text, "district_yes_words") and \
                    (mentioned := district_mentioned(turn)) is not None:
                choice = f"district:{mentioned}"  # "是": the district the description names
            elif choice is None and turn.typed_one_of(text, "district_unsure_words"):
                choice = f"district:{UNSURE_DISTRICT}"  # "不知道", "I don't know"
            if choice is None or not choice.startswith("district:"):
                raise Invalid("error_pick_district")
            code = choice.split(":", 1)[1]
            turn.update_draft(district=None if code == UNSURE_DISTRICT else code)
            _next(turn, "place")
        elif state == "place":
            if text is None:
                raise Invalid("error_need_text")
            turn.update_draft(place=clean_place(text, limits.place_max_chars), **_answered(given_back))
            _next(turn, "when")
        elif state == "when":
            turn.update_draft(occurred=_occurred(turn, choice, text), **_answered(given_back))
            # a description the resident sent first (intake) is not asked for again; the summary shows it
            _next(turn, "evidence" if turn.draft.get("description") else "description")
        elif state == "description":
            if text is None:
                raise Invalid("error_need_text")
            # a text the resident's app cut into parts comes whole (`dialog._gather`): never the tail alone taken.
            # Over the limit, what fits is kept and the resident told where the rest begins, as for a first message:
            # nobody retypes a long account, and the rest can follow after submitting (`kept_description`)
            turn.update_draft(description=kept_description(turn, text))
            _next(turn, "evidence")
        elif state == "evidence":
            await _evidence(turn, choice, text, attachment)
        elif state in IDENTITY_STATES and (choice or typed_identity(turn, text, asked=state == "identity")) == \
                "identity:anonymous":
            turn.update_draft(anonymous=True, name=None, phone=None, pending_name=None, pending_phone=None)
            ask(turn, "summary")
        elif state == "identity":
            if (choice or typed_identity(turn, text, asked=True)) != "identity:real":
                raise Invalid("error_pick_option")
            ask(turn, "name")
        elif state == "name":
            if text is None:
                raise Invalid("error_need_text")
            name = clean_name(text)
            if turn.draft.get("pending_phone"):  # the number came on a contact card whose name was refused
                _identified(turn, name, turn.draft["pending_phone"])
            else:
                turn.update_draft(pending_name=name)
                ask(turn, "phone")
        elif state == "phone":
            if text is None:
                raise Invalid("error_need_text")
            _identified(turn, turn.draft.get("pending_name"), clean_phone(text))
        elif state in ("summary", "edit"):
            choice = choice or typed_change(turn, text, EDITABLE_FIELDS, at_summary=state == "summary")
            if state == "summary" and not (choice or "").startswith("edit:"):
                await _summary(turn, choice, text)
            elif choice == "edit:back":
                ask(turn, "summary")
            elif choice and choice.startswith("edit:") and choice[5:] in EDITABLE_FIELDS:
                turn.update_draft(editing=True)
                field = choice[5:]
                ask(turn, "description" if field == "description" else field)
            else:
                raise Invalid("error_pick_option")
    except Invalid as problem:
        turn.say(turn.refusal(problem))
        ask(turn, state)


def _identified(turn: Turn, name: str | None, phone: str) -> None:
    turn.update_draft(anonymous=False, name=name, phone=phone, pending_name=None, pending_phone=None)
    ask(turn, "summary")


def _contact_card(turn: Turn, card: SharedContact) -> None:
    """A contact card where the name and number are asked (or the choice of a real-name report is, which sharing
    one makes; elsewhere the dialog explains it is not used): the resident's own fills both, checked as typed ones
    are; the name typed already stays. What the checks refuse is said, the rest kept, and the question of what is
    missing asked."""
    state = turn.conversation.state
    if not card.own:
        turn.say(turn.t("error_contact_not_own"))
        ask(turn, state)
        return
    try:
        phone: str | None = clean_phone(card.phone)
    except Invalid:
        phone = None
    name = turn.draft.get("pending_name") if state == "phone" else None
    if name is None:
        try:
            name = clean_name(card.name)
        except Invalid as problem:
            turn.say(turn.t(problem.text_key, **problem.values))
            turn.update_draft(pending_phone=phone)
            ask(turn, "name")
            return
    if phone is None:
        turn.update_draft(pending_name=name)
        turn.say(turn.t("error_phone"))
        ask(turn, "phone")
        return
    _identified(turn, name, phone)


def _occurred(turn: Turn, choice: str | None, text: str | None) -> str:
    today = turn.local_now().date()
    if choice and choice.startswith("when:"):
        key = choice.split(":", 1)[1]
        label = turn.t(f"when_{key}")
        if key == "today":
            return f"{today.isoformat()} ({label})"
        if key == "yesterday":
            return f"{(today - timedelta(days=1)).isoformat()} ({label})"
        return label
    if text is None:
        raise Invalid("error_when_empty")
    return dated(clean_occurred(text, today), today)  # "昨天下午 (2026-12-06)", as the buttons store a day


async def _evidence(turn: Turn, choice: str | None, text: str | None, attachment: Attachment | None) -> None:
    attachments: list[int] = list(turn.draft.get("attachments", []))
    if attachment is not None:
        await _evidence_file(turn, attachment, text, then="evidence")
    elif choice == "evidence:done" or turn.typed_one_of(text, "evidence_done_words"):  # "跳过", "done" typed
        _next(turn, "identity")
    elif choice == "evidence:clear":
        names = await evidence_rows.discard_draft_attachments(turn.session, attachments)
        await delete_files(turn.ctx.evidence_dir, names)
        turn.update_draft(attachments=[])
        turn.say(turn.t("evidence_cleared"))
        ask(turn, "evidence")
    else:
        raise Invalid("error_evidence_expected")


async def _evidence_file(turn: Turn, attachment: Attachment, text: str | None, *, then: str) -> None:
    """A file of evidence, sent at the evidence step or remembered after it (at the identity questions or the
    summary, whose count of files then says it): taken while there is room, then the question `then` asked again."""
    if turn.gathering is not None and turn.gathering.get("group") is not None:
        await _album_file(turn, attachment, text, turn.gathering, then=then)
        return
    limits = turn.ctx.city.limits
    attachments: list[int] = list(turn.draft.get("attachments", []))
    if len(attachments) >= limits.max_attachments:  # at the evidence step "tap Done"; later, only the limit
        raise Invalid("error_evidence_full" if then == "evidence" else "error_evidence_full_late",
                      maximum=limits.max_attachments)
    stored = await accept_file(turn, attachment)
    attachments.append(stored.id)
    turn.update_draft(attachments=attachments)
    turn.say(turn.t("evidence_received", count=len(attachments), maximum=limits.max_attachments))
    if text is not None and text.strip():  # the words written under the file (a caption) say what it shows
        _add_to_description(turn, text)
    ask(turn, then)


async def _album_file(turn: Turn, attachment: Attachment, text: str | None, album: dict[str, Any], *,
                      then: str) -> None:
    """One photo of an album (several sent in one go, each its own message): taken as any file, and answered for
    the album — how many of it were taken (and how many went over the limit), restated by its next photo's step,
    which takes this one's replies back (`dialog.handle`): the resident reads it once, under the last."""
    limits = turn.ctx.city.limits
    attachments: list[int] = list(turn.draft.get("attachments", []))
    taken, over = int(album.get("taken", 0)), int(album.get("over", 0))
    if len(attachments) >= limits.max_attachments:
        over += 1
    else:
        try:
            stored = await accept_file(turn, attachment)
        except Invalid as problem:  # this file refused, and why: said with the album's answer
            turn.say(turn.t(problem.text_key, **problem.values))
        else:
            attachments.append(stored.id)
            turn.update_draft(attachments=attachments)
            taken += 1
    album.update(taken=taken, over=over)
    if taken:
        turn.say(turn.t("evidence_album_received", count=taken, total=len(attachments),
                        maximum=limits.max_attachments), restated=True)
    if over:
        turn.say(turn.t("evidence_album_over", count=over, maximum=limits.max_attachments), restated=True)
    if text is not None and text.strip():  # an album's caption (on its first photo) says what the photos show
        _add_to_description(turn, text)
    ask(turn, then)


def _add_to_description(turn: Turn, words: str) -> None:
    """Words sent with an evidence file join the description on a line of their own, where they fit."""
    limits = turn.ctx.city.limits
    try:
        joined = clean_description(f"{turn.draft.get('description') or ''}\n{words.strip()}",
                                   limits.description_min_chars, limits.description_max_chars)
    except Invalid:
        turn.say(turn.t("evidence_caption_not_kept", limit=limits.description_max_chars))
        return
    turn.update_draft(description=joined)
    turn.say(turn.t("evidence_caption_kept"))


async def _summary(turn: Turn, choice: str | None, text: str | None) -> None:
    if choice is None and turn.typed_one_of(text, "summary_submit_words"):
        choice = "summary:submit"  # "确认", "没问题", "confirm": what the summary's "确认无误请点‘提交’" asks for
    if choice == "summary:edit":
        ask(turn, "edit")
    elif choice == "summary:cancel":
        ask_cancel(turn)
    elif choice == "summary:submit":
        await submit(turn)
    else:
        raise Invalid("error_pick_option")


async def submit(turn: Turn) -> None:
    draft = turn.draft
    city = turn.ctx.city
    missing = [name for name in ("place", "occurred", "description") if not draft.get(name)]
    if missing:
        ask(turn, {"place": "place", "occurred": "when", "description": "description"}[missing[0]])
        return
    since = turn.ctx.clock() - timedelta(hours=24)
    filed = await actions.count_recent_reports(turn.session, turn.conversation.channel, turn.conversation.user_ref,
                                               since)
    if filed >= city.limits.reports_per_day:
        turn.say(turn.t("error_report_limit", count=filed))
        ask(turn, "summary")
        return
    address = await _address_over_report_limit(turn)
    if address is not None and address.over:
        turn.say(turn.t("error_report_limit_network", hours=address.wait_hours))
        ask(turn, "summary")
        return
    decision = await turn.ctx.route(draft["description"], draft.get("district"))
    report = actions.NewReport(
        channel=turn.conversation.channel,
        reporter_ref=turn.conversation.user_ref,
        locale=turn.locale,
        district=draft.get("district"),
        place=draft["place"],
        occurred=draft["occurred"],
        description=draft["description"],
        anonymous=bool(draft.get("anonymous", True)),
        reporter_name=draft.get("name"),
        reporter_phone=draft.get("phone"),
        attachment_ids=draft.get("attachments", []),
    )
    submitted = await actions.submit_report(
        turn.session, report, decision.as_routing(), secret_key=turn.ctx.secret_key,
        case_number_prefix=city.case_number_prefix, year=turn.local_now().year, staff_locale=city.default_locale,
        client_key=address.key if address is not None else None, now=turn.ctx.clock(),
        search_terms=index_terms([draft["place"], draft["description"]]),
    )
    channel, user_ref = turn.conversation.channel, turn.conversation.user_ref  # "other residents": not their own
    signature = await similar_cases.sign_new_case(turn.session, submitted.case_id, draft["description"],
                                                  draft["place"])
    others = await similar_cases.find(turn.session, signature, district=draft.get("district"),
                                      created_at=turn.ctx.clock(), settings=city.similarity,
                                      exclude=submitted.case_id, ranked=SIMILAR_RANKED_AT_SUBMIT,
                                      exclude_author=(channel, actions.pseudonym(turn.session, channel, user_ref)))
    turn.clear_draft()
    text = turn.t("submitted", case_number=submitted.case_number, code=format_receipt_code(submitted.receipt_code))
    if decision.accept_due_at is not None and decision.resolve_due_at is not None:
        text += "\n" + turn.t("submitted_expected", accept_by=turn.format_day(decision.accept_due_at),
                              resolve_by=turn.format_day(decision.resolve_due_at))
    if others and city.similarity.tell_resident:
        text += "\n" + turn.t("submitted_similar")  # that others reported it too; never what they wrote
    turn.say(text, notice_offer=submitted.case_id)
    show_menu(turn)


@dataclass(frozen=True)
class _AddressCount:
    key: str
    over: bool
    wait_hours: int


async def _address_over_report_limit(turn: Turn) -> _AddressCount | None:
    """The per-address report count of a channel that knows the client's address; None where it does not,
    or when the limit is off."""
    limit = turn.ctx.city.limits.reports_per_ip_per_day
    address = None if turn.inbound.shared_address else turn.inbound.client_ip  # a platform server is no resident
    key = client_limits.client_key(turn.ctx.secret_key, address) if address and limit else None
    if key is None:
        return None
    await client_limits.serialise(turn.session, ClientEventKind.REPORT, key)
    now = turn.ctx.clock()
    count, oldest = await client_limits.recent(turn.session, ClientEventKind.REPORT, key, now - REPORT_WINDOW)
    wait = client_limits.wait_minutes(oldest, REPORT_WINDOW, now)
    return _AddressCount(key, count >= limit, max(1, -(-wait // 60)))
