"""What one dialog step works with: the resident's language (Chinese unless chosen), texts in it, the messages
the step says and asks (a question's choices remembered so a typed answer counts), the draft with the time it
last changed, the conversation's context, and times shown in the city's time zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.city import load_city_config
from handlers.context import DialogContext, Turn
from handlers.routing import RouteDecision
from handlers.texts import Texts
from handlers.types import Choice, Inbound, Outbound
from storage.models import ConversationState

NOW = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on 25 November in Changsha


async def _nowhere(text: str, district: str | None) -> RouteDecision:
    return RouteDecision("triage", "unclassified")


def _context(tmp_path: Path, timezone: str = "Asia/Shanghai") -> DialogContext:
    city = load_city_config(None).model_copy(update={"timezone": timezone})
    return DialogContext(city=city, texts=Texts(), secret_key=b"s" * 32, evidence_dir=tmp_path / "evidence",
                         route=_nowhere, clock=lambda: NOW)


def _conversation(locale: str | None = None, **fields: Any) -> ConversationState:
    values: dict[str, Any] = {"id": 1, "channel": "test", "user_key": "key", "user_ref": "r1", "locale": locale,
                              "state": "idle", "draft": {}, "context": {}, "draft_updated_at": None, **fields}
    return ConversationState(**values)


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    """A session bound to nothing: a turn carries one, none of these steps uses it."""
    unbound = AsyncSession()
    yield unbound
    await unbound.close()


def _turn(session: AsyncSession, tmp_path: Path, conversation: ConversationState | None = None,
          timezone: str = "Asia/Shanghai") -> Turn:
    return Turn(session=session, inbound=Inbound("test", "r1", text="你好"),
                conversation=conversation or _conversation(), ctx=_context(tmp_path, timezone))


def test_the_dialog_context_knows_the_citys_time_zone(tmp_path: Path) -> None:
    assert str(_context(tmp_path).tz) == "Asia/Shanghai"
    assert str(_context(tmp_path, "America/Chicago").tz) == "America/Chicago"


async def test_a_resident_who_chose_no_language_is_answered_in_chinese(session: AsyncSession,
                                                                       tmp_path: Path) -> None:
    turn = _turn(session, tmp_path)
    assert turn.locale == "zh"
    assert turn.t("menu") == "请选择您要办理的事项："
    english = _turn(session, tmp_path, _conversation("en"))
    assert english.locale == "en"
    assert english.t("menu") == "What would you like to do?"


async def test_texts_are_filled_with_their_values(session: AsyncSession, tmp_path: Path) -> None:
    turn = _turn(session, tmp_path, _conversation("en"))
    assert turn.t("welcome", city="Changsha").startswith("Hello! This is the Changsha integrity reporting service.")


async def test_what_a_step_says_is_sent_in_order_with_a_notice_offer_where_given(session: AsyncSession,
                                                                                 tmp_path: Path) -> None:
    turn = _turn(session, tmp_path)
    turn.say("第一条")
    turn.say("第二条", notice_offer=7)
    assert turn.messages == [Outbound("第一条"), Outbound("第二条", notice_offer=7)]
    assert turn.conversation.context == {}  # saying something asks nothing


async def test_a_question_remembers_its_choices_so_a_typed_answer_counts(session: AsyncSession,
                                                                         tmp_path: Path) -> None:
    turn = _turn(session, tmp_path, _conversation(context={"case": "QL-2026-000001"}))
    choices = [Choice("district:yuelu", "岳麓区"), Choice("district:kaifu", "开福区")]
    turn.ask("请选择区县：", choices, columns=2)
    assert turn.messages == [Outbound("请选择区县：", tuple(choices), 2)]
    assert turn.context_get("choices") == [["district:yuelu", "岳麓区"], ["district:kaifu", "开福区"]]
    assert turn.context_get("case") == "QL-2026-000001"  # the rest of the context stays
    turn.ask("请描述问题：")  # a question without choices forgets the previous ones
    assert turn.messages[-1] == Outbound("请描述问题：")
    assert turn.context_get("choices") == []


async def test_the_draft_is_changed_with_the_time_and_cleared(session: AsyncSession, tmp_path: Path) -> None:
    turn = _turn(session, tmp_path)
    assert turn.draft == {}
    turn.update_draft(district="yuelu")
    turn.update_draft(place="岳麓区政务服务中心", district="kaifu")
    assert turn.draft == {"district": "kaifu", "place": "岳麓区政务服务中心"}
    assert turn.conversation.draft_updated_at == NOW
    turn.clear_draft()
    assert (turn.draft, turn.conversation.draft_updated_at) == ({}, None)


async def test_the_context_is_set_and_a_value_of_none_removes_a_key(session: AsyncSession, tmp_path: Path) -> None:
    turn = _turn(session, tmp_path, _conversation(context={"case": "QL-2026-000001", "tries": 1}))
    turn.context_set(tries=2, waiting="code")
    assert turn.conversation.context == {"case": "QL-2026-000001", "tries": 2, "waiting": "code"}
    turn.context_set(case=None, missing=None)
    assert turn.conversation.context == {"tries": 2, "waiting": "code"}
    assert turn.context_get("case") is None


async def test_a_state_change_is_the_conversations(session: AsyncSession, tmp_path: Path) -> None:
    turn = _turn(session, tmp_path)
    turn.set_state("report_place")
    assert turn.conversation.state == "report_place"


async def test_times_are_shown_in_the_citys_time_zone(session: AsyncSession, tmp_path: Path) -> None:
    changsha = _turn(session, tmp_path)
    assert changsha.local_now().isoformat() == "2026-11-25T00:30:00+08:00"
    assert changsha.format_time(NOW) == "2026-11-25 00:30"
    assert changsha.format_day(NOW) == "2026-11-25"
    chicago = _turn(session, tmp_path, timezone="America/Chicago")
    assert chicago.format_time(NOW) == "2026-11-24 10:30"
    assert chicago.format_day(datetime(2026, 11, 25, 3, 0, tzinfo=UTC)) == "2026-11-24"
