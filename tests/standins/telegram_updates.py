"""Updates of the stand-in Bot API server: the queue, ``getUpdates`` long polling and webhooks.

``getUpdates`` follows the Bot API's documented offset rule exactly: "An update is considered
confirmed as soon as getUpdates is called with an offset higher than its update_id"; an update is
forgotten then and only then (or when the bot drops pending updates with ``setWebhook`` /
``deleteWebhook``, or a webhook delivery of it is answered 2xx). Until confirmed it is served again
to every ``getUpdates`` call. A negative offset keeps only the last ``-offset`` updates.

Webhook mode (after the bot's ``setWebhook``): updates are POSTed as JSON to the URL, with
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, by ``max_connections`` workers (default
40): in order per chat, chats in parallel, each update retried with a short backoff until a 2xx
answer. A JSON answer carrying ``{"method": ...}`` is executed like Telegram does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from tests.standins.telegram_core import (
    _NOT_DELIVERED_BY_DEFAULT,
    TelegramCore,
    _Entry,
    _stringify_json_params,
)
from tests.standins.telegram_entities import JSONDict
from tests.standins.telegram_spec import Validated, _ApiError, _dumps


def _update_kind(update: JSONDict) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


def _update_chat_key(update: JSONDict) -> Hashable:
    """Webhook deliveries of updates with the same key are sequential (like Telegram)."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        chat = value.get("chat")
        if not isinstance(chat, dict):
            inner = value.get("message")
            chat = inner.get("chat") if isinstance(inner, dict) else None
        if isinstance(chat, dict) and "id" in chat:
            return ("chat", chat["id"])
        user = value.get("from") or value.get("user")
        if isinstance(user, dict) and "id" in user:
            return ("user", user["id"])
    return ("update", update.get("update_id"))



