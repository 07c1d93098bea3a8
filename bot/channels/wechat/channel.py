"""The WeChat channel: one dialog step per callback, answered passively when it finishes in time,
otherwise through the outbox; and the outbox's sender (customer-service messages)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError

from bot.channels.wechat.api import PERMANENT_ERRORS, SLOW_ERRORS, TOKEN_ERRORS, WeChatApi, WeChatApiError
from bot.channels.wechat.crypto import WeChatCrypto, signature, signature_matches
from bot.channels.wechat.messages import (
    CHANNEL,
    CallbackRejected,
    cdata,
    parse_xml,
    reads_english,
    render_message,
    render_replies,
    split_text,
    subscription_choices,
    text_reply_xml,
    to_inbound,
)
from bot.channels.wechat.notices import WeChatNotifier
from bot.config import ConfigError, Settings
from bot.outbox import Delivery, PermanentFailure, TemporaryFailure, WaitForResident
from bot.runtime import KeyedLocks, Runtime
from handlers.types import Inbound, Outbound
from handlers.validation import whole_number
from storage import actions, outbox
from storage.db import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = 300
"""Seconds a callback's timestamp may differ from our clock before it counts as stale (or replayed)."""
PASSIVE_HOLD = timedelta(seconds=10)
"""How long a step's reply waits in the outbox for the passive answer before a worker sends it through the
customer-service API. A passive answer leaves within `PASSIVE_BUDGET` of the callback (WeChat stops listening
after 5 s), and a live process hands a reply it does not answer passively to the worker at once (unless the
database is down); so the hold counts only when the process died between the step's commit and its answer,
and sets how soon the resident gets the reply then (WeChat's retries of the callback find the message handled
and are answered `success`). A passive answer recorded after the hold ran out is still right:
`outbox.deliver_passively` refuses a reply that a worker has leased."""
PASSIVE_BUDGET = 4.0
"""Seconds from a callback's arrival within which a finished step is answered passively; WeChat
gives up at 5."""


# --- the channel ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Step:
    """One message being processed, shared by the deliveries of it (WeChat's retries) in this process."""

    user_ref: str
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0
    waiting: set[int] = field(default_factory=set)
    passive_for: int | None = None
    text: str = ""
    held: int | None = None
    """The outbox row holding `text` (written in the step's transaction) until it is delivered here."""


@dataclass(frozen=True)
class PassiveReply:
    recipient: str
    text: str
    later: str | None = None
    """What did not fit into the one passive message; it follows through the outbox."""


