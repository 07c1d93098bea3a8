"""The main menu as a resident sees it: after every finished flow, or as a greeting naming the city in the
resident's language; four entries (report, check a case, help, the other language) in two columns, each
labelled in both languages, remembered so that a typed answer counts; a city may reword them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.city import CityConfig, load_city_config
from handlers.context import DialogContext, Turn
from handlers.menu import show_menu
from handlers.routing import RouteDecision
from handlers.texts import LOCALES, Texts
from handlers.types import Inbound
from storage.models import ConversationState

KEYS = ["menu:report", "menu:status", "menu:help", "menu:language"]


async def _nowhere(text: str, district: str | None) -> RouteDecision:
    return RouteDecision("triage", "unclassified")


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    """A session bound to nothing: showing the menu reads and writes nothing."""
    unbound = AsyncSession()
    yield unbound
    await unbound.close()


def _turn(session: AsyncSession, tmp_path: Path, locale: str | None, *, city: CityConfig | None = None,
          texts: Texts | None = None, state: str = "report_confirm") -> Turn:
    context = DialogContext(city=city or load_city_config(None), texts=texts or Texts(), secret_key=b"s" * 32,
                            evidence_dir=tmp_path / "evidence", route=_nowhere,
                            clock=lambda: datetime(2026, 11, 24, tzinfo=UTC))
    values: dict[str, Any] = {"id": 1, "channel": "test", "user_key": "key", "user_ref": "r1", "locale": locale,
                              "state": state, "draft": {}, "context": {"choices": [["yes", "是"]]},
                              "draft_updated_at": None}
    return Turn(session=session, inbound=Inbound("test", "r1"), conversation=ConversationState(**values),
                ctx=context)


async def test_after_a_flow_the_menu_offers_four_entries_in_two_columns(session: AsyncSession,
                                                                        tmp_path: Path) -> None:
    turn = _turn(session, tmp_path, "zh")
    show_menu(turn)
    assert turn.conversation.state == "idle"
    [menu] = turn.messages
    assert menu.text == "请选择您要办理的事项："
    assert [(choice.key, choice.label) for choice in menu.choices] == [
        ("menu:report", "📝 我要举报"), ("menu:status", "🔎 查询进度"), ("menu:help", "❓ 使用说明"),
        ("menu:language", "🌐 English")]
    assert menu.columns == 2
    # remembered in place of the previous question's choices: typing "2" or "查询进度" picks an entry
    assert turn.context_get("choices") == [[choice.key, choice.label] for choice in menu.choices]


async def test_the_greeting_names_the_city_in_the_residents_language(session: AsyncSession, tmp_path: Path) -> None:
    chinese = _turn(session, tmp_path, None)
    show_menu(chinese, greeting=True)
    assert chinese.messages[0].text.startswith("您好！这里是长沙市清廉监督举报平台。")
    english = _turn(session, tmp_path, "en")
    show_menu(english, greeting=True)
    assert english.messages[0].text.startswith("Hello! This is the Changsha integrity reporting service.")
    assert [choice.label for choice in english.messages[0].choices] == [
        "📝 File a report", "🔎 Check a case", "❓ Help", "🌐 中文"]


async def test_another_city_is_named_by_its_own_names(session: AsyncSession, tmp_path: Path) -> None:
    city = load_city_config(None).model_copy(update={"city_zh": "株洲市", "city_en": "Zhuzhou"})
    chinese, english = _turn(session, tmp_path, "zh", city=city), _turn(session, tmp_path, "en", city=city)
    show_menu(chinese, greeting=True)
    show_menu(english, greeting=True)
    assert "株洲市" in chinese.messages[0].text and "长沙" not in chinese.messages[0].text
    assert "Zhuzhou" in english.messages[0].text and "Changsha" not in english.messages[0].text


@pytest.mark.parametrize("locale", LOCALES)
async def test_every_entry_has_its_own_text_in_every_language(session: AsyncSession, tmp_path: Path,
                                                              locale: str) -> None:
    turn = _turn(session, tmp_path, locale)
    show_menu(turn)
    show_menu(turn, greeting=True)
    menu, greeting = turn.messages
    labels = [choice.label for choice in menu.choices]
    assert [choice.key for choice in menu.choices] == KEYS
    assert all(label.strip() for label in labels) and len(set(labels)) == 4
    assert greeting.choices == menu.choices and menu.text.strip() and greeting.text != menu.text
    assert "{" not in greeting.text  # every placeholder filled


async def test_a_city_may_reword_an_entry(session: AsyncSession, tmp_path: Path) -> None:
    texts = Texts({"zh": {"menu_report": "📝 我要反映问题"}, "en": {"menu_report": "📝 Tell us"}})
    chinese, english = (_turn(session, tmp_path, locale, texts=texts) for locale in ("zh", "en"))
    show_menu(chinese)
    show_menu(english)
    assert (chinese.messages[0].choices[0].label, english.messages[0].choices[0].label) == (
        "📝 我要反映问题", "📝 Tell us")
