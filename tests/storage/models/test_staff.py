"""The staff models, written and read directly on SQLite and the PostgreSQL on 127.0.0.1: a new account is active,
with no second factor, no failed logins and no forced password change; a username, a session's token and an API
token open one account only; an account's queues load only when asked and an assignment taken off the list is
gone; removing an account ends its sessions, tokens, views, notices and queues, but keeps the audit trail and the
canned replies it touched, without its name; the audit's details are ciphertext at rest; a canned reply's change
moves its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import selectinload

from storage.models import (
    ApiToken,
    AuditEntry,
    CannedReply,
    Case,
    CaseView,
    QueueAssignment,
    StaffNotice,
    StaffRole,
    StaffSession,
    StaffUser,
    utcnow,
)
from tests.conftest import stored_value

REASON = "涉及索要红包，转信访室处理"


def a_staff_member(username: str, role: StaffRole = StaffRole.REVIEWER, **values: Any) -> StaffUser:
    return StaffUser(username=username, display_name=f"{username} 同志", role=role, password_hash="not-a-hash",
                     **values)


def a_case(code: str) -> Case:
    return Case(receipt_code_hash=code, channel="telegram", reporter_ref="tg-1", locale="zh", place="某处",
                occurred="今天", description="窗口人员擅离岗位。", queue="clean_hall")


async def test_a_new_account_is_active_with_no_second_factor_no_failed_logins_and_its_own_password(
        sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        session.add(a_staff_member("wang", StaffRole.SUPERVISOR))
    async with sessionmaker() as session:
        user = (await session.execute(select(StaffUser))).scalar_one()
        raw_role = (await session.execute(text("SELECT role FROM staff_users"))).scalar_one()
    assert raw_role == "supervisor" and user.role == StaffRole.SUPERVISOR
    assert (user.active, user.totp_required, user.failed_logins, user.must_change_password) == (True, False, 0, False)
    assert (user.totp_secret, user.totp_last_step, user.locked_until, user.last_login_at) == (None,) * 4
    assert user.created_at >= before and user.created_at.utcoffset() == timedelta(0)
    assert [role.value for role in StaffRole] == ["reviewer", "supervisor", "admin"]


async def test_a_username_belongs_to_one_account_and_an_account_needs_its_name_and_role(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        session.add(a_staff_member("wang"))
    refused = [a_staff_member("wang"), StaffUser(username="li", role=StaffRole.REVIEWER, password_hash="x"),
               StaffUser(username="zhao", display_name="赵", password_hash="x")]
    for account in refused:
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(account)
    async with sessionmaker() as session:
        assert list((await session.execute(select(StaffUser.username))).scalars()) == ["wang"]


async def test_an_accounts_queues_load_only_when_asked_and_one_taken_off_the_list_is_gone(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        session.add(a_staff_member("wang", queues=[QueueAssignment(queue="clean_hall"),
                                                   QueueAssignment(queue="clean_medical")]))
    async with sessionmaker() as session:
        plain = (await session.execute(select(StaffUser))).scalar_one()
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = plain.queues
    async with sessionmaker.begin() as session:
        user = (await session.execute(select(StaffUser).options(selectinload(StaffUser.queues)))).scalar_one()
        assert sorted(assignment.queue for assignment in user.queues) == ["clean_hall", "clean_medical"]
        user.queues = [assignment for assignment in user.queues if assignment.queue == "clean_hall"]
        user_id = user.id
    with pytest.raises(IntegrityError):  # a queue is assigned to a member once
        async with sessionmaker.begin() as session:
            session.add(QueueAssignment(user_id=user_id, queue="clean_hall"))
    async with sessionmaker() as session:
        assert (await session.execute(select(QueueAssignment.queue))).scalars().all() == ["clean_hall"]


async def test_a_session_token_and_an_api_token_open_one_login_only(sessionmaker: Any) -> None:
    expires = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        user = a_staff_member("wang")
        session.add(user)
        await session.flush()
        session.add_all([StaffSession(token_hash="s" * 64, user_id=user.id, csrf_token="c" * 64, expires_at=expires),
                         ApiToken(user_id=user.id, name="报表", token_hash="t" * 64)])
        user_id = user.id
    refused = [StaffSession(token_hash="s" * 64, user_id=user_id, csrf_token="d" * 64, expires_at=expires),
               ApiToken(user_id=user_id, name="另一个", token_hash="t" * 64),
               ApiToken(user_id=999_999, name="无主", token_hash="u" * 64)]
    for row in refused:
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(row)
    async with sessionmaker() as session:
        login = (await session.execute(select(StaffSession))).scalar_one()
        token = (await session.execute(select(ApiToken))).scalar_one()
    assert (login.second_factor_done, login.ip, login.expires_at) == (False, None, expires)
    assert (token.revoked, token.last_used_at) == (False, None) and token.created_at.utcoffset() == timedelta(0)


async def test_removing_an_account_ends_its_logins_and_keeps_its_audit_trail_and_replies_without_its_name(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        leaving, staying = a_staff_member("wang"), a_staff_member("li")
        case = a_case("h1")
        session.add_all([leaving, staying, case])
        await session.flush()
        for user in (leaving, staying):
            session.add_all([
                QueueAssignment(user_id=user.id, queue="clean_hall"),
                StaffSession(token_hash=f"{user.username}-session", user_id=user.id, csrf_token="c",
                             expires_at=utcnow() + timedelta(hours=8)),
                ApiToken(user_id=user.id, name="报表", token_hash=f"{user.username}-token"),
                CaseView(case_id=case.id, user_id=user.id),
                StaffNotice(user_id=user.id, case_id=case.id, kind="follow_up"),
            ])
        session.add_all([AuditEntry(actor_id=leaving.id, action="case.view", case_id=case.id),
                         CannedReply(queue="clean_hall", title="已受理", body="您的举报已受理。",
                                     updated_by_id=leaving.id)])
        leaving_id, staying_id = leaving.id, staying.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(StaffUser).where(StaffUser.id == leaving_id))
    async with sessionmaker() as session:
        for model in (QueueAssignment, StaffSession, ApiToken, CaseView, StaffNotice):
            owners = list((await session.execute(select(model.user_id))).scalars())  # type: ignore[attr-defined]
            assert owners == [staying_id], model.__name__
        entry = (await session.execute(select(AuditEntry))).scalar_one()
        reply = (await session.execute(select(CannedReply))).scalar_one()
    assert (entry.actor_id, entry.action) == (None, "case.view")
    assert (reply.updated_by_id, reply.body) == (None, "您的举报已受理。")


async def test_the_audits_details_are_ciphertext_at_rest_and_outlive_the_case(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case = a_case("h1")
        session.add(case)
        await session.flush()
        session.add_all([AuditEntry(action="case.move", case_id=case.id, detail={"reason": REASON}, ip="10.0.0.7"),
                         AuditEntry(action="login")])
        case_id = case.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(Case).where(Case.id == case_id))
    async with sessionmaker() as session:
        raw = list((await session.execute(text("SELECT detail FROM audit_log ORDER BY id"))).scalars())
        entries = list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())
    assert all(value.startswith("g1.") for value in raw)
    assert stored_value(raw[0], "audit_log.detail") == '{"reason":"涉及索要红包，转信访室处理"}'
    assert [(e.action, e.case_id, e.detail) for e in entries] == [("case.move", None, {"reason": REASON}),
                                                                  ("login", None, {})]
    assert entries[0].ip == "10.0.0.7" and entries[0].created_at.utcoffset() == timedelta(0)


async def test_a_case_is_viewed_once_per_member_and_a_notice_starts_unread(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        user, case = a_staff_member("wang"), a_case("h1")
        session.add_all([user, case])
        await session.flush()
        session.add_all([CaseView(case_id=case.id, user_id=user.id),
                         StaffNotice(user_id=user.id, case_id=case.id, kind="follow_up")])
        user_id, case_id = user.id, case.id
    with pytest.raises(IntegrityError):  # a later opening updates the view, it does not add one
        async with sessionmaker.begin() as session:
            session.add(CaseView(case_id=case_id, user_id=user_id))
    async with sessionmaker() as session:
        notice = (await session.execute(select(StaffNotice))).scalar_one()
        assert await session.scalar(select(func.count()).select_from(CaseView)) == 1
    assert notice.read_at is None and notice.created_at.utcoffset() == timedelta(0)


async def test_changing_a_canned_reply_moves_its_updated_time(sessionmaker: Any) -> None:
    written = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        session.add(CannedReply(queue="clean_hall", title="已受理", body="已受理。", updated_at=written))
    before_change = utcnow()
    async with sessionmaker.begin() as session:
        reply = (await session.execute(select(CannedReply))).scalar_one()
        reply.body = "已受理，将在15个工作日内答复。"
    async with sessionmaker() as session:
        reply = (await session.execute(select(CannedReply))).scalar_one()
    assert reply.body == "已受理，将在15个工作日内答复。" and reply.updated_at >= before_change
