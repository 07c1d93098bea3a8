"""With the receipt code: the status and trace of a case, adding information, rating the handling."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from handlers.context import Turn
from handlers.description import in_parts
from handlers.evidence import accept_file
from handlers.routing import staff_channels
from handlers.texts import Texts
from handlers.types import Attachment, Choice
from handlers.validation import Invalid, letters, parse_receipt_code, says_enough, typed_number
from nlp.search import index_terms
from nlp.tokenizer import normalise
from storage import actions, client_limits, loop
from storage.models import (
    CASE_STATES,
    CLOSED_STATUSES,
    RESTING_STATES,
    Case,
    CaseStatus,
    ClientEventKind,
    TraceKind,
)

TRACKING_STATES = ("status_code", *CASE_STATES)
RATING_COMMENT_MAX_CHARS = 1000
APPEAL_MAX_CHARS = 2000
"""The longest comment on a rating and the longest appeal: a longer text is explained and asked for again, never cut.
Both are shorter than any text a channel says may be the first part of a cut paste (Telegram: 2,048 characters), so
such a part is refused, not written, and the whole is refused once its rest has come (`dialog._gather`)."""


def ask_code(turn: Turn) -> None:
    turn.set_state("status_code")
    turn.ask(turn.t("ask_code"))


def typed_as_code(text: str | None) -> bool:
    """Whether `text` is meant as a receipt code, however mistyped: at least half its letters and digits are digits
    ("1234 5678 9012 345", "我的查询码是1234…"). A text that says something else, at length, is a complaint sent to
    the code question."""
    if text is None:
        return False
    characters = [ch for ch in text if ch.isalnum()]
    digits = sum(ch.isdigit() for ch in characters)
    return digits * 2 >= len(characters)


async def check_code(turn: Turn, text: str) -> None:
    """Look up a case by receipt code, throttling a resident who keeps guessing.

    Two counts, both checked before the code counts for anything (a refusal says nothing about the code, `_refuse`):
    the resident's own wrong codes (her conversation: a web-chat cookie, a Telegram or WeChat user), and, where
    the channel knows it, her address's. A resident who is stopped adds nothing to her address's count, so one
    person mistyping or guessing behind an office or carrier NAT stops only herself; the address's ceiling, far
    higher, bounds an attacker who starts a new conversation whenever one is stopped (docs/security.md)."""
    limits = turn.ctx.city.limits
    channel, user_ref = turn.conversation.channel, turn.conversation.user_ref
    now = turn.ctx.clock()
    window = timedelta(minutes=limits.status_window_minutes)
    wrong, oldest = await actions.recent_wrong_codes(turn.session, channel, user_ref, now - window)
    if wrong >= limits.status_wrong_codes:
        await _refuse(turn, text, "error_code_throttled", client_limits.wait_minutes(oldest, window, now))
        return
    address, address_limit = await _address_key(turn)
    if address is not None:
        wrong, oldest = await client_limits.recent(turn.session, ClientEventKind.WRONG_CODE, address, now - window)
        if wrong >= address_limit:
            await _refuse(turn, text, "error_code_throttled_network", client_limits.wait_minutes(oldest, window, now))
            return
    code = parse_receipt_code(text)
    if code is None:
        turn.say(turn.t("error_code_format"))
        ask_code(turn)
        return
    case = await actions.find_case_by_receipt(turn.session, turn.ctx.secret_key, code)
    if case is None:
        await actions.record_wrong_code(turn.session, channel, user_ref, now, client_key=address)
        turn.say(turn.t("error_code_unknown"))
        ask_code(turn)
        return
    _open(turn, case)


async def _refuse(turn: Turn, text: str, text_key: str, minutes: int) -> None:
    """Tell a stopped resident how long to wait — unless `text` is the code of a case she filed from this very
    conversation: opening that tells her nothing she did not know, and every other code, valid or not, gets
    the same refusal after the same work, so the throttle says nothing about codes, by its words or its time."""
    code = parse_receipt_code(text)
    # only her own case is looked for: another's valid code reads no more than a wrong one, so the refusal's time
    # says nothing of it either
    case = await actions.find_own_case_by_receipt(turn.session, turn.ctx.secret_key, code,
                                                  turn.conversation) if code else None
    if case is not None:
        _open(turn, case)
        return
    turn.set_state("idle")
    turn.say(turn.t(text_key, minutes=minutes))


def _open(turn: Turn, case: Case) -> None:
    """Show `case`, which the conversation may follow for `case_session_minutes`."""
    until = turn.ctx.clock() + timedelta(minutes=turn.ctx.city.limits.case_session_minutes)
    turn.context_set(case_id=case.id, case_until=until.isoformat(), **{loop.CUT_SHORT: None})
    show_case(turn, case)


async def _address_key(turn: Turn) -> tuple[str | None, int]:
    """The counted client address of a channel that knows it (locked for this transaction) and its limit;
    None where the channel does not know it, or when the limit is off. A platform server's address (WeChat
    relays every resident's messages) is counted apart from residents' own, under its own limit."""
    inbound, limits = turn.inbound, turn.ctx.city.limits
    limit = limits.status_wrong_codes_per_platform_address if inbound.shared_address else \
        limits.status_wrong_codes_per_ip
    if not inbound.client_ip or not limit:
        return None, limit
    counted = f"{inbound.channel} relay {inbound.client_ip}" if inbound.shared_address else inbound.client_ip
    key = client_limits.client_key(turn.ctx.secret_key, counted)
    if key is not None:
        await client_limits.serialise(turn.session, ClientEventKind.WRONG_CODE, key)
    return key, limit


def _trace_line(turn: Turn, case: Case, kind: str, detail: dict[str, object], body: str | None) -> str | None:
    """A trace event as the reporter reads it (None: an internal step they do not see, such as each hop of a
    transfer). What staff wrote for the reporter — a status note, a rejection's reason — comes with it."""
    if detail.get("internal"):
        return None
    if kind == TraceKind.ROUTED:
        name = turn.ctx.city.queue_name(str(detail.get("queue", "")), turn.locale)
        return turn.t("trace_routed", queue=name)
    if kind == TraceKind.RATED:
        line = (turn.t("trace_unsolved") if detail.get("unsolved") else
                turn.t("trace_rated", rating=detail.get("rating")))
    elif kind == TraceKind.EXTENDED:
        until = str(detail.get("until") or "")
        line = turn.t("trace_extended", until=turn.format_day(datetime.fromisoformat(until)) if until else "")
    elif kind == TraceKind.APPEAL_DECIDED:
        line = turn.t("trace_appeal_upheld" if detail.get("upheld") else "trace_appeal_granted")
    else:
        line = turn.t(f"trace_{kind}")
    # answers are listed below the trace; a reopening's reason is the rating's comment, shown with the rating
    if body and kind not in (TraceKind.ANSWERED, TraceKind.FOLLOW_UP, TraceKind.REOPENED):
        line += f"：{body}" if turn.locale == "zh" else f": {body}"
    return line