class TelegramUpdates(TelegramCore):
    def _method_handlers(self) -> dict[str, Callable[[Validated], Any]]:
        return {
            **super()._method_handlers(),
            "getUpdates": self._h_get_updates,
            "setWebhook": self._h_set_webhook,
            "deleteWebhook": self._h_delete_webhook,
            "getWebhookInfo": self._h_get_webhook_info,
        }

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        self._update_event = asyncio.Event()
        self._wh_ready = asyncio.Queue()
        try:
            with self._lock:
                webhook_active = bool(self._webhook_url)
            if webhook_active:
                self._restart_webhook_workers()
            await self._server.serve(sockets=[sock])
        finally:
            for task in self._wh_tasks:
                task.cancel()
            self._wh_tasks = []


    def _schedule_wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._on_loop():
            self._wake()
            return
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            new, self._wh_new = self._wh_new, []
        if new:
            self._wh_feed(new)
        self._notify_pollers()


    # ------------------------------------------------------------------ getUpdates and webhooks

    async def _h_get_updates(self, v: Validated) -> list[JSONDict]:
        p = v.params
        if self._webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset", 0))
        limit = min(max(int(p.get("limit", 100)), 1), 100)
        timeout = max(float(p.get("timeout", 0)), 0.0)
        if "allowed_updates" in p:
            self._set_allowed_updates(p["allowed_updates"])
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify_pollers()  # an older long poll gets "terminated by other getUpdates request"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._cond:
            self._confirm(offset)
            self._cond.notify_all()  # for wait_until(lambda: is_confirmed(...))
        while True:
            with self._lock:
                batch = self._take_batch(limit)
            if batch or self._closing:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._update_event
            assert event is not None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if self._webhook_url:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )

    def _confirm(self, offset: int) -> None:
        queue = self._queue
        if offset < 0:
            live = [e for e in queue if not self._dead(e)]
            for e in live[:offset]:
                e.removed = True
                self._forgotten.add(e.update_id)
        elif offset > 0:
            self._confirmed_below = max(self._confirmed_below, offset)
            keep: list[_Entry] = []
            for e in self._redeliveries:
                if e.delivered and e.update_id < offset:
                    e.removed = True
                elif not e.removed:
                    keep.append(e)
            self._redeliveries = keep
        while queue and self._dead(queue[0]):
            queue.popleft()

    def _dead(self, e: _Entry) -> bool:
        return e.removed or (not e.redelivery and e.update_id < self._confirmed_below)

    def _take_batch(self, limit: int) -> list[JSONDict]:
        batch: list[_Entry] = []
        for e in self._queue:
            if self._dead(e):
                continue
            batch.append(e)
            if len(batch) >= limit:
                break
        for e in batch:
            e.delivered = True
        batch.sort(key=lambda e: e.update_id)
        return [e.update for e in batch]

    def _set_allowed_updates(self, names: list[str]) -> None:
        with self._lock:
            self._allowed_updates_explicit = list(names)
            if names:
                self._allowed_updates = frozenset(n for n in names if n in self.spec.update_types)
            else:
                self._allowed_updates = frozenset(
                    t for t in self.spec.update_types if t not in _NOT_DELIVERED_BY_DEFAULT
                )

    def _drop_pending(self) -> None:
        with self._lock:
            for e in self._queue:
                e.removed = True
                self._forgotten.add(e.update_id)
            self._queue.clear()
            self._redeliveries = []
            self._wh_new = []

    def _h_set_webhook(self, v: Validated) -> bool:
        p = v.params
        if p.get("drop_pending_updates"):
            self._drop_pending()
        if "allowed_updates" in p:
            self._set_allowed_updates(p["allowed_updates"])
        with self._lock:
            self._webhook_url = str(p.get("url", ""))
            self._webhook_secret = p.get("secret_token")
            self._webhook_max_connections = int(p.get("max_connections", 40))
            self._webhook_last_error = None
        self._restart_webhook_workers()
        self._notify_pollers()
        return True

    def _h_delete_webhook(self, v: Validated) -> bool:
        if v.params.get("drop_pending_updates"):
            self._drop_pending()
        with self._lock:
            self._webhook_url = ""
            self._webhook_secret = None
        self._restart_webhook_workers()
        return True

    def _h_get_webhook_info(self, v: Validated) -> JSONDict:
        with self._lock:
            info: JSONDict = {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": self.pending_update_count(),
            }
            if self._webhook_url:
                info["max_connections"] = self._webhook_max_connections
                info["ip_address"] = "127.0.0.1"
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
            if self._allowed_updates_explicit is not None:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info


    # ------------------------------------------------------------------ queuing updates

    def _enqueue(self, update: JSONDict, *, redelivery: bool = False, deliver: bool = True) -> int:
        return self._enqueue_checked(update, redelivery=redelivery, deliver=deliver)[0]

    def _enqueue_checked(
        self, update: JSONDict, *, redelivery: bool = False, deliver: bool = True
    ) -> tuple[int, bool]:
        """Queue an update; returns its id and whether it was queued (not filtered out).

        With ``deliver=False`` the update gets its id and is remembered (``update()``), but the
        server does not deliver it: the test delivers it itself, when and as often as it likes.
        """
        with self._lock:
            update_id = update.get("update_id")
            if update_id is None:
                update_id = max(self._next_update_id, self._last_update_id + 1)
                update = {"update_id": update_id, **update}
            update_id = int(update_id)
            out_of_order = update_id <= self._last_update_id
            self._last_update_id = max(self._last_update_id, update_id)
            self._next_update_id = self._last_update_id + 1
            if not redelivery and _update_kind(update) not in self._allowed_updates:
                self.filtered_update_ids.append(update_id)
                self._history[update_id] = update
                return update_id, False
            self._history[update_id] = update
            if not deliver:
                return update_id, True
            entry = _Entry(update_id, update, _update_chat_key(update), redelivery or out_of_order)
            self._queue.append(entry)
            if entry.redelivery:
                self._redeliveries.append(entry)
            if self._webhook_url:
                self._wh_new.append(entry)
        self._schedule_wake()
        return update_id, True

    def pending_update_count(self) -> int:
        with self._lock:
            return sum(1 for e in self._queue if not self._dead(e))

    def pending_update_ids(self) -> list[int]:
        """The updates Telegram still holds for the bot (served again by every ``getUpdates``)."""
        with self._lock:
            return sorted(e.update_id for e in self._queue if not self._dead(e))

    def is_confirmed(self, update_id: int) -> bool:
        """Whether Telegram has forgotten the update: a ``getUpdates`` call passed an offset above its
        id, the webhook answered its delivery 2xx, or the bot dropped pending updates."""
        with self._lock:
            return update_id < self._confirmed_below or update_id in self._forgotten

    def confirmed_below(self) -> int:
        """The highest offset any ``getUpdates`` call passed (0: none yet)."""
        with self._lock:
            return self._confirmed_below

    # ------------------------------------------------------------------ webhook delivery

    def _restart_webhook_workers(self) -> None:
        """(Re)start delivery after setWebhook/deleteWebhook; runs on the server loop."""
        for task in self._wh_tasks:
            task.cancel()
        self._wh_tasks = []
        self._wh_ready = asyncio.Queue()
        self._wh_chats = {}
        with self._lock:
            self._wh_generation += 1
            self._wh_new = []
            url = self._webhook_url
            pending = [e for e in self._queue if not self._dead(e)]
            workers = self._webhook_max_connections
        if not url:
            return
        loop = asyncio.get_running_loop()
        self._wh_tasks = [
            loop.create_task(self._wh_worker(), name=f"standin-webhook-{i}") for i in range(workers)
        ]
        self._wh_feed(pending)

    def _wh_feed(self, entries: Iterable[_Entry]) -> None:
        ready = self._wh_ready
        if ready is None:
            return
        for entry in entries:
            chat_queue = self._wh_chats.get(entry.chat_key)
            if chat_queue is None:
                self._wh_chats[entry.chat_key] = deque([entry])
                ready.put_nowait(entry.chat_key)
            else:
                chat_queue.append(entry)

    async def _wh_worker(self) -> None:
        """One of ``max_connections`` delivery workers, with its own keep-alive connection."""
        ready = self._wh_ready
        assert ready is not None
        client = _WebhookClient()
        try:
            while True:
                key = await ready.get()
                chat_queue = self._wh_chats.get(key)
                if chat_queue is None:
                    continue
                while chat_queue and chat_queue[0].removed:
                    chat_queue.popleft()
                if chat_queue:
                    await self._wh_deliver(client, chat_queue[0])
                    chat_queue.popleft()
                if chat_queue:
                    ready.put_nowait(key)
                else:
                    self._wh_chats.pop(key, None)
        finally:
            client.close()

    async def _wh_deliver(self, client: _WebhookClient, entry: _Entry) -> None:
        """POST one update until the webhook answers 2xx (or the update is dropped)."""
        attempt = 0
        body = _dumps(entry.update)
        while not entry.removed:
            with self._lock:
                url, secret = self._webhook_url, self._webhook_secret
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["X-Telegram-Bot-Api-Secret-Token"] = secret
            error: str
            try:
                answer = await client.post(url, body, headers)
            except (OSError, EOFError, ValueError, TimeoutError, ssl.SSLError) as exc:
                client.close()
                error = f"Connection failed: {type(exc).__name__}: {exc}".strip()
            else:
                if 200 <= answer.status < 300:
                    with self._cond:
                        entry.removed = True
                        self._forgotten.add(entry.update_id)
                        self.webhook_deliveries.append(entry.update_id)
                        while self._queue and self._dead(self._queue[0]):
                            self._queue.popleft()
                        self._cond.notify_all()
                    await self._webhook_reply(answer)
                    return
                error = f"Wrong response from the webhook: {answer.status} {answer.reason}"
            with self._lock:
                self._webhook_last_error = (int(time.time()), error)
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            attempt += 1

    async def _webhook_reply(self, answer: _HttpAnswer) -> None:
        """Telegram executes a method call given in the webhook's answer."""
        if "json" not in answer.headers.get("content-type", ""):
            return
        try:
            data = json.loads(answer.body)
        except ValueError:
            return
        if not isinstance(data, dict) or "method" not in data:
            return
        method = str(data.pop("method"))
        await self._call(method, _stringify_json_params(data), {})



@dataclass(slots=True)
class _HttpAnswer:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class _WebhookClient:
    """A minimal keep-alive HTTP/1.1 client for webhook POSTs (much lighter than a general client)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._target: tuple[str, str, int] | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = self._target = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> _HttpAnswer:
        timeout = self.timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported webhook URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.scheme, parts.hostname, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (head + "Connection: keep-alive\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            reused = self._writer is not None and self._target == target
            if not reused:
                self.close()
                context = ssl.create_default_context() if parts.scheme == "https" else None
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, port, ssl=context), timeout
                )
                self._target = target
            try:
                return await asyncio.wait_for(self._exchange(request), timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if not reused or attempt == 2:  # a kept-alive connection may have been closed: retry once
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, request: bytes) -> _HttpAnswer:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(request)
        await writer.drain()
        status_line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close" and version != "HTTP/1.0"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            payload = b"".join(chunks)
        elif "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        elif status in (204, 304) or status < 200:
            payload = b""
        else:
            payload = await reader.read()
            keep_alive = False
        if not keep_alive:
            self.close()
        return _HttpAnswer(status, reason or HTTPStatus(status).phrase, headers, payload)

