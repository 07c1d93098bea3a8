"""The conversation, once for every channel: commands, menu, language, and the two flows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import report, tracking
from handlers.cancelling import CONFIRM_CANCEL, RETURN_KEY, ask_cancel
from handlers.context import DialogContext, Turn
from handlers.menu import menu_names, show_menu
from handlers.notices import render, waited_line
from handlers.texts import normalise_locale, written_language
from handlers.types import Attachment, Choice, Inbound, Outbound, Packer
from handlers.validation import (
    Invalid,
    join_parts,
    named_option,
    parse_receipt_code,
    says_enough,
    typed_number,
)
from storage import actions, loop, notices

LANGUAGE_CHOSEN = "language_chosen"
"""In the conversation's context once the resident chose a language, or the dialog followed the one they wrote in."""
COMMANDS = ("start", "report", "status", "cancel", "language", "help", "menu")
NUMBERED_STATES = ("idle", "resume", "language", "intake", "district", "evidence", "identity", "summary", "edit",
                   "case_menu")
"""Questions a number typed alone can only answer as the option of that number: one beyond the options is
explained, with their range. (Not the time, a name or a phone number, a text sent to a case, or the rating, whose
digits are its stars and which says so itself.)"""
UNEXPECTED_KINDS = ("sticker", "voice", "video", "audio", "location", "other")
PRESSED = "pressed"
"""In the conversation's context: the button the resident's last message pressed, when that press did something. The
same button pressed again as the next message (a double tap, or the old button tapped once more) is said to be done,
not refused as out of date with the question asked again under the one it just answered."""


@dataclass(frozen=True)
class Step:
    """What one step said, and the outbox rows it queued (none when the caller answers directly); `held` when
    they wait out the channel's `gather` for more of what the resident sent in one go."""

    messages: list[Outbound]
    outbox_ids: list[int]
    held: bool = False


async def handle(session: AsyncSession, inbound: Inbound, ctx: DialogContext, *, queue: Packer | None = None,
                 hold: timedelta | None = None, gather: timedelta | None = None) -> Step:
    """One step of the dialog. The caller owns the transaction; everything here is inside it. With `queue`
    the replies also go to the outbox in this transaction, packed as the channel sends them (held back for
    `hold`, for a channel that may still answer in its HTTP response); without it the caller hands them to
    the resident itself (the web chat's HTTP answer).

    `gather` is how long a channel whose residents send several messages in one go (Telegram: an album's photos,
    each its own update; a long pasted text, cut by the app) waits for the rest: a step that may be continued
    holds its replies that long, and the next message of the same burst takes them back and answers for both
    (`_gather`), so the resident gets one answer and the question once. A text that may be cut is so held in every
    state: its rest answers the step again for the whole text, whatever the step does with a text (a first message
    offered as a report, a description, information added to a case, a rating's comment or an appeal, which are
    refused over their limits, shorter than any text that may be cut, so that nothing written must be undone)."""
    turn = await _turn(session, inbound, ctx)
    conversation = turn.conversation
    withdrawn = await _gather(turn, gather if queue is not None else None)
    await _news_that_waited(turn)
    await _expire_old_draft(turn)
    as_sent = _as_the_step_began(turn)
    _follow_the_language_written(turn)
    pressed_before = turn.context_get(PRESSED)
    turn.context_set(**{PRESSED: turn.inbound.choice})
    if turn.inbound.command is not None:
        await _command(turn, turn.inbound.command.lower(), turn.inbound.command_arg)
    else:
        await _input(turn, pressed_before)
    if turn.continued is not None and turn.continued.get("group") is not None:
        # an album's further file: what the earlier files' steps said that this one does not say anew (a file
        # refused, and why) comes first; their running count and question are restated here
        said = {message.text for message in turn.messages}
        turn.messages[:0] = [message for message in withdrawn if not message.restated and message.text not in said]
    held = turn.gathering is not None and hold is None  # `_gather` sets it only with a gather and a queue
    if held:
        turn.context_set(gather=turn.gathering)
        if as_sent is not None:  # kept with the draft (encrypted): it holds what the resident wrote
            conversation.draft = {**turn.draft, CUT: as_sent}
    payloads = queue(turn.messages) if queue is not None else []
    outbox_ids = await actions.finish_step(session, conversation, payloads, hold=gather if held else hold)
    return Step(turn.messages, outbox_ids, held)


