"""The WeChat access token shared by every process, against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storage import channel_state

EXPIRES = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


async def test_a_stored_token_is_read_by_every_process_and_the_newest_wins(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        assert await channel_state.load_wechat_token(session, "wx51a0c7e2d4b3f6a8") is None
    async with sessionmaker.begin() as session:
        await channel_state.store_wechat_token(session, "wx51a0c7e2d4b3f6a8", "first-token", EXPIRES)
    async with sessionmaker.begin() as session:
        await channel_state.store_wechat_token(session, "wx51a0c7e2d4b3f6a8", "second-token",
                                               EXPIRES.replace(hour=10))
        await channel_state.store_wechat_token(session, "wx0000000000000000", "another-accounts-token", EXPIRES)
    async with sessionmaker() as session:
        ours = await channel_state.load_wechat_token(session, "wx51a0c7e2d4b3f6a8")
        theirs = await channel_state.load_wechat_token(session, "wx0000000000000000")
    assert ours is not None and theirs is not None
    assert (ours[0], ours[1].astimezone(UTC)) == ("second-token", EXPIRES.replace(hour=10))
    assert (theirs[0], theirs[1].astimezone(UTC)) == ("another-accounts-token", EXPIRES)