def show_case(turn: Turn, case: Case) -> None:
    lines = [turn.t("case_header", case_number=case.case_number, status=turn.t(f"status_{case.status}"))]
    waiting = case.status not in CLOSED_STATUSES and case.status != CaseStatus.ANSWERED  # dates still to come
    if waiting and case.accept_due_at is not None and case.resolve_due_at is not None:
        resolve_by = turn.format_day(case.resolve_due_at)
        lines.append(turn.t("case_expected_answer", resolve_by=resolve_by) if case.accepted_at is not None else
                     turn.t("case_expected", accept_by=turn.format_day(case.accept_due_at), resolve_by=resolve_by))
    lines.append(turn.t("case_trace"))
    answers: list[str] = []
    for event in case.trace:
        line = _trace_line(turn, case, event.kind, event.detail, event.body)
        if line is not None:
            lines.append(f"{turn.format_time(event.created_at)}  {line}")
        if event.kind == TraceKind.ANSWERED and event.body:
            answers.append(f"{turn.format_time(event.created_at)}\n{event.body}")
    text = "\n".join(lines)
    if answers:
        text += "\n\n" + turn.t("case_answers") + "\n" + "\n\n".join(answers)
    turn.say(text, notice_offer=case.id if case.status not in CLOSED_STATUSES else None)
    ask_case_menu(turn, case)


