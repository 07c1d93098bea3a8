"""python-telegram-bot's networking backend on aiohttp.

PTB lets an application bring its own HTTP client by subclassing `BaseRequest`; the bot's methods,
their parameters, error mapping (`RetryAfter`, `Forbidden`, …) and the response parsing stay PTB's.
Its default backend, httpx, spent about 0.9 ms of CPU per Bot API call in our benchmark
(docs/benchmarks-telegram.md); aiohttp's keep-alive client does the same call for a fraction of that.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_JSON = {"Content-Type": "application/json"}
_TOKEN_IN_ADDRESS = re.compile(r"/bot[^/\s]+/")


def without_token(text: str) -> str:
    """`text` with the bot token of every Bot API address in it (`…/bot<token>/getUpdates`) written `***`."""
    return _TOKEN_IN_ADDRESS.sub("/bot***/", text)


def _given(value: Any, default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


class AiohttpRequest(BaseRequest):
    """Requests to the Bot API over one pooled aiohttp session.

    `connection_pool_size` bounds the concurrent connections; waiting for a free one counts
    against `pool_timeout`, as in PTB's own backend.
    """

    def __init__(self, *, connection_pool_size: int = 8, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(connection_pool_size)

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            # The Bot API sets no cookies: a dummy jar spares filtering them on every request.
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT},
                                                  cookie_jar=aiohttp.DummyCookieJar(),
                                                  skip_auto_headers=("Accept-Encoding",))

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        data: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        has_files = request_data is not None and request_data.contains_files
        if request_data is not None:
            if has_files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, part in request_data.multipart_data.items():
                    file_name, content, media_type = part[0], part[1], part[2] if len(part) > 2 else None
                    form.add_field(name, content, filename=file_name, content_type=media_type)
                data = form
            else:
                # The Bot API takes JSON bodies; one json.dumps is cheaper than form-encoding every value.
                data = json.dumps(request_data.parameters, ensure_ascii=False, separators=(",", ":")).encode()
                headers = _JSON
        read = _given(read_timeout, self._read_timeout)
        write = _given(write_timeout, self._media_write_timeout if has_files else self._write_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        # aiohttp has no write timeout: an upload is bounded by the read timeout plus the write timeout.
        sock_read = read if read is None or not has_files or write is None else read + write
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=sock_read)
        if self._slots.locked():
            try:
                async with asyncio.timeout(pool):  # a timer, not the task wait_for would start
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise TimedOut("Pool timeout: all connections are in use; the request was not sent.") from exc
        else:
            await self._slots.acquire()  # a free slot: returns at once
        try:
            async with session.request(method, url, data=data, headers=headers, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # aiohttp's message can quote the address, the bot's token in it: it reaches the logs, so does the cause
            raise NetworkError(without_token(f"aiohttp.{type(exc).__name__}: {exc}")) from None
        finally:
            self._slots.release()
