"""Telegram, through python-telegram-bot used as a transport.

One handler turns every `Update` into an `Inbound`; the dialog's replies go out through the outbox,
which calls `send` below. The PTB application's lifecycle runs inside our event loop next to the
HTTP server: long polling when no webhook URL is set, otherwise updates arrive at `/telegram/webhook`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import Application, ApplicationBuilder
from telegram.warnings import PTBUserWarning

from bot.channels.send_rate import DatabaseBudget, RedisBudget, SharedRateLimiter
from bot.channels.telegram_http import AiohttpRequest
from bot.config import Settings
from bot.outbox import PermanentFailure, TemporaryFailure, plain
from bot.runtime import Runtime
from handlers.texts import normalise_locale
from handlers.types import Attachment, Choice, Inbound, Outbound, SharedContact, coordinates
from handlers.types import parse_command as parse_text_command
from storage.db import DATABASE_UNAVAILABLE, disk_full, masked_url, unwritable

log = logging.getLogger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
GROUP_CHATS = ("group", "supergroup")
COMMANDS = ("start", "report", "status", "cancel", "language", "help")
POLL_SECONDS = 20
POLL_BACKOFF_SECONDS = 2.0
STOP_GRACE_SECONDS = 30.0
FULL_DISK_RETRY_SECONDS = 5.0
"""How often updates that could not be stored (a full disk) are fetched again from Telegram, which keeps them."""


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


_BOT_NAME = re.compile(r"^(\s*[/／][^\s@]*)@\w+")


def parse_command(text: str) -> tuple[str, str | None] | None:
    """`/status@QinglianBot 1234 5678` → ("status", "1234 5678"): the dialog's command, the bot's name that
    Telegram writes after it in groups dropped."""
    return parse_text_command(_BOT_NAME.sub(r"\1", text, count=1))


def to_inbound(update: Update, fetcher: Any) -> Inbound | None:
    """The channel-neutral form of a Telegram update; None for updates the dialog does not take."""
    key = str(update.update_id)
    if update.callback_query is not None:
        query = update.callback_query
        message = query.message
        if message is None or message.chat.type != "private":
            return None
        return Inbound(CHANNEL, str(message.chat.id), query.from_user.language_code, choice=query.data or "",
                       update_key=key)
    message = update.message
    if message is None or message.chat.type != "private":
        return None
    user_ref = str(message.chat.id)
    language = message.from_user.language_code if message.from_user else None
    if message.text is not None:
        command = parse_command(message.text)
        if command is not None:
            return Inbound(CHANNEL, user_ref, language, command=command[0], command_arg=command[1],
                           update_key=key)
        return Inbound(CHANNEL, user_ref, language, text=message.text, update_key=key,
                       may_be_cut=len(message.text) >= CUT_FROM, sequence=message.message_id, sent_at=message.date)
    attachment: Attachment
    if message.photo:
        largest = message.photo[-1]
        attachment = Attachment("photo", "image/jpeg", largest.file_size, None, fetcher(largest.file_id))
    elif message.document is not None:
        document = message.document
        attachment = Attachment("document", document.mime_type, document.file_size, document.file_name,
                                fetcher(document.file_id))
    elif message.sticker is not None:
        attachment = Attachment("sticker")
    elif message.voice is not None:
        attachment = Attachment("voice")
    elif message.video is not None or message.video_note is not None or message.animation is not None:
        attachment = Attachment("video")
    elif message.audio is not None:
        attachment = Attachment("audio")
    elif message.venue is not None:  # a place picked from the map: its name and address
        attachment = Attachment("location", place=" ".join(f"{message.venue.title} {message.venue.address}".split()))
    elif message.location is not None:
        attachment = Attachment("location", place=coordinates(message.location.latitude, message.location.longitude))
    elif message.contact is not None:
        card = message.contact
        own = card.user_id is not None and message.from_user is not None and card.user_id == message.from_user.id
        attachment = Attachment("contact", contact=SharedContact(contact_name(card.first_name, card.last_name),
                                                                 card.phone_number, own))
    else:
        attachment = Attachment("other")
    # a photo or file comes with the words written under it in the same message: the dialog gets both; the
    # photos of an album come one an update, with the album's key
    return Inbound(CHANNEL, user_ref, language, text=message.caption or None, attachment=attachment, update_key=key,
                   group=message.media_group_id)


def contact_name(first_name: str, last_name: str | None) -> str:
    """The name on a contact card as it is written: a Chinese name family name first ("张" "伟" → "张伟"), others
    first name first ("Wei Zhang")."""
    if not last_name:
        return first_name
    if _HAN.search(first_name) and _HAN.search(last_name):
        return f"{last_name}{first_name}"
    return f"{first_name} {last_name}"


_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


TEXT_LIMIT = 4096
"""Characters of one message's text that `sendMessage` takes ("1-4096 characters after entities parsing")."""
CUT_FROM = TEXT_LIMIT // 2
"""A resident's text at least this long may be the first part of a longer paste: Telegram's apps send a text over
4096 characters as several messages, each cut at a break before the limit."""
GATHER = timedelta(seconds=2)
"""How long the messages a resident sends in one go take to arrive: an album's photos (one update each) and the
parts of a cut text come within moments of each other; the step that may be continued waits that long to answer."""


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """`text` in parts Telegram takes: each at most `limit` characters, cut at the last paragraph break within
    the limit, else the last line break, else at the limit (one line longer than a message)."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = limit
        part = text[:cut].rstrip("\n")
        if part:
            parts.append(part)
        text = text[cut:].lstrip("\n")
    if text or not parts:
        parts.append(text)
    return parts


def in_parts(messages: list[Outbound]) -> list[dict[str, object]]:
    """The outbox's payloads for a step's replies: one per message Telegram takes, a longer text stored as its
    parts (the keyboard with the last), so each part is sent, and retried after flood control, on its own."""
    payloads: list[dict[str, object]] = []
    for message in messages:
        *leading, last = split_text(message.text)
        payloads.extend(replace(message, text=part, choices=(), columns=1, notice_offer=None).to_payload()
                        for part in leading)
        payloads.append(replace(message, text=last).to_payload())
    return payloads


def keyboard(message: Outbound) -> dict[str, Any] | None:
    """The inline keyboard of a message as the Bot API's `InlineKeyboardMarkup` object."""
    if not message.choices:
        return None
    return _keyboard(message.choices, max(1, message.columns))