def ask_case_menu(turn: Turn, case: Case) -> None:
    turn.set_state("case_menu")
    choices = []
    if case.status not in CLOSED_STATUSES:
        choices.append(Choice("case:follow_up", turn.t("case_follow_up")))
    if case.status == CaseStatus.ANSWERED:
        choices.append(Choice("case:solved", turn.t("case_solved")))
    elif case.status in CLOSED_STATUSES and case.rating is None and case.status != CaseStatus.REJECTED:
        choices.append(Choice("case:rate", turn.t("case_rate")))
    if _may_appeal(turn, case):
        choices.append(Choice("case:appeal", turn.t("case_appeal")))
    choices.append(Choice("case:menu", turn.t("case_back")))
    turn.ask(turn.t("ask_case_menu"), choices)


CASE_OPTIONS = ("follow_up", "solved", "rate", "appeal", "menu")


def _typed_case_option(turn: Turn, text: str | None) -> str | None:
    """The case menu's option a typed text names in other words than its button's ("补充", "已解决", "返回",
    "solved", "back"), whichever the case offers: an option it does not offer is explained as any other text."""
    return next((f"case:{option}" for option in CASE_OPTIONS if turn.typed_one_of(text, f"case_{option}_words")), None)


def _may_appeal(turn: Turn, case: Case) -> bool:
    return (case.status == CaseStatus.REJECTED and not case.appeal_pending
            and case.appeal_count < turn.ctx.city.loop.appeal_limit)


RATINGS = 5  # stars, the rating question's first options (5 down to 1); "not solved" and "later" follow


def rating_labels(texts: Texts, locale: str) -> list[str]:
    """The labels of the rating question's options (`loop.RATING_CHOICES`) in `locale`: the dialog asks with them,
    and the console's closing sends them with its notice."""
    return ["★" * n for n in range(RATINGS, 0, -1)] + [texts.get(locale, "rate_unsolved"),
                                                      texts.get(locale, "rate_later")]


def rating_choices(turn: Turn, *, solved: bool = False) -> list[Choice]:
    """The rating question's options; without "not solved" once the resident has said the answer solved it."""
    return [Choice(key, label)
            for (key, _), label in zip(loop.RATING_CHOICES, rating_labels(turn.ctx.texts, turn.locale), strict=True)
            if not (solved and key == "rate:unsolved")]


def said_solved(case: Case) -> bool:
    """Whether the resident said the case's last answer solved it (no reopening since)."""
    last = next((event.kind for event in reversed(case.trace)
                 if event.kind in (TraceKind.SOLVED, TraceKind.REOPENED)), None)
    return last == TraceKind.SOLVED


def is_rating(turn: Turn, text: str | None) -> bool:
    """Whether a typed text answers the rating question (stars, or "not solved")."""
    return _typed_unsolved(turn, text) or _rating_value(None, text) is not None


def _typed_unsolved(turn: Turn, text: str | None) -> bool:
    """Whether `text` says the problem was not solved ("问题没有解决", "没解决", "not resolved")."""
    typed = letters(text)
    return bool(typed) and (typed == letters(turn.t("rate_unsolved")) or turn.typed_one_of(text, "rate_unsolved_words"))


def adding_cut_short(turn: Turn) -> bool:
    """Whether the conversation waits for the rating of a case whose closing cut short the information (or the
    appeal) the resident was adding to it (`storage.loop.offer_rating`): what they send then, other than a rating,
    is what they meant to add, and is not added to the closed case."""
    state, case_id = turn.conversation.state, turn.context_get("case_id")
    return state == "rating" and case_id is not None and str(turn.context_get(loop.CUT_SHORT)) == str(case_id)


def ask_rating(turn: Turn, case: Case, *, solved: bool = False) -> None:
    """The rating question about `case`; `solved`: the resident has just said so (not yet in the loaded trace)."""
    turn.set_state("rating")
    turn.ask(turn.t("ask_rating"), rating_choices(turn, solved=solved or said_solved(case)))