CUT = "cut"
"""The draft's record of a text that may have been cut, while its step's replies are held: the text as sent so far
and the conversation as that step found it (`_as_the_step_began`), for the rest of the text to answer it again."""


async def _gather(turn: Turn, gather: timedelta | None) -> list[Outbound]:
    """Whether this message continues what the resident sent in one go with the last one — a file of the same
    album, or the rest of a text their app cut into parts — while that step's replies still wait: they are taken
    back (returned) and `turn.continued` holds that step's record. The rest of a cut text then answers that step
    again, from where it began, for the whole text (`_take_back`). Sets `turn.gathering` where this step may itself
    be continued. Without a `gather` (a channel that does not wait for more) it only clears the last step's record."""
    inbound = turn.inbound
    record: dict[str, Any] | None = turn.context_get("gather")
    turn.context_set(gather=None)
    cut: dict[str, Any] | None = turn.draft.get(CUT)
    if cut is not None:  # not an update of the draft: its age (`_expire_old_draft`) stays as it was
        turn.conversation.draft = {key: value for key, value in turn.draft.items() if key != CUT}
    if gather is None:
        return []
    plain_text = inbound.text is not None and inbound.command is None and inbound.choice is None and \
        inbound.attachment is None
    continues = record is not None and (
        record.get("group") == inbound.group if inbound.group is not None
        else record.get("group") is None and plain_text and cut is not None)
    withdrawn: list[Outbound] = []
    if continues and record is not None:
        payloads = await actions.withdraw_held_replies(turn.session, turn.conversation, gather)
        withdrawn = [Outbound.from_payload(payload) for payload in payloads]
        # the rest of a cut text that reaches the dialog after the window (the service was slow), when the answer
        # to its first part has gone out: the platform's own signals still say what it is
        if payloads or (inbound.group is None and _sent_right_after(record, inbound, gather)):
            turn.continued = record
            if inbound.group is None and cut is not None:
                await _take_back(turn, record, cut)
    if inbound.group is not None:
        turn.gathering = {"group": inbound.group, **({key: value for key, value in turn.continued.items()
                                                      if key != "group"} if turn.continued else {})}
    elif plain_text and (inbound.may_be_cut or turn.continued is not None):
        parts = int(turn.continued.get("parts", 1)) + 1 if turn.continued else 1
        turn.gathering = {"group": None, "parts": parts, "sequence": inbound.sequence,
                          "sent_at": inbound.sent_at.isoformat() if inbound.sent_at is not None else None}
    return withdrawn


def _sent_right_after(record: dict[str, Any], inbound: Inbound, gather: timedelta) -> bool:
    """Whether the platform says `inbound` is the chat's next message after the one `record` is about, sent within
    `gather` of it: a further part of a text the app cut, however late it is handled."""
    sequence, sent_at = record.get("sequence"), record.get("sent_at")
    if inbound.sequence is None or inbound.sent_at is None or sequence is None or sent_at is None:
        return False
    after = inbound.sent_at - datetime.fromisoformat(str(sent_at))
    return inbound.sequence == int(sequence) + 1 and timedelta(0) <= after <= gather


async def _take_back(turn: Turn, record: dict[str, Any], cut: dict[str, Any]) -> None:
    """The rest of a cut text: the conversation back where the step of its first part(s) found it, what that step
    added to the case taken back (its replies were, unsent), and the text whole, to be answered as one message."""
    conversation = turn.conversation
    conversation.state = str(cut["state"])
    conversation.draft = dict(cut["draft"])
    conversation.context = dict(cut["context"])
    turn.inbound = replace(turn.inbound, text=join_parts(str(cut["text"]), turn.inbound.text or ""))
    added = record.get("follow_up")  # the ids of the parts a text over the limit was added in (one id, before)
    for event_id in added if isinstance(added, list) else [] if added is None else [added]:
        await actions.withdraw_follow_up(turn.session, int(event_id))


