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


def show_menu(turn: Turn, greeting: bool = False) -> None:
    turn.set_state("idle")
    choices = menu_choices(turn)
    city = turn.ctx.city.city_zh if turn.locale == "zh" else turn.ctx.city.city_en
    turn.ask(turn.t("welcome" if greeting else "menu", city=city), choices, columns=2)
