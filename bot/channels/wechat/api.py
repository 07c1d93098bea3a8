"""The Official Account API: the access token shared by every process, customer-service messages,
media downloads and the custom menu."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.wechat.messages import MENU_COMMANDS
from bot.config import Settings
from handlers.texts import Texts
from storage import channel_state
from storage.models import utcnow

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
"""Access token invalid, not the latest, or expired: fetch a new one and try once more."""
PERMANENT_ERRORS = frozenset({
    40003,  # invalid openid
    40008,  # invalid message type
    43004,  # the user does not follow the account (any more)
    43019,  # the user is on the account's block list
    45002,  # content too long
    45015,  # out of the 48-hour interaction window
    45047,  # customer-service message quota of this interaction used up
    47001,  # malformed request
    47003,  # a template keyword's value breaks its kind's rule
    48001,  # the account may not use this API
})
SLOW_ERRORS = {45009: 3600.0, 45011: 60.0}
"""Quota errors that pass with time (daily and per-minute API limits): retry after so many seconds."""


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


# --- the API: access token, customer-service messages, media, menu ------------------------------


class WeChatApi:
    """Calls to `<QINGLIAN_WECHAT_API_URL>/cgi-bin/...` with the access token.

    The token lives in the database (shared by every process); this process keeps a copy until it
    nears expiry or WeChat refuses it. Call it outside any database transaction: reading or storing
    the token takes a transaction of its own.
    """

    REFRESH_MARGIN = timedelta(minutes=5)

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._http = http
        self._base = settings.wechat_api_url
        self._cached: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._settings.wechat_app_id and self._settings.wechat_app_secret)

    def _usable(self, token: tuple[str, datetime] | None, stale: str | None) -> bool:
        return token is not None and token[0] != stale and token[1] - self.REFRESH_MARGIN > utcnow()

    async def access_token(self, *, stale: str | None = None) -> str:
        """A valid token; `stale` is one WeChat just refused, which is never handed out again."""
        if self._usable(self._cached, stale):
            assert self._cached is not None
            return self._cached[0]
        async with self._lock:
            if self._usable(self._cached, stale):
                assert self._cached is not None
                return self._cached[0]
            app_id = str(self._settings.wechat_app_id)
            async with self._sessionmaker.begin() as session:
                stored = await channel_state.load_wechat_token(session, app_id)
            if stored is not None and self._usable(stored, stale):
                self._cached = stored
                return stored[0]
            token, lifetime = await self._fetch_token()
            expires_at = utcnow() + timedelta(seconds=lifetime)
            async with self._sessionmaker.begin() as session:
                await channel_state.store_wechat_token(session, app_id, token, expires_at)
            self._cached = (token, expires_at)
            log.info("wechat access token refreshed (valid %d s)", lifetime)
            return token

    async def _fetch_token(self) -> tuple[str, int]:
        if not self.configured:
            raise WeChatApiError(41002, "QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set")
        response = await self._http.get(f"{self._base}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self._settings.wechat_app_id,
            "secret": self._settings.wechat_app_secret,
        })
        data = self._json(response)
        token, lifetime = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise WeChatApiError(int(data.get("errcode") or -1), str(data.get("errmsg") or "no access_token"))
        return token, lifetime

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(f"WeChat answered HTTP {response.status_code}", request=response.request,
                                        response=response)
        try:
            data = response.json()
        except ValueError:
            raise WeChatApiError(-1, f"HTTP {response.status_code} without JSON") from None
        if not isinstance(data, dict):
            raise WeChatApiError(-1, "answer is not a JSON object")
        return data

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the token; one retry with a fresh token when WeChat refuses it."""
        content = json.dumps(body, ensure_ascii=False).encode()  # UTF-8: \u escapes are reported to show in menus
        stale: str | None = None
        for attempt in (1, 2):
            token = await self.access_token(stale=stale)
            response = await self._http.post(f"{self._base}{path}", params={"access_token": token}, content=content,
                                             headers={"Content-Type": "application/json; charset=utf-8"})
            data = self._json(response)
            code = int(data.get("errcode") or 0)
            if code == 0:
                return data
            if code in TOKEN_ERRORS and attempt == 1:
                log.info("wechat refused the access token (%s); refreshing", code)
                stale = token
                continue
            raise WeChatApiError(code, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")

    async def send_text(self, openid: str, content: str) -> None:
        await self.post("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "text", "text": {"content": content}})

    async def download_media(self, media_id: str, limit: int) -> bytes:
        """A temporary media file's bytes, at most `limit` + 1 of them (so the caller sees "too big")."""
        stale: str | None = None
        for attempt in (1, 2):
            token = await self.access_token(stale=stale)
            url = f"{self._base}/cgi-bin/media/get"
            async with self._http.stream("GET", url, params={"access_token": token, "media_id": media_id}) as response:
                if response.status_code >= 400:
                    raise httpx.HTTPStatusError(f"WeChat answered HTTP {response.status_code}",
                                                request=response.request, response=response)
                kind = response.headers.get("content-type", "")
                if "json" in kind or kind.startswith("text/"):
                    try:
                        data = json.loads(await response.aread())
                        code = int(data.get("errcode") or -1)
                    except (ValueError, AttributeError):
                        raise WeChatApiError(-1, "media answer is neither a file nor JSON") from None
                    if code in TOKEN_ERRORS and attempt == 1:
                        stale = token
                        continue
                    raise WeChatApiError(code, str(data.get("errmsg", "")))
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > limit:
                        break
                return bytes(content[: limit + 1])
        raise AssertionError("unreachable")


def menu_definition(texts: Texts, locale: str) -> dict[str, Any]:
    """The account's custom menu: three click buttons whose keys become dialog commands."""
    return {"button": [
        {"type": "click", "name": texts.get(locale, f"wechat_menu_{command}"), "key": key}
        for key, command in MENU_COMMANDS.items()
    ]}