def _as_the_step_began(turn: Turn) -> dict[str, Any] | None:
    """For a text that may be cut (`turn.gathering`): the text and the conversation as its step finds it."""
    if turn.gathering is None or turn.gathering.get("group") is not None:
        return None
    conversation = turn.conversation
    return {"text": turn.inbound.text, "state": conversation.state, "draft": dict(conversation.draft or {}),
            "context": dict(conversation.context or {})}


async def _news_that_waited(turn: Turn) -> None:
    """Notices the platform would not take while the resident was away (WeChat's 48 hours) come first: for
    each case its newest status, then what each of its waiting notices said (a staff note, a rejection's
    reason and where to turn, an answer, an extension's new date), oldest first."""
    if not turn.conversation.notices_waiting:
        return
    waited = await notices.take_waiting(turn.session, turn.conversation.channel, turn.conversation.user_ref)
    by_case: dict[int | None, list[dict[str, object]]] = {}
    for notice in waited:
        by_case.setdefault(notice.case_id, []).append(notice.payload)
    for case_id, payloads in by_case.items():
        case = await actions.get_case(turn.session, case_id) if case_id is not None else None
        lines: list[str] = []
        if case is not None:
            lines.append(turn.t("notice_waiting_summary", case_number=case.case_number,
                                status=turn.t(f"status_{case.status}")))
        for payload in payloads:
            if not payload:
                continue
            channel = turn.inbound.channel
            line = waited_line(payload, turn.ctx.texts, turn.locale, turn.ctx.city, channel) if case is not None \
                else render({**payload, "locale": turn.locale}, turn.ctx.texts, city=turn.ctx.city,
                            channel=channel).text
            if line and line not in lines:
                lines.append(line)
        if lines:
            turn.say("\n".join(lines))


async def _expire_old_draft(turn: Turn) -> None:
    updated = turn.conversation.draft_updated_at
    ttl = timedelta(days=turn.ctx.city.limits.draft_ttl_days)
    if updated is not None and report.has_draft(turn) and updated + ttl < turn.ctx.clock():
        await report.discard(turn)
        if turn.conversation.state in report.WIZARD_STATES or turn.conversation.state in ("resume", CONFIRM_CANCEL):
            turn.set_state("idle")
        turn.say(turn.t("draft_expired", days=turn.ctx.city.limits.draft_ttl_days))


def _offer_resume(turn: Turn) -> None:
    turn.set_state("resume")
    turn.ask(turn.t("ask_resume"), [Choice("resume:continue", turn.t("resume_continue")),
                                    Choice("resume:restart", turn.t("resume_restart"))])


async def _cancel_report(turn: Turn) -> None:
    await report.discard(turn)
    turn.context_set(**{RETURN_KEY: None})
    turn.say(turn.t("cancelled_report"))
    show_menu(turn)


async def _confirm_cancel(turn: Turn, choice: str | None, text: str | None) -> None:
    if choice == "cancel:discard" or turn.typed_one_of(text, "cancel_discard_words"):
        await _cancel_report(turn)
    elif choice == "cancel:keep" or turn.typed_one_of(text, "cancel_keep_words"):
        turn.set_state(turn.context_get(RETURN_KEY) or "idle")
        turn.context_set(**{RETURN_KEY: None})
        turn.say(turn.t("cancel_kept"))
        await reask(turn)
    else:
        turn.say(turn.t("error_pick_option"))
        ask_cancel(turn)


def _ask_language(turn: Turn) -> None:
    previous = turn.conversation.state
    if previous != "language":
        turn.context_set(language_return=previous)
    turn.set_state("language")
    turn.ask(turn.t("ask_language"), [Choice("language:zh", "中文"), Choice("language:en", "English")])


async def reask(turn: Turn) -> None:
    """Put the current question again (after help, an explanation or a language change), in the resident's
    language."""
    state = turn.conversation.state
    if state in report.WIZARD_STATES:
        report.ask(turn, state)
    elif state == "resume":
        _offer_resume(turn)
    elif state == CONFIRM_CANCEL:
        ask_cancel(turn)
    elif state == "language":
        _ask_language(turn)
    elif state in tracking.TRACKING_STATES:
        if not await tracking.ask_again(turn):
            show_menu(turn)
    else:
        show_menu(turn)