async def ask_again(turn: Turn) -> bool:
    """The question of the tracking state the conversation is in, again; False when the case it was about is no
    longer open to this conversation (the menu is due)."""
    state = turn.conversation.state
    if state == "status_code":
        ask_code(turn)
        return True
    case = await _current_case(turn)
    if case is None:
        return False
    if state == "follow_up":
        turn.ask(turn.t("ask_follow_up"), [Choice("follow_up:done", turn.t("follow_up_done"))])
    elif state == "rating":
        ask_rating(turn, case)
    elif state == "rating_comment":
        _ask_rating_comment(turn)
    elif state == "appeal":
        turn.ask(turn.t("ask_appeal"))
    else:
        ask_case_menu(turn, case)
    return True


async def _current_case(turn: Turn) -> Case | None:
    """The case opened with a code in this conversation, while that permission lasts."""
    case_id, until = turn.context_get("case_id"), turn.context_get("case_until")
    if case_id is None or until is None or datetime.fromisoformat(until) < turn.ctx.clock():
        turn.context_set(case_id=None, case_until=None)
        return None
    return await actions.get_case(turn.session, int(case_id))


async def answer(turn: Turn, choice: str | None, text: str | None, attachment: Attachment | None) -> bool:
    """Handle input in a tracking state; False means the case session expired and the menu is due."""
    state = turn.conversation.state
    if state == "status_code":
        if turn.typed_one_of(text, "case_menu_words"):
            turn.set_state("idle")  # "菜单", "back": the way out the refusal below names
            return False
        if text is None:
            turn.say(turn.t("error_code_format"))
            ask_code(turn)
        else:
            await check_code(turn, text)
        return turn.conversation.state != "idle"  # throttled: the menu follows the explanation
    case = await _current_case(turn)
    if case is None:
        turn.say(turn.t("case_session_expired"))
        return False
    if state == "case_menu":
        choice = choice or _typed_case_option(turn, text)
        if choice == "case:follow_up" and case.status not in CLOSED_STATUSES:
            turn.set_state("follow_up")
            turn.ask(turn.t("ask_follow_up"), [Choice("follow_up:done", turn.t("follow_up_done"))])
        elif choice == "case:solved" and case.status == CaseStatus.ANSWERED:
            await loop.close_as_solved(turn.session, case,
                                       other_device=actions.from_other_device(case, turn.conversation))
            turn.say(turn.t("solved_thanks"))
            ask_rating(turn, case, solved=True)
        elif choice == "case:rate" and case.status in CLOSED_STATUSES and case.rating is None:
            ask_rating(turn, case)
        elif choice == "case:appeal" and _may_appeal(turn, case):
            turn.set_state("appeal")
            turn.ask(turn.t("ask_appeal"))
        elif choice == "case:menu":
            return False
        elif choice is None and case.status not in CLOSED_STATUSES and (attachment is not None or says_enough(
                text, turn.ctx.city.limits.description_min_chars, turn.ctx.city.limits.description_max_chars)):
            turn.set_state("follow_up")  # sent about an open case without pressing "补充材料" first: that is what
            await _follow_up(turn, case, None, text, attachment)  # it is, and the reply says it was added
        else:
            turn.say(turn.t("error_pick_option"))
            ask_case_menu(turn, case)
        return True
    if state == "follow_up":
        await _follow_up(turn, case, choice, text, attachment)
        return True
    if state == "rating":
        if choice == "rate:later" or (choice is None and letters(text) in {
                letters(word) for word in turn.words("rate_later_words")} - {""}):  # "以后再评", "later"
            turn.say(turn.t("rating_later"))
            turn.context_set(**{loop.CUT_SHORT: None})
            return False
        if adding_cut_short(turn) and (choice == "follow_up:done" or (choice is None and letters(text) and letters(
                text) == letters(turn.t("follow_up_done")))):  # "完成" pressed or typed after the closing
            turn.say(turn.t("follow_up_ended"))
            ask_rating(turn, case)
            return True
        unsolved = choice == "rate:unsolved" or _typed_unsolved(turn, text)
        rating = None if unsolved else _rating_value(choice, text)
        if rating is None and not unsolved:
            # information still coming after the closing cut it short: said not to be added, not "pick 1–5 stars"
            turn.say(turn.t("not_added_closed" if adding_cut_short(turn) and choice is None else "error_rating"))
            ask_rating(turn, case)
            return True
        turn.context_set(**{loop.CUT_SHORT: None})
        if case.status not in CLOSED_STATUSES or case.rating is not None:
            _not_ratable(turn, case)
            return False
        turn.context_set(pending_rating=rating if rating is not None else 0)
        turn.set_state("rating_comment")
        _ask_rating_comment(turn)
        return True
    if state == "rating_comment":
        comment = None if choice == "comment:skip" else (text or "").strip() or None
        if comment is not None and len(comment) > RATING_COMMENT_MAX_CHARS:  # said, and asked again: never cut
            turn.say(turn.t("error_too_long", limit=RATING_COMMENT_MAX_CHARS, length=len(comment)))
            _ask_rating_comment(turn)
            return True
        pending = turn.context_get("pending_rating")
        turn.context_set(pending_rating=None)
        if pending is None or case.status not in CLOSED_STATUSES or case.rating is not None:
            _not_ratable(turn, case)  # rated meanwhile (from another device), or reopened
            return False
        told = "reopened" in turn.ctx.city.notices.events  # then the notice says it is handled again
        reopened = await loop.rate(turn.session, case, pending or None, comment=comment, unsolved=pending == 0,
                                   rehandle_limit=turn.ctx.city.loop.rehandle_limit,
                                   staff_targets=staff_channels(turn.ctx.city, case.queue),
                                   staff_locale=turn.ctx.city.default_locale, tell_reporter=told,
                                   other_device=actions.from_other_device(case, turn.conversation))
        turn.say(turn.t("rated_reopened_told" if told else "rated_reopened") if reopened else
                 turn.t("rated", rating=pending) if pending else turn.t("rated_unsolved"))
        return False
    if state == "appeal":
        if not text or not text.strip():
            turn.say(turn.t("error_appeal_text"))
            turn.ask(turn.t("ask_appeal"))
            return True
        if not _may_appeal(turn, case):
            turn.say(turn.t("error_pick_option"))
            return False
        if len(text.strip()) > APPEAL_MAX_CHARS:  # said, and asked again: never cut
            turn.say(turn.t("error_too_long", limit=APPEAL_MAX_CHARS, length=len(text.strip())))
            turn.ask(turn.t("ask_appeal"))
            return True
        await loop.appeal(turn.session, case, text.strip(), appeal_limit=turn.ctx.city.loop.appeal_limit,
                          staff_targets=staff_channels(turn.ctx.city, case.queue),
                          staff_locale=turn.ctx.city.default_locale,
                          other_device=actions.from_other_device(case, turn.conversation))
        turn.say(turn.t("appealed"))
        return False
    return False


