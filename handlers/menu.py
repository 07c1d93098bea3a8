"""The main menu, shown after every finished flow."""

from __future__ import annotations

from handlers.context import Turn
from handlers.types import Choice


def menu_choices(turn: Turn) -> list[Choice]:
    return [
        Choice("menu:report", turn.t("menu_report")),
        Choice("menu:status", turn.t("menu_status")),
        Choice("menu:help", turn.t("menu_help")),
        Choice("menu:language", turn.t("menu_language")),
    ]


def menu_names(turn: Turn) -> list[list[str]]:
    """[key, name] of every way a resident may type a menu option where no question is pending: its label, and
    the other words the texts list for it (`menu_report_words`: "举报|投诉|…")."""
    names = [[choice.key, choice.label] for choice in menu_choices(turn)]
    for key, _ in list(names):
        names += [[key, word] for word in turn.words(f"{key.replace(':', '_')}_words")]
    return names


def show_menu(turn: Turn, greeting: bool = False) -> None:
    turn.set_state("idle")
    choices = menu_choices(turn)
    city = turn.ctx.city.city_zh if turn.locale == "zh" else turn.ctx.city.city_en
    turn.ask(turn.t("welcome" if greeting else "menu", city=city), choices, columns=2)
