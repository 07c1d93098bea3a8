"""With the receipt code: the status and trace of a case, adding information, rating the handling."""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers.context import Turn
from handlers.evidence import accept_file
from handlers.types import Attachment, Choice
from handlers.validation import Invalid, parse_receipt_code
from nlp.search import index_terms
from storage import actions, client_limits
from storage.models import CLOSED_STATUSES, Case, ClientEventKind, TraceKind

TRACKING_STATES = ("status_code", "case_menu", "follow_up", "rating")


def ask_code(turn: Turn) -> None:
    turn.set_state("status_code")
    turn.ask(turn.t("ask_code"))


async def check_code(turn: Turn, text: str) -> None:
    """Look up a case by receipt code, throttling a resident who keeps guessing."""
    limits = turn.ctx.city.limits
    channel, user_ref = turn.conversation.channel, turn.conversation.user_ref
    now = turn.ctx.clock()
    since = now - timedelta(minutes=limits.status_window_minutes)
    wrong, oldest = await actions.recent_wrong_codes(turn.session, channel, user_ref, since)
    if wrong >= limits.status_wrong_codes:
        wait = client_limits.wait_minutes(oldest, timedelta(minutes=limits.status_window_minutes), now)
        turn.set_state("idle")
        turn.say(turn.t("error_code_throttled", minutes=wait))
        return
    address, address_limit = await _address_key(turn)
    if address is not None:
        window = timedelta(minutes=limits.status_window_minutes)
        wrong, oldest = await client_limits.recent(turn.session, ClientEventKind.WRONG_CODE, address, now - window)
        if wrong >= address_limit:
            turn.set_state("idle")
            turn.say(turn.t("error_code_throttled_network",
                            minutes=client_limits.wait_minutes(oldest, window, now)))
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
    turn.context_set(case_id=case.id, case_until=(now + timedelta(minutes=limits.case_session_minutes))
                     .isoformat())
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


def _trace_line(turn: Turn, case: Case, kind: str, detail: dict[str, object]) -> str:
    if kind == TraceKind.ROUTED:
        queue = turn.ctx.city.queue(str(detail.get("queue", "")))
        name = (queue.zh if turn.locale == "zh" else queue.en) if queue else str(detail.get("queue"))
        return turn.t("trace_routed", queue=name)
    if kind == TraceKind.RATED:
        return turn.t("trace_rated", rating=detail.get("rating"))
    return turn.t(f"trace_{kind}")


def show_case(turn: Turn, case: Case) -> None:
    lines = [turn.t("case_header", case_number=case.case_number, status=turn.t(f"status_{case.status}"))]
    if case.status not in CLOSED_STATUSES and case.accept_due_at is not None and case.resolve_due_at is not None:
        accept_by = turn.t("status_accepted") if case.accepted_at is not None else turn.format_day(case.accept_due_at)
        lines.insert(1, turn.t("case_expected", accept_by=accept_by, resolve_by=turn.format_day(case.resolve_due_at)))
    answers: list[str] = []
    for event in case.trace:
        lines.append(f"{turn.format_time(event.created_at)}  {_trace_line(turn, case, event.kind, event.detail)}")
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
    elif case.rating is None:
        choices.append(Choice("case:rate", turn.t("case_rate")))
    choices.append(Choice("case:menu", turn.t("case_back")))
    turn.ask(turn.t("ask_case_menu"), choices)


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
        if text is None:
            turn.say(turn.t("error_code_format"))
            ask_code(turn)
        else:
            await check_code(turn, text)
        return True
    case = await _current_case(turn)
    if case is None:
        turn.say(turn.t("case_session_expired"))
        return False
    if state == "case_menu":
        if choice == "case:follow_up" and case.status not in CLOSED_STATUSES:
            turn.set_state("follow_up")
            turn.ask(turn.t("ask_follow_up"), [Choice("follow_up:done", turn.t("follow_up_done"))])
        elif choice == "case:rate" and case.status in CLOSED_STATUSES and case.rating is None:
            turn.set_state("rating")
            turn.ask(turn.t("ask_rating"), [Choice(f"rate:{n}", "★" * n) for n in range(5, 0, -1)])
        elif choice == "case:menu":
            return False
        else:
            turn.say(turn.t("error_pick_option"))
            ask_case_menu(turn, case)
        return True
    if state == "follow_up":
        await _follow_up(turn, case, choice, text, attachment)
        return True
    if state == "rating":
        rating = _rating_value(choice, text)
        if rating is None:
            turn.say(turn.t("error_rating"))
            turn.ask(turn.t("ask_rating"), [Choice(f"rate:{n}", "★" * n) for n in range(5, 0, -1)])
            return True
        await actions.rate_case(turn.session, case, rating)
        turn.say(turn.t("rated", rating=rating))
        return False
    return False


def _rating_value(choice: str | None, text: str | None) -> int | None:
    raw = choice.split(":", 1)[1] if choice and choice.startswith("rate:") else (text or "").strip()
    if raw.count("★") and set(raw) == {"★"}:
        raw = str(len(raw))
    return int(raw) if raw in {"1", "2", "3", "4", "5"} else None


async def _follow_up(turn: Turn, case: Case, choice: str | None, text: str | None,
                     attachment: Attachment | None) -> None:
    done = [Choice("follow_up:done", turn.t("follow_up_done"))]
    if choice == "follow_up:done":
        refreshed = await actions.get_case(turn.session, case.id)
        assert refreshed is not None
        show_case(turn, refreshed)
        return
    if case.status in CLOSED_STATUSES:
        turn.say(turn.t("error_case_closed"))
        ask_case_menu(turn, case)
        return
    try:
        if attachment is not None:
            stored = await accept_file(turn, attachment)
            await actions.add_follow_up(turn.session, case, text=None, attachment_ids=[stored.id])
        elif text is not None and text.strip():
            limit = turn.ctx.city.limits.description_max_chars
            if len(text) > limit:
                raise Invalid("error_description_long", limit=limit, length=len(text))
            await actions.add_follow_up(turn.session, case, text=text.strip(), search_terms=index_terms([text]))
        else:
            raise Invalid("error_follow_up_expected")
    except Invalid as problem:
        turn.say(turn.t(problem.text_key, **problem.values))
        turn.ask(turn.t("ask_follow_up"), done)
        return
    turn.ask(turn.t("follow_up_saved"), done)