NOTICE_RATING_STATES = (*RESTING_STATES, "follow_up", "appeal")
"""Where a rating button under a closing notice still rates its case: at rest, or doing something else about it (the
conversation waited for the rating and has moved on since, or the notice came while it was busy)."""


async def rate_under_a_notice(turn: Turn, key: str, case_ref: str | None) -> bool | None:
    """A rating button under the notice that the resident's case closed (`loop.offer_rating`), pressed when the
    conversation no longer waits for that rating: answered as the rating question would answer it — the stars, "not
    solved", "later", or that the case was rated already — whatever came between; and "done" under the question to
    add information that the closing cut short. None (an out-of-date button) in the middle of a report or another
    question, or for a case that is not this resident's. False: the menu is due."""
    if key == "follow_up:done" and adding_cut_short(turn):  # "done" under the question the closing cut short
        return await answer(turn, key, None, None)
    if not key.startswith("rate:") or case_ref is None or not case_ref.isdigit() or \
            turn.conversation.state not in NOTICE_RATING_STATES:
        return None
    case = await actions.get_case(turn.session, int(case_ref))
    if case is None or not (actions.filed_by(case, turn.conversation) or case_ref == str(turn.context_get("case_id"))):
        return None
    until = turn.ctx.clock() + timedelta(minutes=turn.ctx.city.limits.case_session_minutes)
    turn.context_set(case_id=case.id, case_until=until.isoformat())
    turn.set_state("rating")
    return await answer(turn, key, None, None)


def _ask_rating_comment(turn: Turn) -> None:
    """The optional comment after the stars (asked again when one was over its limit)."""
    turn.ask(turn.t("ask_rating_comment"), [Choice("comment:skip", turn.t("comment_skip"))])