@lru_cache(maxsize=4096)
def _keyboard(choices: tuple[Choice, ...], columns: int) -> dict[str, Any]:
    """Built once per keyboard with PTB's classes (which check it) and kept as the plain object that is sent;
    the dialog's keyboards recur. Callers must not change it."""
    rows = [
        [InlineKeyboardButton(choice.label, callback_data=choice.key) for choice in choices[i : i + columns]]
        for i in range(0, len(choices), columns)
    ]
    return InlineKeyboardMarkup(rows).to_dict()


# `send` below calls `sendMessage` through `Bot.do_api_request`: the same rate limiter, timeouts and error
# mapping (`RetryAfter`, `Forbidden`, …) as `Bot.send_message`, without turning Telegram's answer into a
# PTB `Message` that nothing reads (about 0.1 ms of CPU a message, docs/benchmarks-telegram.md). PTB
# suggests the named method when an endpoint has one; here the choice is deliberate.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.send_?[mM]essage'", category=PTBUserWarning)


START_RETRY_SECONDS = 60.0
"""How often a channel that could not connect at start (a refused token, no route to Telegram) tries again."""
REMINDER_SECONDS = (60.0, 3600.0)
"""While the Bot API cannot be reached: the first reminder after a minute, each next one twice as late, then hourly."""


