"""State the channels share across processes: the WeChat access token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import WeChatAccessToken, utcnow


async def load_wechat_token(session: AsyncSession, app_id: str) -> tuple[str, datetime] | None:
    """The stored WeChat access token of an app and when it expires."""
    row = await session.get(WeChatAccessToken, app_id)
    return None if row is None else (row.access_token, row.expires_at)


async def store_wechat_token(session: AsyncSession, app_id: str, access_token: str, expires_at: datetime) -> None:
    """Keep a freshly issued WeChat access token for every process (the newest one wins)."""
    query = select(WeChatAccessToken).where(WeChatAccessToken.app_id == app_id).with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        session.add(WeChatAccessToken(app_id=app_id, access_token=access_token, expires_at=expires_at))
    else:
        row.access_token = access_token
        row.expires_at = expires_at
        row.refreshed_at = utcnow()
    await session.flush()