async def _command(turn: Turn, command: str, argument: str | None) -> None:
    state = turn.conversation.state
    if command == "report":
        if argument and (not report.has_draft(turn) or turn.draft.get("step") == "intake"):
            # "/report 窗口人员…": the description comes with it (and replaces one sent before it)
            await _offer_intake(turn, argument, offer=False)
        _report_wanted(turn)
    elif command == "start":
        if report.has_draft(turn):
            _offer_resume(turn)
        else:
            show_menu(turn, greeting=True)
    elif command == "status":
        if argument and argument.strip():
            await tracking.check_code(turn, argument)
            if turn.conversation.state == "idle":
                show_menu(turn)
        else:
            tracking.ask_code(turn)
    elif command == "cancel":
        if state == CONFIRM_CANCEL:  # asked twice: meant
            await _cancel_report(turn)
            return
        if (state in report.WIZARD_STATES or state == "resume") and report.has_draft(turn):
            ask_cancel(turn)  # what the resident wrote goes only once they say so
            return
        if state in report.WIZARD_STATES or state == "resume":
            await report.discard(turn)
            turn.say(turn.t("cancelled_report"))
        elif state in tracking.TRACKING_STATES or state == "language":
            turn.say(turn.t("cancelled"))
        else:
            turn.say(turn.t("nothing_to_cancel"))
        show_menu(turn)
    elif command == "language":
        _ask_language(turn)
    elif command == "help":
        turn.say(turn.t("help"))
        await reask(turn)
    elif command == "menu":
        show_menu(turn)
    else:
        turn.say(turn.t("error_unknown_command", command=command[:32]))
        await reask(turn)


def _resolve_choice(turn: Turn) -> tuple[str | None, str | None, bool]:
    """(choice key, free text, stale) — a button press, or typed text that names an offered option."""
    offered: list[list[str]] = turn.context_get("choices") or []
    inbound = turn.inbound
    if inbound.choice is not None:
        key, case_ref = loop.button_parts(inbound.choice)
        if any(offered_key == inbound.choice for offered_key, _ in offered):
            return key, None, False
        # a notice's button about the case the conversation is on, pressed after its menu took the notice's place
        if case_ref is not None and case_ref == str(turn.context_get("case_id")) and any(
                loop.button_parts(offered_key)[0] == key for offered_key, _ in offered):
            return key, None, False
        if inbound.choice.startswith("menu:") and turn.conversation.state in tracking.TRACKING_STATES:
            return inbound.choice, None, False  # the menu under an earlier message, pressed while a case waits
        return None, None, True
    text = inbound.text
    if text is not None and offered:
        typed = text.strip()
        number = typed_number(typed)
        if turn.conversation.state == "when" and typed.rstrip("。.").endswith(("号", "日")):
            number = None  # "3号" at the question of the time is the 3rd of the month, not the third option
        # a digit in the rating question is the stars; the options after the five ratings answer to their position
        first = tracking.RATINGS + 1 if turn.conversation.state == "rating" else 1
        if number is not None and first <= number <= len(offered):
            return loop.button_parts(offered[number - 1][0])[0], None, False
        named = named_option(typed, offered)
        if named is not None:
            return loop.button_parts(named)[0], None, False
    return None, text, False


async def _rating_under_a_notice(turn: Turn) -> bool:
    """A rating button under the notice that a case was closed, pressed when the conversation has moved on (to the
    menu, to something else about that case, days later): it rates the resident's case as the rating question
    would; "done" under the question to add information that the closing cut short is answered too
    (`tracking.rate_under_a_notice`). False for any other out-of-date button."""
    key, case_ref = loop.button_parts(turn.inbound.choice or "")
    answered = await tracking.rate_under_a_notice(turn, key, case_ref)
    if answered is None:
        return False
    if not answered:
        show_menu(turn)
    return True


def _beyond_the_options(turn: Turn, text: str | None) -> int | None:
    """The number typed alone ("9", "九", "第9个") to a question of `NUMBERED_STATES` that has fewer options."""
    offered = turn.context_get("choices") or []
    number = typed_number(text) if text is not None and offered else None
    if number is None or turn.conversation.state not in NUMBERED_STATES or 1 <= number <= len(offered):
        return None
    return number if number < 100 else None  # a longer number is no option's (a code, a date, a phone number)


