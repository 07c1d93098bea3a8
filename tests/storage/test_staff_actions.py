"""Staff accounts and API tokens in storage: the first administrator only on an empty table, and a token's
use noted at most once in a few minutes; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from storage import staff_actions
from storage.models import StaffRole, utcnow


async def test_a_tokens_use_is_noted_at_most_every_few_minutes(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        user = await staff_actions.create_staff(session, username="api", display_name="接口", role=StaffRole.ADMIN,
                                                password_hash="not-a-hash")
        secret, created = await staff_actions.create_api_token(session, user, "ticket system", actor=user)
    now = utcnow()
    async with sessionmaker() as session:
        found = await staff_actions.find_api_token(session, secret)
        assert found is not None and found.id == created.id and found.last_used_at is None
        assert staff_actions.token_use_is_news(found, now)
        assert await staff_actions.find_api_token(session, secret + "x") is None
    uses = [now, now + timedelta(minutes=1), now + timedelta(minutes=6)]
    noted = []
    for moment in uses:
        async with sessionmaker.begin() as session:
            await staff_actions.record_token_use(session, created.id, moment)
        async with sessionmaker() as session:
            record = await staff_actions.find_api_token(session, secret)
            assert record is not None and record.last_used_at is not None
            noted.append(record.last_used_at)
    assert noted == [now, now, now + timedelta(minutes=6)]
    async with sessionmaker.begin() as session:
        record = await staff_actions.get_api_token(session, created.id)
        assert record is not None
        assert not staff_actions.token_use_is_news(record, now + timedelta(minutes=7))
        await staff_actions.revoke_api_token(session, record, actor=user)
    async with sessionmaker() as session:
        assert await staff_actions.find_api_token(session, secret) is None


async def test_the_first_admin_is_created_only_on_an_empty_staff_table(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        assert await staff_actions.count_staff(session) == 0
        first = await staff_actions.create_first_admin(session, username="first", display_name="首位管理员",
                                                       password_hash="not-a-hash")
        assert first is not None and first.role == StaffRole.ADMIN
        assert await staff_actions.create_first_admin(session, username="second", display_name="第二位",
                                                      password_hash="not-a-hash") is None
        assert [user.username for user in await staff_actions.list_staff(session)] == ["first"]
