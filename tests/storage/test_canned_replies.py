"""Canned replies kept by supervisors: saved and changed per queue, listed for the queues a user works in,
refused when empty or too long, deleted — every change audited. On SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from storage import canned_replies
from storage.actions import ActionError
from storage.models import AuditEntry, StaffRole
from tests.factories import create_staff


async def test_replies_are_kept_per_queue_changed_and_deleted_with_an_audit_trail(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        supervisor = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        accepted = await canned_replies.save(session, queue="clean_hall", title=" 已受理 ", body=" 您的举报已受理。 ",
                                             actor=supervisor)
        await canned_replies.save(session, queue="clean_hall", title="不予受理", body="不属于受理范围。",
                                  actor=supervisor)
        await canned_replies.save(session, queue="clean_medical", title="转卫健委", body="已转市卫健委办理。",
                                  actor=supervisor)
    async with sessionmaker.begin() as session:
        hall = await canned_replies.for_queues(session, ["clean_hall"])
        assert [(r.title, r.body) for r in hall] == [("不予受理", "不属于受理范围。"), ("已受理", "您的举报已受理。")]
        assert len(await canned_replies.for_queues(session, None)) == 3
        reply = await canned_replies.get(session, accepted.id)
        assert reply is not None
        await canned_replies.save(session, queue="clean_hall", title="已受理", actor=supervisor, reply=reply,
                                  body="您的举报已受理，将在15个工作日内答复。")
    async with sessionmaker.begin() as session:
        changed = await canned_replies.get(session, accepted.id)
        assert changed is not None and changed.body == "您的举报已受理，将在15个工作日内答复。"
        await canned_replies.delete(session, changed, actor=supervisor)
    async with sessionmaker() as session:
        assert await canned_replies.get(session, accepted.id) is None
        actions = list((await session.execute(select(AuditEntry.action).order_by(AuditEntry.id))).scalars())
    assert actions.count("canned_reply.save") == 4 and actions[-1] == "canned_reply.delete"


async def test_an_empty_or_overlong_reply_is_refused(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        supervisor = await create_staff(session, "li", StaffRole.SUPERVISOR)
        for title, body in (("  ", "正文"), ("标题", " "), ("题" * 81, "正文"), ("标题", "字" * 3001)):
            with pytest.raises(ActionError, match="canned reply"):
                await canned_replies.save(session, queue="clean_hall", title=title, body=body, actor=supervisor)
        assert await canned_replies.for_queues(session, None) == []