def _typed_menu_option(turn: Turn, text: str | None) -> str | None:
    """The menu option `text` names ("我要举报", "投诉"), where the menu is not what was offered."""
    return named_option(text, menu_names(turn))


async def _turn(session: AsyncSession, inbound: Inbound, ctx: DialogContext) -> Turn:
    """The resident's conversation loaded for a step, in the language their client gives until they have one."""
    conversation = await actions.load_conversation(session, inbound.channel, inbound.user_ref)
    if conversation.locale is None:
        conversation.locale = normalise_locale(inbound.locale, ctx.city.default_locale)
    return Turn(session=session, inbound=inbound, conversation=conversation, ctx=ctx)


async def restate(session: AsyncSession, inbound: Inbound, ctx: DialogContext) -> Step:
    """A message its channel sent again after it was handled (the web page's retry of a request whose answer it
    never got): nothing is done twice; the resident is told it arrived, and the question they are at is asked
    again. The caller owns the transaction."""
    turn = await _turn(session, inbound, ctx)
    turn.say(turn.t("already_received"))
    await reask(turn)
    await actions.finish_step(session, turn.conversation)
    return Step(turn.messages, [])


def _follow_the_language_written(turn: Turn) -> None:
    """The language first taken from the resident's app or browser (or the city's default) gives way, once, to the
    one they plainly write in when they write at the menu or first of all — a Changsha resident whose phone is set
    to English and who writes in Chinese — and says so in both languages. Never after they chose a language, nor
    for what they write in answer to a question (a Chinese address copied by a resident who reads English)."""
    command = (turn.inbound.command or "").lower()
    # "/report <what happened>" is written as much as the same words sent alone; another command's argument (a
    # receipt code) says nothing of a language
    text = turn.inbound.command_arg if command == "report" else turn.inbound.text
    if turn.context_get(LANGUAGE_CHOSEN) or text is None or (command and command != "report") or \
            turn.conversation.state not in (None, "idle", "intake"):
        return
    written = written_language(text)
    if written is None or written == turn.locale:
        return
    turn.conversation.locale = written
    turn.context_set(**{LANGUAGE_CHOSEN: "followed"})
    turn.say(turn.t("language_followed"))


