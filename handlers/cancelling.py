"""The question before a draft report is discarded. /cancel is one tap of Telegram's command menu or of the web
page's bottom bar, and "❌ 取消举报" sits beside "提交" at the summary: a report half written is deleted only once
the resident says so (or sends /cancel again); "keep writing" goes back to the question they were at."""

from __future__ import annotations

from handlers.context import Turn
from handlers.types import Choice

CONFIRM_CANCEL = "cancel_confirm"
RETURN_KEY = "cancel_return"


def ask_cancel(turn: Turn) -> None:
    """Ask whether to discard the draft; the question the resident was at is kept to go back to."""
    previous = turn.conversation.state
    if previous != CONFIRM_CANCEL:
        turn.context_set(**{RETURN_KEY: previous})
    turn.set_state(CONFIRM_CANCEL)
    turn.ask(turn.t("ask_cancel_report"), [Choice("cancel:discard", turn.t("cancel_discard")),
                                           Choice("cancel:keep", turn.t("cancel_keep"))])