def _not_ratable(turn: Turn, case: Case) -> None:
    turn.say(turn.t("error_case_rated", rating=case.rating) if case.rating is not None else
             turn.t("error_case_not_ratable"))


_STARS_TYPED = re.compile(r"^(?:给|打|评|give|rate)?\s*([1-5一二三四五]|one|two|three|four|five)\s*[颗个]?\s*"
                          r"(?:星|分|stars?)?\s*(?:好评)?$", re.IGNORECASE)
""""5星", "给5星", "五颗星", "4分", "五星好评", "give 3 stars", "four stars", "two" (traditional characters read as
simplified: "五顆星", "給4星")."""
_CHINESE_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def _rating_value(choice: str | None, text: str | None) -> int | None:
    raw = choice.split(":", 1)[1] if choice and choice.startswith("rate:") else (text or "").strip()
    raw = raw.replace("\ufe0f", "").replace("⭐", "★").replace("🌟", "★")  # the stars of a phone's emoji keyboard
    typed = _STARS_TYPED.match(normalise(raw))  # "5星", "五颗星", "4分", "3 stars" (NFKC, simplified, lower case)
    if typed:
        return _CHINESE_DIGITS.get(typed.group(1)) or int(typed.group(1))
    value = len(raw) if raw.count("★") and set(raw) == {"★"} else typed_number(raw)  # ④ or ５ typed alike
    return value if value is not None and 1 <= value <= 5 else None


async def _follow_up(turn: Turn, case: Case, choice: str | None, text: str | None,
                     attachment: Attachment | None) -> None:
    done = [Choice("follow_up:done", turn.t("follow_up_done"))]
    if choice == "follow_up:done":
        refreshed = await actions.get_case(turn.session, case.id)
        assert refreshed is not None
        show_case(turn, refreshed)
        return
    if case.status in CLOSED_STATUSES and choice is None and attachment is None and case.rating is None and (
            _rating_value(None, text) is not None or _typed_unsolved(turn, text)):
        turn.set_state("rating")  # "5星" typed to the notice that closed the case while information was being added
        await answer(turn, None, text, None)
        return
    if case.status in CLOSED_STATUSES:
        turn.say(turn.t("error_case_closed"))
        ask_case_menu(turn, case)
        return
    try:
        if attachment is not None:
            stored = await accept_file(turn, attachment)
            # the words sent with the file, over the limit of one addition in parts as a text alone (the file with
            # the first); the album's first file tells the assignee, its further ones (one step each) join that
            caption = text.strip() if text is not None and text.strip() else None
            parts = in_parts(caption, turn.ctx.city.limits.description_max_chars) if caption else [None]
            further = turn.inbound.group is not None and turn.continued is not None
            for number, part in enumerate(parts):
                await actions.add_follow_up(turn.session, case, text=part, attachment_ids=[] if number else [stored.id],
                                            search_terms=index_terms([part]) if part else (),
                                            other_device=actions.from_other_device(case, turn.conversation),
                                            notify=not further and number == 0)
            if len(parts) > 1:
                turn.ask(turn.t("follow_up_saved_parts", length=len(caption or ""), parts=len(parts)), done)
                return
        elif text is not None and text.strip():
            # over the limit of one addition, it is added in parts that fit (cut after a sentence): nothing retyped,
            # nothing dropped; the assignee is told once
            parts = in_parts(text.strip(), turn.ctx.city.limits.description_max_chars)
            added = [await actions.add_follow_up(turn.session, case, text=part, search_terms=index_terms([part]),
                                                 other_device=actions.from_other_device(case, turn.conversation),
                                                 notify=number == 0)
                     for number, part in enumerate(parts)]
            if turn.gathering is not None and turn.gathering.get("group") is None:
                # a text that may be cut: its rest takes these back and adds the whole
                turn.gathering["follow_up"] = [event.id for event in added]
            if len(parts) > 1:
                turn.ask(turn.t("follow_up_saved_parts", length=len(text.strip()), parts=len(parts)), done)
                return
        else:
            raise Invalid("error_follow_up_expected")
    except Invalid as problem:
        turn.say(turn.refusal(problem, "error_follow_up_long_parts"))
        turn.ask(turn.t("ask_follow_up"), done)
        return
    turn.ask(turn.t("follow_up_saved"), done)
