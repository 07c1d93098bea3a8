"""Stand-in Telegram Bot API server for tests and benchmarks.

It speaks the real Bot API HTTP protocol, so python-telegram-bot and aiogram work against it
unchanged when pointed at :attr:`TelegramStandIn.root_url`:

* ``<root>/bot<token>/<method>`` with a GET query string, or a POST body that is
  ``application/x-www-form-urlencoded``, ``application/json`` or ``multipart/form-data``;
* ``<root>/file/bot<token>/<file_path>`` for downloads;
* answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``
  (plus ``"parameters": {"retry_after": N}`` for 429), like Telegram.

Every request is checked against the official machine-readable spec in
``tests/data/telegram-bot-api/api.json``: method exists, required fields present, no unknown
fields, every value parses as one of its listed types (objects recursively), plus the value rules
clients commonly break (text length, entity markup, callback_data size, inline buttons with exactly
one action, ...). A violating request gets HTTP 400 and is recorded in
:attr:`TelegramStandIn.violations`, so a fixture can assert there were none.

The test side drives simulated users through a synchronous, thread-safe API (``send_text``,
``press_button``, ``send_photo``, ``block_user`` ...) and inspects what the bot sent
(``sent_messages``: every call; ``inbox``: what the user's chat shows now; ``wait_for_messages``,
``last_buttons``). Updates are served by ``getUpdates`` long polling — an update is forgotten only
when a later call passes an offset above its id (``is_confirmed``, ``pending_update_ids``) — or
pushed to the bot's webhook, whichever the bot set up.

Faults: ``fail_next(method, status=…, retry_after=…, delay=…)`` (an error without effect),
``drop_response_after_processing(method)`` (the call takes effect, the connection is closed before
the answer), ``block_user(chat_id)`` (403 "Forbidden: bot was blocked by the user" and a
``my_chat_member`` update). ``early_retries`` lists calls that came while a 429's ``retry_after`` still
ran; ``arrivals`` records when each call arrived (to count a bot's sending rate per second).

Webhook mode (after the bot's ``setWebhook``): updates are POSTed as JSON to the URL, with
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, by ``max_connections`` workers (default
40): in order per chat, chats in parallel, each update retried with a short backoff until a 2xx
answer. A JSON answer carrying ``{"method": ...}`` is executed like Telegram does.

The server is written in layers, one module each: ``telegram_entities`` (parse modes),
``telegram_spec`` (the spec and request validation), ``telegram_core`` (state, thread, HTTP,
dispatch), ``telegram_updates`` (the update queue, ``getUpdates``, webhooks), ``telegram_methods``
(what the bot sends), ``telegram_users`` (simulated users) and this module (inspection, faults,
the control API, the process entry point). Import everything from here.

Run as a process for benchmarks (prints ``telegram stand-in listening on URL`` when ready)::

    python -m tests.standins.telegram_server --port 8081 --token 123456:TEST-token

The JSON control API (also served in-process) answers ``{"ok": true, "result": ...}`` unless noted:

* ``POST /_standin/updates`` body = an update or a list of them (``update_id`` optional) -> ids
* ``POST /_standin/send_text`` ``{"chat_id", "text", ...send_text keywords}`` -> update id
* ``POST /_standin/press_button`` ``{"chat_id", "callback_data", "message_id"?}`` -> update id
* ``POST /_standin/fail_next`` ``{"method", "count"?, "status"?, "retry_after"?, "description"?, "delay"?}``
* ``POST /_standin/reset``
* ``GET /_standin/sent?chat_id=N`` -> plain list of sent-message entries (without ``chat_id``:
  ``{chat_id: count}``)
* ``GET /_standin/stats`` -> plain ``{"sent": total, "violations": [...], "errors": [...], ...}``
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.standins.telegram_core import StoredFile, _Fault
from tests.standins.telegram_entities import (
    EntityParseError,
    JSONDict,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
)
from tests.standins.telegram_spec import DEFAULT_SPEC_PATH, ApiSpec, Upload, Validated, validate_request
from tests.standins.telegram_users import TelegramUsers

__all__ = [
    "DEFAULT_SPEC_PATH",
    "ApiSpec",
    "EntityParseError",
    "JSONDict",
    "StoredFile",
    "TelegramStandIn",
    "Upload",
    "Validated",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "validate_request",
]

log = logging.getLogger(__name__)


class TelegramStandIn(TelegramUsers):
    """A Telegram Bot API server in a background thread, with a test-side user simulator.

    All public methods are synchronous and thread-safe. From async tests call them via
    ``asyncio.to_thread`` where they block (``wait_for_*``); the others return immediately.
    """

    def _routes(self) -> list[Route]:
        return [
            *super()._routes(),
            Route("/_standin/updates", self._ctl_updates, methods=["POST"]),
            Route("/_standin/send_text", self._ctl_send_text, methods=["POST"]),
            Route("/_standin/press_button", self._ctl_press_button, methods=["POST"]),
            Route("/_standin/fail_next", self._ctl_fail_next, methods=["POST"]),
            Route("/_standin/reset", self._ctl_reset, methods=["POST"]),
            Route("/_standin/sent", self._ctl_sent, methods=["GET"]),
            Route("/_standin/stats", self._ctl_stats, methods=["GET"]),
            Route("/{rest:path}", self._http_not_found, methods=["GET", "POST", "HEAD"]),
        ]

    def __enter__(self) -> TelegramStandIn:
        self.start()
        return self

    # ------------------------------------------------------------------ control API (JSON)

    async def _control(self, request: Request, action: Callable[[Any], Any]) -> Response:
        """Run a control-API action on the JSON body; bad input is a 400 with the reason."""
        try:
            body = json.loads(await request.body() or b"null")
            result = action(body)
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            return self._json_response({"ok": False, "description": f"{type(exc).__name__}: {exc}"}, 400)
        return self._json_response({"ok": True, "result": result})

    async def _ctl_updates(self, request: Request) -> Response:
        def push(body: Any) -> list[int]:
            updates = body if isinstance(body, list) else [body]
            return [self.push_raw_update(u) for u in updates]

        return await self._control(request, push)

    async def _ctl_send_text(self, request: Request) -> Response:
        def send(body: JSONDict) -> int:
            return self.send_text(int(body.pop("chat_id")), str(body.pop("text")), **body)

        return await self._control(request, send)

    async def _ctl_press_button(self, request: Request) -> Response:
        def press(body: JSONDict) -> int:
            return self.press_button(int(body.pop("chat_id")), str(body.pop("callback_data")), **body)

        return await self._control(request, press)

    async def _ctl_fail_next(self, request: Request) -> Response:
        def fail(body: JSONDict) -> None:
            self.fail_next(str(body.pop("method")), **body)

        return await self._control(request, fail)

    async def _ctl_reset(self, request: Request) -> Response:
        self.reset()
        return self._json_response({"ok": True})

    async def _ctl_sent(self, request: Request) -> Response:
        chat_id = request.query_params.get("chat_id")
        if chat_id is None:
            with self._lock:
                counts = {str(k): len(v) for k, v in self._sent.items()}
            return self._json_response(counts)
        return self._json_response(self.sent_messages(int(chat_id)))

    async def _ctl_stats(self, request: Request) -> Response:
        return self._json_response(self.stats())


    # ------------------------------------------------------------------ inspection

    def sent_messages(self, chat_id: int) -> list[JSONDict]:
        """Every message the bot sent to (or edited in) the chat, in order.

        Entries: ``message_id``, ``text`` (after entity parsing; the caption for media),
        ``reply_markup`` (parsed dict or None), ``method`` (``sendMessage``,
        ``editMessageText`` ...), plus ``raw_text``, ``parse_mode``, ``entities``, ``media``,
        ``params``, ``date``, ``chat_id``.
        """
        with self._lock:
            return [dict(e) for e in self._sent.get(chat_id, [])]

    def sent_count(self) -> int:
        with self._lock:
            return self._sent_total

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """The current state of a message (after edits), as Telegram would return it."""
        with self._lock:
            message = self._messages.get((chat_id, message_id))
            return None if message is None else dict(message)

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0) -> list[JSONDict]:
        """Block until at least ``count`` messages were sent to the chat."""
        with self._cond:
            done = self._cond.wait_for(lambda: len(self._sent.get(chat_id, [])) >= count, timeout)
            got = [dict(e) for e in self._sent.get(chat_id, [])]
        if not done:
            texts = [(e["method"], e["text"]) for e in got]
            raise AssertionError(
                f"expected {count} message(s) in chat {chat_id} within {timeout}s, got "
                f"{len(got)}: {texts}; violations: {self.violations}; errors: {self.errors}"
            )
        return got

    def wait_for_request(self, method: str, count: int = 1, timeout: float = 10.0) -> list[JSONDict]:
        """Block until the bot called ``method`` at least ``count`` times; returns their params."""
        canonical = self.spec.canonical_method(method) or method
        with self._cond:
            done = self._cond.wait_for(
                lambda: len(self._requests_by_method.get(canonical, [])) >= count, timeout
            )
            got = list(self._requests_by_method.get(canonical, []))
        if not done:
            raise AssertionError(
                f"expected {count} {canonical} call(s) within {timeout}s, got {len(got)}; "
                f"violations: {self.violations}"
            )
        return got

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Block until ``predicate()`` holds; it is re-checked whenever the bot makes a request, a
        message is recorded or a webhook delivery succeeds."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{what} not reached within {timeout}s; violations: {self.violations}")

    def requests_for(self, method: str) -> list[JSONDict]:
        canonical = self.spec.canonical_method(method) or method
        with self._lock:
            return list(self._requests_by_method.get(canonical, []))

    def chat_actions(self, chat_id: int) -> list[str]:
        with self._lock:
            return list(self._chat_actions.get(chat_id, []))

    def deleted_messages(self, chat_id: int) -> list[int]:
        with self._lock:
            return list(self._deleted.get(chat_id, []))

    def callback_answer(self, update_id: int) -> JSONDict | None:
        """The answerCallbackQuery params for a press_button update, or None if unanswered."""
        with self._lock:
            query_id = self._callback_by_update.get(update_id)
            if query_id is None:
                raise KeyError(f"update {update_id} is not a callback query made by press_button")
            return self._callbacks[query_id]["answer"]

    def unanswered_callbacks(self) -> list[int]:
        """update_ids of press_button queries the bot has not answered yet."""
        with self._lock:
            return [q["update_id"] for q in self._callbacks.values() if q["answer"] is None]

    def my_commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        with self._lock:
            return list(self._commands.get(key, []))

    @property
    def webhook_url(self) -> str:
        return self._webhook_url

    def stats(self) -> JSONDict:
        with self._lock:
            return {
                "sent": self._sent_total,
                "violations": list(self.violations),
                "errors": list(self.errors),
                "requests": len(self.requests),
                "pending_updates": self.pending_update_count(),
                "last_update_id": self._last_update_id,
                "webhook_url": self._webhook_url,
                "webhook_deliveries": len(self.webhook_deliveries),
            }

    # ------------------------------------------------------------------ faults and state

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        delay: float = 0.0,
        after: int = 0,
    ) -> None:
        """Answer the next ``count`` valid calls of ``method`` (``"*"`` = any) with an error; with ``after``,
        the calls after the next ``after``, which succeed.

        429 carries ``parameters.retry_after``; the default descriptions are Telegram's
        (``Too Many Requests: retry after N``, ``Internal Server Error``, ``Bad Gateway`` ...).
        With ``delay`` the answer comes that many seconds late: longer than the client's read
        timeout, it is a timeout (``status=504`` is the natural choice). A failed call has no
        effect (nothing is sent), also when it timed out.
        """
        if delay < 0:
            raise ValueError("delay must not be negative")
        key = "*" if method == "*" else (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            self._faults.setdefault(key, deque()).append(
                _Fault(status=status, retry_after=retry_after, description=description, remaining=count,
                       delay=float(delay), after=after)
            )

    def drop_response_after_processing(self, method: str, count: int = 1) -> None:
        """The next ``count`` successful calls of ``method`` take effect (a message is sent and shown to
        the user), but the connection is closed before the answer: the bot sees the server hang up
        and cannot know the call went through. What the bot never received is kept in
        ``dropped_responses``. A bot that simply sends again shows the user the message twice — in
        Telegram as here."""
        key = (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            self._drops[key] = self._drops.get(key, 0) + count

    def hold_responses(self, method: str) -> None:
        """From now on, successful calls of ``method`` take effect at once (a message is shown to the user)
        but their answers wait until ``release_responses()``: a bot killed meanwhile has sent messages it
        never learned were sent. ``held_responses()`` counts the answers waiting."""
        key = (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            self._holding.add(key)

    def held_responses(self) -> int:
        with self._lock:
            return self._held

    def release_responses(self) -> None:
        """Answer every held call and stop holding."""
        with self._lock:
            self._holding.clear()
            self._held = 0
            release, self._release = self._release, None
        if release is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(release.set)

    def reset(self) -> None:
        """Forget logs, sent messages, callback queries, faults, blocks and pending updates.

        Files, chats, message history (ids keep increasing), commands and the webhook stay.
        """
        self._drop_pending()
        with self._cond:
            self.requests.clear()
            self.violations.clear()
            self.errors.clear()
            self.warnings.clear()
            self.webhook_deliveries.clear()
            self.arrivals.clear()
            self.early_retries.clear()
            self._flood_until.clear()
            self.filtered_update_ids.clear()
            self._sent.clear()
            self._sent_total = 0
            self._requests_by_method.clear()
            self._deleted.clear()
            self._chat_actions.clear()
            self._callbacks.clear()
            self._callback_by_update.clear()
            self._faults.clear()
            self._drops.clear()
            self.dropped_responses.clear()
            self._blocked.clear()



# --------------------------------------------------------------------------------------------
# process entry point


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stand-in Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456:TEST-token")
    parser.add_argument("--spec", type=Path, default=None, help="path of api.json")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    server = TelegramStandIn(token=args.token, spec_path=args.spec, host=args.host, port=args.port)
    server.start()
    print(f"telegram stand-in listening on {server.root_url} (token {server.token})", flush=True)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()