async def _input(turn: Turn, pressed_before: str | None = None) -> None:
    inbound = turn.inbound
    state = turn.conversation.state
    if inbound.attachment is not None and inbound.attachment.place and state == "place":
        await report.answer(turn, None, inbound.attachment.place, None)  # a shared location says where
        return
    if inbound.attachment is not None and inbound.attachment.contact is not None and \
            state not in report.IDENTITY_STATES:  # the report's identity questions take one (`report.answer`)
        turn.say(turn.t("error_contact_here"))
        await reask(turn)
        return
    if inbound.attachment is not None and inbound.attachment.kind in UNEXPECTED_KINDS:
        turn.say(turn.t("error_unexpected_input"))
        await reask(turn)
        return
    choice, text, stale = _resolve_choice(turn)
    if stale and inbound.choice == pressed_before:
        turn.say(turn.t("button_already_pressed"))  # the question it answered was asked just below
        return
    if stale and await _rating_under_a_notice(turn):
        return
    if stale:
        turn.context_set(**{PRESSED: None})  # it did nothing: pressed again, it is as out of date
        turn.say(turn.t("error_stale_button"))
        await reask(turn)
        return
    if choice is None and (number := _beyond_the_options(turn, text)) is not None:
        turn.say(turn.t("error_choice_range", number=number, maximum=len(turn.context_get("choices"))))
        await reask(turn)
        return
    if state == "rating" and choice is None and text is not None and text.strip() in {"1", "2", "3", "4", "5"}:
        choice = f"rate:{text.strip()}"
    if choice is not None and choice.startswith("menu:"):
        await _menu(turn, choice)
    elif choice is not None and choice.startswith("language:"):
        turn.conversation.locale = choice.split(":", 1)[1]
        turn.context_set(**{LANGUAGE_CHOSEN: "chosen"})
        turn.say(turn.t("language_set"))
        turn.set_state(turn.context_get("language_return") or "idle")
        turn.context_set(language_return=None)
        await reask(turn)
    elif state == CONFIRM_CANCEL:
        await _confirm_cancel(turn, choice, text)
    elif state == "resume":
        if choice == "resume:continue" or turn.typed_one_of(text, "resume_continue_words"):
            report.resume(turn)
        elif choice == "resume:restart" or turn.typed_one_of(text, "resume_restart_words"):
            await report.discard(turn)
            report.start(turn)
        else:
            turn.say(turn.t("error_pick_option"))
            _offer_resume(turn)
    elif state == "intake" and (named := _typed_menu_option(turn, text)) is not None:
        await _menu(turn, named)  # "我要举报" typed to the offer takes it; another option leaves the text waiting
    elif state in report.WIZARD_STATES and choice is None and turn.typed_one_of(text, "cancel_words"):
        ask_cancel(turn)  # "取消" typed: asked as /cancel is, never kept as the place or refused as not a time
    elif state in report.WIZARD_STATES:
        await report.answer(turn, choice, text, inbound.attachment)
    elif state in tracking.TRACKING_STATES and choice is None and text is not None and \
            parse_receipt_code(text) is not None:
        await tracking.check_code(turn, text)  # a code opens its case, whatever case was open: never information
        if turn.conversation.state == "idle":
            show_menu(turn)
    elif state in tracking.TRACKING_STATES and choice is None and (named := _typed_menu_option(turn, text)):
        await _menu(turn, named)  # "我要举报" while a case waits for a rating or information
    elif state == "rating" and choice is None and not report.has_draft(turn) and not tracking.adding_cut_short(turn) \
            and not tracking.is_rating(turn, text) and await _offer_intake(turn, text):
        pass  # a new complaint sent while the rating question waits: kept and offered as a report
    elif state == "status_code" and choice is None and not report.has_draft(turn) and \
            not tracking.typed_as_code(text) and await _offer_intake(turn, text):
        pass  # a complaint written to the code question (查询进度 tapped first): kept and offered as a report
    elif state in tracking.TRACKING_STATES:
        if not await tracking.answer(turn, choice, text, inbound.attachment):
            show_menu(turn)
    elif state == "language":
        turn.say(turn.t("error_pick_language"))  # in both languages, as the question: hers is what she is choosing
        _ask_language(turn)
    elif text is not None and parse_receipt_code(text) is not None:
        await tracking.check_code(turn, text)
        if turn.conversation.state == "idle":
            show_menu(turn)
    elif (named := _typed_menu_option(turn, text)) is not None:
        await _menu(turn, named)  # a menu option typed by its name where no menu was shown: a first "我要举报"
    elif report.has_draft(turn):
        limits = turn.ctx.city.limits
        if inbound.attachment is not None or says_enough(text, limits.description_min_chars,
                                                         limits.description_max_chars):
            turn.say(turn.t("draft_waiting_not_kept"))  # said, not silently dropped: the draft comes first
        _offer_resume(turn)
    elif not await _offer_intake(turn, text, inbound.attachment):
        show_menu(turn)  # a greeting or a question: the menu


async def _offer_intake(turn: Turn, text: str | None, attachment: Attachment | None = None, *,
                        offer: bool = True) -> bool:
    """`report.offer_intake`, with what it refuses explained (a description over the limit, a file the evidence
    step would not take)."""
    try:
        return await report.offer_intake(turn, text, attachment, offer=offer)
    except Invalid as problem:
        turn.say(turn.refusal(problem))
        return False


def _report_wanted(turn: Turn) -> None:
    """"File a report" (command, menu or typed): a new report, or what to do with the draft there is — one that
    holds only the text the resident sent first begins with it."""
    if not report.has_draft(turn):
        report.start(turn)
    elif turn.draft.get("step") == "intake":
        report.resume(turn)
    else:
        _offer_resume(turn)


async def _menu(turn: Turn, choice: str) -> None:
    action = choice.split(":", 1)[1]
    if action == "report":
        _report_wanted(turn)
    elif action == "status":
        tracking.ask_code(turn)
    elif action == "help":
        turn.say(turn.t("help"))
        show_menu(turn)
    elif action == "language":
        _ask_language(turn)