class WeChatChannel:
    def __init__(self, settings: Settings, runtime: Runtime, *, passive_budget: float = PASSIVE_BUDGET) -> None:
        assert settings.wechat_token
        if settings.wechat_aes_key and not settings.wechat_app_id:
            raise ConfigError("QINGLIAN_WECHAT_APP_ID is needed in safe mode (QINGLIAN_WECHAT_AES_KEY is set)")
        self._settings = settings
        self._runtime = runtime
        self._token = settings.wechat_token
        self._crypto = WeChatCrypto(settings.wechat_aes_key, str(settings.wechat_app_id)) \
            if settings.wechat_aes_key else None
        self._texts = runtime.texts
        self._passive_budget = passive_budget
        self._steps: dict[str, _Step] = {}
        self._order = KeyedLocks()
        self._background: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.api: WeChatApi | None = None
        self.notifier = WeChatNotifier(settings.city, runtime.texts, runtime.sessionmaker,
                                       app_id=settings.wechat_app_id, secret_key=settings.resolved_secret_key(),
                                       public_url=settings.public_url, mp_url=settings.wechat_mp_url)

    @property
    def safe_mode_available(self) -> bool:
        return self._crypto is not None

    def _offer_link(self, case_id: int) -> str | None:
        return self.notifier.offer_link(case_id)

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0),
                                       limits=httpx.Limits(max_connections=64))
        self.api = WeChatApi(self._settings, self._runtime.sessionmaker, self._http)
        self._runtime.outbox.register(CHANNEL, self.deliver)
        if not self.api.configured:
            log.warning("wechat: QINGLIAN_WECHAT_APP_ID/APP_SECRET unset: passive replies only, "
                        "slow answers and notices cannot be delivered")
        log.info("wechat channel started (%s)", "safe mode available" if self._crypto else "plaintext mode")

    async def stop(self) -> None:
        if self._background:
            _done, pending = await asyncio.wait(self._background, timeout=10)
            for task in pending:
                task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- the callback -------------------------------------------------------------------------

    def _check_fresh(self, timestamp: str) -> None:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise CallbackRejected(403, "missing or malformed timestamp")
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
            raise CallbackRejected(403, "stale timestamp")

    def verify_url(self, query: Mapping[str, str]) -> str:
        """The GET WeChat sends when the server URL is saved: answer `echostr` if signed with our token."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        self._check_fresh(timestamp)
        if not signature_matches(query.get("signature"), self._token, timestamp, nonce):
            raise CallbackRejected(403, "wrong signature")
        return query.get("echostr", "")

    def open(self, query: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bool]:
        """The message's fields and whether it came in safe mode; `CallbackRejected` before anything
        is done with a callback that is stale, forged, for another app or not well-formed."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        self._check_fresh(timestamp)
        encrypt_type = query.get("encrypt_type", "raw")
        if encrypt_type == "raw":
            if self._crypto is not None and not self._settings.wechat_allow_plaintext:
                # Safe mode: a plaintext message's signature covers only the token, timestamp and nonce,
                # which anyone who saw one callback URL has; it proves nothing about the message.
                raise CallbackRejected(403, "plaintext callback refused in safe mode")
            if not signature_matches(query.get("signature"), self._token, timestamp, nonce):
                raise CallbackRejected(403, "wrong signature")
            return parse_xml(body), False
        if encrypt_type != "aes":
            raise CallbackRejected(400, f"unknown encrypt_type {encrypt_type[:20]!r}")
        if self._crypto is None:
            raise CallbackRejected(400, "safe mode is not configured (QINGLIAN_WECHAT_AES_KEY)")
        envelope = parse_xml(body)
        encrypted = envelope.get("Encrypt", "")
        if not encrypted:
            raise CallbackRejected(400, "safe-mode message without Encrypt")
        if not signature_matches(query.get("msg_signature"), self._token, timestamp, nonce, encrypted):
            raise CallbackRejected(403, "wrong msg_signature")
        try:
            message, app_id = self._crypto.decrypt(encrypted)
        except ValueError as problem:
            raise CallbackRejected(400, f"cannot decrypt: {problem}") from None
        if not hmac.compare_digest(app_id.encode(), self._crypto.app_id.encode()):
            raise CallbackRejected(403, "message for another app id")
        return parse_xml(message.encode()), True

    def seal(self, reply_xml: str) -> str:
        """A passive reply in safe mode: encrypted, signed, with a fresh timestamp and nonce."""
        assert self._crypto is not None
        encrypted = self._crypto.encrypt(reply_xml)
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        return (f"<xml><Encrypt>{cdata(encrypted)}</Encrypt>"
                f"<MsgSignature>{cdata(signature(self._token, timestamp, nonce, encrypted))}</MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>")

    async def answer(self, inbound: Inbound, deadline: float,
                     disconnected: asyncio.Future[None] | None = None) -> PassiveReply | None:
        """Run the message's dialog step (once, however often WeChat delivers it) and return the
        passive reply if the step finishes before `deadline` (event-loop time) and this delivery is
        the newest one still listening; otherwise None (answer `success`): the replies then go out
        through the outbox."""
        key = inbound.update_key or f"{inbound.user_ref}:{time.time_ns()}"
        step = self._steps.get(key)
        if step is None:
            step = self._steps[key] = _Step(inbound.user_ref)
            self._spawn(self._run(key, step, inbound))
        step.attempts += 1
        attempt = step.attempts
        step.waiting.add(attempt)
        finished = asyncio.ensure_future(step.finished.wait())
        watch: set[asyncio.Future[Any]] = {finished}
        if disconnected is not None:
            watch.add(disconnected)
        try:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait(watch, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._leave(step, attempt, listening=False)
            raise
        finally:
            finished.cancel()
        listening = disconnected is None or not disconnected.done()
        if not self._leave(step, attempt, listening=listening):
            return None
        chunks = split_text(step.text)
        if not chunks:
            return None
        later = "\n".join(chunks[1:]) or None
        if step.held is not None and not await self._deliver_passively(step.held, later):
            return None  # already sent, or not recorded: the outbox has it
        return PassiveReply(step.user_ref, chunks[0], later)

    async def _deliver_passively(self, message_id: int, later: str | None) -> bool:
        """Record the held reply as delivered (and queue what does not fit) before it goes into the HTTP
        answer; if that cannot be recorded, the answer is `success` and the outbox sends the reply."""
        try:
            async with self._runtime.sessionmaker.begin() as session:
                return await outbox.deliver_passively(session, message_id,
                                                      Outbound(later).to_payload() if later else None,
                                                      hold=PASSIVE_HOLD)
        except DATABASE_UNAVAILABLE as problem:
            log.warning("wechat: passive reply not recorded (%s); the outbox sends it", type(problem).__name__)
            return False
        finally:
            if later:
                self._runtime.outbox.wake()

    async def _release(self, message_id: int) -> None:
        """A held reply nobody is waiting for any more: the outbox sends it now."""
        async with self._runtime.sessionmaker.begin() as session:
            await outbox.release(session, [message_id])
        self._runtime.outbox.wake()

    def _leave(self, step: _Step, attempt: int, *, listening: bool) -> bool:
        """A delivery stops waiting; True if it carries the passive reply. A delivery chosen for it
        whose connection is gone hands the reply to the outbox instead."""
        step.waiting.discard(attempt)
        if step.passive_for != attempt:
            return False
        if listening:
            return True
        step.passive_for = None
        if step.held is not None:
            self._spawn(self._release(step.held))
        else:
            self._spawn(self.enqueue_text(step.user_ref, step.text))
        return False

    async def _run(self, key: str, step: _Step, inbound: Inbound) -> None:
        try:
            async with self._order.hold(inbound.user_ref):
                prepared = await self._prefetch(inbound)
                step.text, step.held = await self._dialog_step(prepared)
                if step.text:
                    if step.waiting:
                        step.passive_for = max(step.waiting)
                    elif step.held is not None:
                        await self._release(step.held)
                    else:
                        await self.enqueue_text(inbound.user_ref, step.text)
        except Exception:
            log.exception("wechat message %s: the reply could not be queued", self._runtime.update_name(key))
        finally:
            step.finished.set()
            self._steps.pop(key, None)

    async def _prefetch(self, inbound: Inbound) -> Inbound:
        """Download an image before the dialog step, not inside it: the step's transaction must not
        wait on WeChat's media server (on SQLite it would hold the one write lock meanwhile, and the
        access token's own transaction would wait behind it)."""
        attachment = inbound.attachment
        if attachment is None or attachment.fetch is None:
            return inbound
        content: bytes | None = None
        try:
            content = await attachment.fetch()
        except (httpx.HTTPError, WeChatApiError, RuntimeError) as problem:
            log.warning("wechat media of message %s not downloaded: %s", self._runtime.update_name(inbound.update_key),
                        problem)

        async def downloaded() -> bytes:
            if content is None:
                raise RuntimeError("the media download failed")
            return content

        size = None if content is None else len(content)
        return replace(inbound, attachment=replace(attachment, fetch=downloaded, size_bytes=size))

    def _reply_text(self, messages: list[Outbound], inbound: Inbound) -> str:
        """A step's replies as one text. WeChat does not tell the resident's language: one who writes English and
        is answered in Chinese is told, in English, how to change it (unless the reply is the language question)."""
        text = render_replies(messages, self._texts, self._offer_link)
        english_offered = any(choice.key == "language:en" for message in messages for choice in message.choices)
        if text and reads_english(inbound.text) and not english_offered and \
                all(message.locale != "en" for message in messages):
            text += "\n\n" + self._texts.get("en", "wechat_english_hint")
        return text

    def _packer(self, inbound: Inbound) -> Callable[[list[Outbound]], list[dict[str, object]]]:
        """A step's replies as WeChat gets them: one text (WeChat answers a message once, and counts every
        customer-service message against a small quota)."""

        def pack(messages: list[Outbound]) -> list[dict[str, object]]:
            text = self._reply_text(messages, inbound)
            return [Outbound(text).to_payload()] if text else []

        return pack

    async def _dialog_step(self, inbound: Inbound) -> tuple[str, int | None]:
        """The step's reply text and the outbox row holding it. The reply is written to the outbox in the
        step's own transaction, held back for `PASSIVE_HOLD`: delivered in the HTTP answer it is recorded
        as sent; if this process dies first, a worker sends it through the customer-service API."""
        try:
            step = await self._runtime.handle(inbound, queue=self._packer(inbound), hold=PASSIVE_HOLD)
        except IntegrityError as problem:
            # the message by its update's hash: the key of an event (or of a message without MsgId) holds the openid
            name = self._runtime.update_name(inbound.update_key)
            if "processed_updates" in str(problem):
                log.info("wechat message %s claimed by a concurrent delivery", name)
                return "", None
            log.exception("wechat message %s could not be handled", name)
        except Exception:
            log.exception("wechat message %s could not be handled", self._runtime.update_name(inbound.update_key))
        else:
            if step is None:
                return "", None
            return self._reply_text(step.messages, inbound), step.outbox_ids[0] if step.outbox_ids else None
        return self._runtime.busy_text(CHANNEL, inbound.user_ref), None

    async def enqueue_text(self, recipient: str, text: str) -> None:
        """A reply no step stored (the "try again" of a failed step) that missed the passive window: to the
        outbox, for the customer-service API."""
        async with self._runtime.sessionmaker.begin() as session:
            await actions.queue_replies(session, CHANNEL, recipient, [Outbound(text).to_payload()])
        self._runtime.outbox.wake()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fetcher(self, media_id: str) -> Callable[[], Awaitable[bytes]]:
        async def fetch() -> bytes:
            if self.api is None:
                raise RuntimeError("the WeChat channel is not started")
            return await self.api.download_media(media_id, self._settings.city.limits.max_attachment_bytes)

        return fetch

    async def _claim(self, query: Mapping[str, str], body: bytes) -> None:
        """Accept a verified callback's (timestamp, nonce) with one body only, across every process: WeChat
        resending a request it got no answer to (within 5 s) is let through to the exactly-once handling of
        its message, the same pair with another body (a replay with a forged message) is refused."""
        digest = hmac.new(self._token.encode(), b"callback-body:" + body, hashlib.sha256).hexdigest()
        async with self._runtime.sessionmaker.begin() as session:
            fresh = await actions.claim_callback(session, CHANNEL, query.get("timestamp", ""), query.get("nonce", ""),
                                                 digest)
        if not fresh:
            raise CallbackRejected(403, "callback replayed (timestamp and nonce seen before with another body)")

    async def handle_callback(
        self, query: Mapping[str, str], body: bytes, received_at: float,
        disconnected: asyncio.Future[None] | None = None, source: str | None = None,
    ) -> tuple[str | None, PassiveReply | None]:
        """(reply XML or None for `success`, the passive reply) for one verified callback. `source` is the
        address the callback came from (WeChat's server): receipt-code guesses are counted by it too."""
        fields, safe = self.open(query, body)
        inbound = to_inbound(fields, self._fetcher)
        try:
            await self._claim(query, body)
        except DATABASE_UNAVAILABLE as problem:
            # Nothing is done with the message, so nothing can be done twice: the resident is asked to retry.
            log.warning("wechat: the database is unavailable (%s)", type(problem).__name__)
            if inbound is None:
                return None, None
            busy = self._runtime.busy_text(CHANNEL, inbound.user_ref)
            xml = text_reply_xml(inbound.user_ref, fields.get("ToUserName", ""), busy)
            return (self.seal(xml) if safe else xml), PassiveReply(inbound.user_ref, busy)
        if inbound is None:
            choices = subscription_choices(fields)
            if choices:
                await self.notifier.popup_answered(fields.get("FromUserName", ""), choices)
            return None, None
        if source:
            inbound = replace(inbound, client_ip=source, shared_address=True)
        reply = await self.answer(inbound, received_at + self._passive_budget, disconnected)
        if reply is None:
            return None, None
        xml = text_reply_xml(inbound.user_ref, fields.get("ToUserName", ""), reply.text)
        return (self.seal(xml) if safe else xml), reply

    # --- outbound -----------------------------------------------------------------------------

    async def once_authorised(self, query: Mapping[str, str]) -> tuple[int, str]:
        """WeChat's redirect after a resident answered the one-time subscription page: (HTTP status, the text
        the resident reads). A consent is recorded only for our own link and the case's own reporter."""
        locale = self._settings.city.default_locale
        case_id = self.notifier.case_of(query.get("reserved", ""))
        scene, openid = query.get("scene", ""), query.get("openid", "")
        template_id = query.get("template_id", "")
        if (case_id is None or whole_number(scene) is None
                or template_id != self._settings.city.notices.wechat.once_template_id):
            return 400, self._texts.get(locale, "wechat_subscribe_invalid")
        if query.get("action") != "confirm" or not openid:
            return 200, self._texts.get(locale, "wechat_subscribe_cancelled")
        async with self._runtime.sessionmaker.begin() as session:
            if not await actions.is_reporter(session, case_id, CHANNEL, openid):
                return 403, self._texts.get(locale, "wechat_subscribe_invalid")
            await self.notifier.authorised_once(session, openid, template_id, int(scene), case_id)
        return 200, self._texts.get(locale, "wechat_subscribe_done")

    async def deliver(self, delivery: Delivery) -> None:
        """Outbox sender: a customer-service message; outside WeChat's 48-hour window a notice goes as a
        subscription notice or a one-time message where the resident consented, else it waits for them."""
        try:
            await self.send(delivery.recipient, delivery.message)
        except OutsideWindow as window:
            assert self.api is not None
            text = render_message(delivery.message, self._texts)
            try:
                why = await self.notifier.notify(self.api, delivery, text)
            except WeChatApiError as problem:
                raise _classified(problem) from problem
            except httpx.HTTPError as problem:
                raise TemporaryFailure(f"network: {type(problem).__name__}") from problem
            if why is None:
                return
            raise WaitForResident(f"outside WeChat's 48-hour window ({window}); {why}: "
                                  "waits for the resident's next message") from window

    async def send(self, recipient: str, message: Outbound) -> None:
        """A message as customer-service text message(s), failures classified."""
        if self.api is None:
            raise TemporaryFailure("the WeChat channel is not started")
        if not self.api.configured:
            raise PermanentFailure("QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set")
        for chunk in split_text(render_message(message, self._texts, self._offer_link)):
            try:
                await self.api.send_text(recipient, chunk)
            except WeChatApiError as problem:
                if problem.errcode in WINDOW_ERRORS:
                    raise OutsideWindow(f"errcode {problem.errcode}") from problem
                raise _classified(problem) from problem
            except httpx.HTTPStatusError as problem:
                raise TemporaryFailure(f"WeChat answered HTTP {problem.response.status_code}") from problem
            except httpx.HTTPError as problem:
                raise TemporaryFailure(f"network: {type(problem).__name__}") from problem


class OutsideWindow(Exception):
    """WeChat will not take a customer-service message now: the resident's 48 hours are over, or their
    quota of messages since their last one is used up."""


WINDOW_ERRORS = frozenset({45015, 45047})
READABLE = {43004: "the resident unfollowed the account", 43019: "the resident blocked the account",
            40003: "not a follower of this account"}


def _classified(problem: WeChatApiError) -> Exception:
    reason = f"WeChat errcode {problem.errcode}: {READABLE.get(problem.errcode, problem.errmsg)}"[:400]
    if problem.errcode in PERMANENT_ERRORS:
        return PermanentFailure(reason)
    if problem.errcode in TOKEN_ERRORS or problem.errcode in (40013, 40125, 40164, 41002):
        log.error("wechat credentials refused: %s", reason)
    return TemporaryFailure(reason, SLOW_ERRORS.get(problem.errcode))