def duration(seconds: float) -> str:
    """`45 s`, `3 min 12 s`, `2 h 5 min`, `1 d 3 h`: how long something lasted, for a log line."""
    seconds = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if seconds >= size:
            rest = seconds % size // smaller_size
            return f"{seconds // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{seconds} s"


class Outage:
    """A loop's failing calls to the Bot API as an operator reads them: one line when they start (what, why, that
    it keeps trying), a reminder at growing intervals (`REMINDER_SECONDS`) and one line when a call succeeds again
    (after how long, how many tries) — not one line per try, which a day's outage made 43,000 of."""

    def __init__(self, what: str, retrying: str, *, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self._what, self._retrying, self._level = what, retrying, level
        self._clock, self._wall_clock = clock, wall_clock
        self._since: float | None = None
        self._since_wall = 0.0
        self._reminder_at = 0.0
        self._interval = REMINDER_SECONDS[0]
        self.failures = 0
        """Failed tries of the outage in progress (0 when none is)."""

    def failed(self, reason: str) -> None:
        now = self._clock()
        self.failures += 1
        if self._since is None:
            self._since, self._since_wall = now, self._wall_clock()
            self._reminder_at, self._interval = now + REMINDER_SECONDS[0], REMINDER_SECONDS[0]
            log.log(self._level, "telegram: %s: %s; %s (one line when it works again, a reminder at growing "
                    "intervals meanwhile)", self._what, reason, self._retrying)
        elif now >= self._reminder_at:
            log.log(self._level, "telegram: %s for %s now (%d tries failed): %s; %s", self._what,
                    duration(now - self._since), self.failures, reason, self._retrying)
            self._interval = min(self._interval * 2, REMINDER_SECONDS[1])
            self._reminder_at = now + self._interval

    def ended(self, what_now: str) -> None:
        if self._since is None:
            return
        started = datetime.fromtimestamp(self._since_wall, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        log.warning("telegram: %s after %s (since %s, %d tries failed)", what_now,
                    duration(self._clock() - self._since), started, self.failures)
        self._since, self.failures = None, 0


class TelegramChannel:
    def __init__(self, settings: Settings, runtime: Runtime, *, max_rate: float = 30.0,
                 retry_seconds: float = START_RETRY_SECONDS, poll_backoff_seconds: float = POLL_BACKOFF_SECONDS
                 ) -> None:
        assert settings.telegram_token
        self._settings = settings
        self._runtime = runtime
        root = settings.telegram_api_url
        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(settings.telegram_token)
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            .rate_limiter(SharedRateLimiter(
                RedisBudget(settings.redis_url) if settings.redis_url else DatabaseBudget(runtime.database),
                overall_per_second=max_rate))
            .request(AiohttpRequest(connection_pool_size=8, pool_timeout=30))
            .get_updates_request(AiohttpRequest(connection_pool_size=1))
            .updater(None)  # polling is ours (`_poll`): an update is acknowledged once its step is done
        )
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._polling: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_batch = False
        self._kept: set[int] | None = None  # while a full disk keeps updates with Telegram: those told so
        self._retry_seconds = retry_seconds
        self._poll_backoff_seconds = poll_backoff_seconds
        #: getUpdates failing (long polling): the Bot API down, unreachable, or refusing the token
        self.polling_outage = Outage("getUpdates fails, no update is received",
                                     f"trying again every {poll_backoff_seconds:g} s")
        self._start_outage = Outage("channel not started", f"trying again every {retry_seconds:g} s (the web chat "
                                    "and WeChat work meanwhile)", level=logging.ERROR)
        self._retrying: asyncio.Task[None] | None = None
        #: connected to the Bot API and registered with the outbox
        self.started = False

    @property
    def webhook_mode(self) -> bool:
        return self._settings.telegram_webhook_url is not None

    async def start(self, *, receive: bool = True) -> None:
        """Connect; with `receive=False` (a `qinglian worker`) only send, leaving updates to the web workers.

        A Bot API that refuses the token or cannot be reached does not stop the service (the web chat and WeChat
        go on): one line says why, without the token, and the channel tries again every `retry_seconds`; the
        outbox keeps Telegram's messages until it is connected."""
        try:
            await self._connect(receive)
        except (InvalidToken, EndPointNotFound, NetworkError) as problem:
            self._start_outage.failed(self._why(problem))
            self._retrying = asyncio.create_task(self._keep_trying(receive), name="telegram-start")

    def _why(self, problem: Exception) -> str:
        if isinstance(problem, InvalidToken | EndPointNotFound):
            return "the Bot API refused QINGLIAN_TELEGRAM_TOKEN (revoked or mistyped in BotFather?)"
        token = self._settings.telegram_token or ""
        return f"the Bot API at {self._settings.telegram_api_url} cannot be reached: {problem}".replace(token, "***")

    async def _keep_trying(self, receive: bool) -> None:
        while not self._stopping:
            await asyncio.sleep(self._retry_seconds)
            try:
                await self._connect(receive)
            except (InvalidToken, EndPointNotFound, NetworkError) as problem:
                self._start_outage.failed(self._why(problem))
            else:
                self._start_outage.ended("channel started")
                return

    async def _connect(self, receive: bool) -> None:
        await self.application.initialize()
        if not receive:
            self._runtime.outbox.register(CHANNEL, plain(self.send))
            self.started = True
            log.info("telegram channel started (sending only)")
            return
        await self._publish_commands()
        bot = self.application.bot
        if self.webhook_mode:
            await bot.set_webhook(
                url=str(self._settings.telegram_webhook_url),
                secret_token=self._settings.webhook_secret(),
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            await bot.delete_webhook()
        self._runtime.outbox.register(CHANNEL, plain(self.send))
        if not self.webhook_mode:
            self._polling = asyncio.create_task(self._poll(), name="telegram-polling")
        self.started = True
        log.info("telegram channel started (%s)", "webhook" if self.webhook_mode else "long polling")

    async def stop(self) -> None:
        """Stop polling between batches (a batch being handled finishes: no step is cut off mid-commit)."""
        self._stopping = True
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)
            self._retrying = None
        if self._polling is not None:
            if not self._in_batch:  # waiting in getUpdates: nothing is being handled, stop at once
                self._polling.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(self._polling), STOP_GRACE_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                self._polling.cancel()
                await asyncio.gather(self._polling, return_exceptions=True)
            self._polling = None
        await self.application.shutdown()

    async def _poll(self) -> None:
        """Long polling that acknowledges an update only when its step is done.

        Telegram forgets an update when a later `getUpdates` passes an offset above its id. The offset here
        moves past a batch only after every update of it was handled — its step committed, or it failed and
        the resident was told — so a process killed mid-step leaves the update with Telegram, which delivers it
        again to the restarted service (a step that did commit is recognised by its update id). An update a full
        disk could not store stays with Telegram too, and is fetched again every `FULL_DISK_RETRY_SECONDS`."""
        bot = self.application.bot
        offset: int | None = None
        handled: set[int] = set()  # updates above the offset already handled: they come again behind a kept one
        while not self._stopping:
            try:
                updates = await bot.get_updates(offset=offset, timeout=POLL_SECONDS, allowed_updates=ALLOWED_UPDATES)
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after))
                continue
            except (TimedOut, NetworkError, InvalidToken) as exc:
                self.polling_outage.failed(self._why(exc))
                await asyncio.sleep(self._poll_backoff_seconds)
                continue
            self.polling_outage.ended("getUpdates works again")
            if updates:
                self._in_batch = True
                try:
                    fresh = [update for update in updates if update.update_id not in handled]
                    stored = await asyncio.gather(*(self._handle_polled(update) for update in fresh))
                finally:
                    self._in_batch = False
                kept = [update.update_id for update, done in zip(fresh, stored, strict=True) if not done]
                # Telegram forgets every update below the offset: it stops at the first one not stored, and the
                # ones after it that were handled (an edit answered, a step committed) are not handled again
                offset = min(kept) if kept else updates[-1].update_id + 1
                handled = {update.update_id for update, done in zip(fresh, stored, strict=True)
                           if done and update.update_id >= offset} | {key for key in handled if key >= offset}
                if kept:
                    await asyncio.sleep(FULL_DISK_RETRY_SECONDS)
                else:
                    self._stored_again()

    async def _publish_commands(self) -> None:
        texts = self._runtime.texts
        for language in ("zh", "en"):
            commands = [BotCommand(name, texts.get(language, f"cmd_{name}")) for name in COMMANDS]
            await self.application.bot.set_my_commands(commands, scope=BotCommandScopeDefault(),
                                                       language_code=language)
        default = [BotCommand(name, texts.get("zh", f"cmd_{name}")) for name in COMMANDS]
        await self.application.bot.set_my_commands(default)

    def check_secret(self, header_value: str | None) -> bool:
        # as bytes: compare_digest refuses (TypeError, a 500) a str with a character outside ASCII, which any
        # client can put in the header
        return header_value is not None and hmac.compare_digest(header_value.encode(),
                                                                self._settings.webhook_secret().encode())

    async def process_webhook(self, data: dict[str, Any]) -> bool:
        """Handle one update posted to the webhook; an exception makes Telegram deliver it again. False when a full
        disk could not store it (the resident told once, one log line): the answer makes Telegram deliver it again."""
        update = Update.de_json(data, self.application.bot)
        try:
            await self.handle_update(update)
        except DATABASE_UNAVAILABLE as problem:
            if not disk_full(problem):
                raise
            await self._keep(update, problem)
            return False
        self._stored_again()
        return True

    async def _handle_polled(self, update: Update) -> bool:
        """Handle one polled update; False when it could not be stored (a full disk) and stays with Telegram."""
        try:
            await self.handle_update(update)
        except Exception as problem:
            if isinstance(problem, DATABASE_UNAVAILABLE) and disk_full(problem):
                await self._keep(update, problem)
                return False
            log.exception("telegram update %s could not be handled", update.update_id)
            await self._apologise(update)
        return True

    async def _keep(self, update: Update, problem: BaseException) -> None:
        """A full disk could not store `update`, which stays with Telegram: one log line when that starts (what is
        full, where, what to do; never the resident's words, which a database error's text can quote), and the
        resident told once that it waits, not on every try."""
        if self._kept is None:
            self._kept = set()
            self._log_full_disk(update, problem)
        if update.update_id not in self._kept:
            self._kept.add(update.update_id)
            await self._apologise(update, "storage_full_kept")

    def _stored_again(self) -> None:
        if self._kept is not None:
            log.warning("telegram: updates are stored again (%d were kept with Telegram meanwhile)", len(self._kept))
            self._kept = None

    def _log_full_disk(self, update: Update, problem: BaseException) -> None:
        what = unwritable(problem, masked_url(self._settings.resolved_database_url)) or type(problem).__name__
        if self.webhook_mode:
            log.error("telegram: update %s stays with Telegram, which delivers it again until it can be stored: %s",
                      update.update_id, what)
        else:
            log.error("telegram: update %s and the ones after it stay with Telegram, fetched again every %g s until "
                      "they can be stored: %s", update.update_id, FULL_DISK_RETRY_SECONDS, what)

    def _fetcher(self, file_id: str) -> Any:
        async def fetch() -> bytes:
            telegram_file = await self.application.bot.get_file(file_id)
            return bytes(await telegram_file.download_as_bytearray())

        return fetch

    async def handle_update(self, update: Update) -> None:
        if update.callback_query is not None:
            try:
                await update.callback_query.answer()
            except (BadRequest, NetworkError):
                log.debug("callback query %s could not be acknowledged", update.callback_query.id)
        message = update.message
        if message is not None and message.chat.type in GROUP_CHATS:
            await self._point_to_private_chat(message)
            return
        edited = update.edited_message
        if edited is not None:
            if edited.chat.type == "private":
                await self._say_directly(edited, "telegram_edit_not_read")
            return
        inbound = to_inbound(update, self._fetcher)
        if inbound is None:
            return
        await self._runtime.handle(inbound, queue=in_parts, gather=GATHER)

    async def _point_to_private_chat(self, message: Any) -> None:
        """One of our commands in a group (someone added the bot to theirs): every member reads it, so nothing of
        it reaches the dialog; the group is told where reporting happens. Other group messages go unanswered."""
        text = message.text or ""
        named = re.match(r"^\s*[/／][^\s@]*@(\w+)", text)
        username = self.application.bot.username or ""
        command = parse_command(text)
        if command is None or command[0] not in COMMANDS or (named and named.group(1).lower() != username.lower()):
            return
        await self._say_directly(message, "telegram_group_private", bot=username)

    async def _say_directly(self, message: Any, text_key: str, **values: object) -> None:
        """A word about the message itself (not a step of the dialog), in the sender's language, sent at once."""
        user = message.from_user
        locale = normalise_locale(user.language_code if user else None, self._settings.city.default_locale)
        try:
            await self.application.bot.send_message(message.chat.id,
                                                    self._runtime.texts.get(locale, text_key, **values))
        except Exception as problem:  # noqa: BLE001 - a chat that blocked or muted the bot: nothing more to do
            # the chat's type, not its id: a chat id is a resident's (or a group's) channel identity
            log.info("could not send %s to a %s chat (%s)", text_key, message.chat.type, type(problem).__name__)

    async def _apologise(self, update: Update, text_key: str = "service_busy") -> None:
        """The database or the dialog failed: tell the resident directly (no storage needed), their draft is
        untouched."""
        chat = update.effective_chat
        if chat is None:
            return
        user = update.effective_user
        locale = normalise_locale(user.language_code if user else None, self._settings.city.default_locale)
        text = self._runtime.busy_text(CHANNEL, str(chat.id), locale, text_key)
        try:
            await self.application.bot.send_message(chat.id, text)
        except Exception:  # noqa: BLE001 - nothing more can be done for this update
            log.warning("could not send the apology for update %s", update.update_id)

    async def send(self, recipient: str, message: Outbound) -> None:
        """Outbox sender: one message to one chat, failures classified for the retry logic. The dialog's replies
        come already in parts (`in_parts`); a notice rendered longer than Telegram takes is cut here, the
        keyboard under its last part."""
        try:
            parts = split_text(message.text)
            markup = keyboard(message)
            for position, part in enumerate(parts, 1):
                parameters: dict[str, Any] = {"chat_id": int(recipient), "text": part}
                if markup is not None and position == len(parts):
                    parameters["reply_markup"] = markup
                await self.application.bot.do_api_request("sendMessage", api_kwargs=parameters)
        except RetryAfter as exc:
            raise TemporaryFailure(f"flood control: {exc}", _seconds(exc.retry_after)) from exc
        except Forbidden as exc:
            blocked = "blocked" in exc.message.lower()
            raise PermanentFailure(f"blocked: the resident blocked the bot ({exc.message})" if blocked
                                   else f"forbidden: {exc.message}") from exc
        except BadRequest as exc:
            raise PermanentFailure(f"bad request: {exc.message}") from exc
        except InvalidToken as exc:
            raise TemporaryFailure(f"invalid token: {exc}") from exc
        except EndPointNotFound as exc:  # do_api_request's name, once the bot is initialised, for a 401 or 404
            # on sendMessage, which exists: Telegram no longer takes the token (revoked in BotFather)
            raise TemporaryFailure(f"invalid token: Telegram refused the bot's token ({exc.__cause__ or exc})") from exc
        except (TimedOut, NetworkError) as exc:
            raise TemporaryFailure(f"network: {exc}") from exc
