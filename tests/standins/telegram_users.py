"""Simulated users of the stand-in Bot API server: what they send becomes updates for the bot."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

from tests.standins.telegram_entities import JSONDict, _utf16_len
from tests.standins.telegram_methods import TelegramMethods, _callback_datas
from tests.standins.telegram_spec import _dumps


class TelegramUsers(TelegramMethods):
    def _user(
        self,
        user_id: int,
        first_name: str,
        language_code: str | None,
        last_name: str | None,
        username: str | None,
    ) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def _user_message(self, chat_id: int, user: JSONDict, content: JSONDict) -> JSONDict:
        """Create and store a message from a user (call with the lock held)."""
        if chat_id > 0:
            chat: JSONDict = {"id": chat_id, "first_name": user["first_name"], "type": "private"}
            for key in ("last_name", "username"):
                if key in user:
                    chat[key] = user[key]
            self._chats[chat_id] = chat
        else:
            chat = self._chat_obj(chat_id)
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": user,
            "chat": dict(chat),
            "date": int(time.time()),
            **content,
        }
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _user_id(self, chat_id: int, user_id: int | None) -> int:
        if user_id is not None:
            return user_id
        return chat_id if chat_id > 0 else 987_654_321

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        user_id: int | None = None,
        reply_to_message_id: int | None = None,
        deliver: bool = True,
    ) -> int:
        """A user sends ``text``; a leading ``/command`` gets a ``bot_command`` entity.

        ``deliver=False``: the update is made but not delivered (see ``update()``)."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, last_name, username)
        content: JSONDict = {"text": text}
        command = re.match(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?", text)
        if command:
            content["entities"] = [
                {"offset": 0, "length": _utf16_len(command.group(0)), "type": "bot_command"}
            ]
        with self._lock:
            if reply_to_message_id is not None:
                target = self._messages.get((chat_id, reply_to_message_id))
                if target is not None:
                    quoted = dict(target)
                    quoted.pop("reply_to_message", None)
                    content["reply_to_message"] = quoted
            message = self._user_message(chat_id, user, content)
        return self._enqueue({"message": message}, deliver=deliver)

    def edit_text(self, chat_id: int, message_id: int, text: str) -> int:
        """The user edits the text of a message they sent: an ``edited_message`` update carrying the whole
        message as it now is, with its ``edit_date`` (the bot gets it when its ``allowed_updates`` has it)."""
        with self._lock:
            original = self._messages.get((chat_id, message_id))
            if original is None or original.get("from", {}).get("id") == self.bot_user["id"]:
                raise AssertionError(f"chat {chat_id} has no message {message_id} of the user's")
            edited = {**original, "text": text, "edit_date": int(time.time())}
            edited.pop("entities", None)
            command = re.match(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?", text)
            if command:
                edited["entities"] = [{"offset": 0, "length": _utf16_len(command.group(0)), "type": "bot_command"}]
            self._messages[(chat_id, message_id)] = edited
        return self._enqueue({"edited_message": edited})

    def press_button(
        self,
        chat_id: int,
        callback_data: str,
        *,
        message_id: int | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
        deliver: bool = True,
    ) -> int:
        """A user presses an inline button: a ``callback_query`` update.

        Without ``message_id`` the newest message of the chat whose current inline keyboard has a
        button with ``callback_data`` is used (AssertionError if there is none).
        ``deliver=False``: the update is made but not delivered (see ``update()``).
        """
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        with self._lock:
            message: JSONDict | None = None
            if message_id is not None:
                message = self._messages.get((chat_id, message_id))
                if message is None:
                    message = {"chat": self._chat_obj(chat_id), "message_id": message_id, "date": 0}
            else:
                seen: set[int] = set()
                for entry in reversed(self._sent.get(chat_id, [])):
                    mid = entry["message_id"]
                    if mid in seen:
                        continue
                    seen.add(mid)
                    current = self._messages.get((chat_id, mid))
                    if current is not None and callback_data in _callback_datas(current):
                        message = current
                        break
                if message is None:
                    raise AssertionError(
                        f"no message in chat {chat_id} has a button with callback_data "
                        f"{callback_data!r}; buttons now: {self.last_buttons(chat_id)}"
                    )
            query_id = f"{self.bot_user['id']}{next(self._callback_counter):010d}"
            query = {
                "id": query_id,
                "from": user,
                "message": dict(message),
                "chat_instance": str(abs(hash((chat_id, self.bot_user["id"]))) % 10**18),
                "data": callback_data,
            }
            update_id, queued = self._enqueue_checked({"callback_query": query}, deliver=deliver)
            if queued:  # a query the bot never receives (allowed_updates) needs no answer
                self._callbacks[query_id] = {
                    "chat_id": chat_id,
                    "data": callback_data,
                    "answer": None,
                    "update_id": update_id,
                }
                self._callback_by_update[update_id] = query_id
        return update_id

    def send_photo(
        self,
        chat_id: int,
        content: bytes,
        *,
        caption: str | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a photo; it is stored and its sizes reference downloadable files."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="photo", mime_type="image/jpeg")
        with self._lock:
            extra: JSONDict = {"photo": self._photo_sizes(stored)}
            if caption:
                extra["caption"] = caption
            message = self._user_message(chat_id, user, extra)
        return self._enqueue({"message": message})

    def send_album(
        self,
        chat_id: int,
        contents: list[bytes],
        *,
        caption: str | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
        download_seconds: Sequence[float] = (),
    ) -> list[int]:
        """A user sends several photos in one go (an album, 2–10 items): like Telegram, one message and one
        update per photo, all with the same ``media_group_id``, queued together (a bot's ``getUpdates`` gets them
        in one batch); a caption is on the first. ``download_seconds``: how long each photo's download takes (a
        slow one among them). Returns the updates' ids."""
        if not 2 <= len(contents) <= 10:
            raise AssertionError("an album holds 2 to 10 items")
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        group = str(13_000_000_000_000_000 + next(self._callback_counter))
        messages: list[JSONDict] = []
        for position, content in enumerate(contents):
            stored = self._store_file(content, kind="photo", mime_type="image/jpeg")
            with self._lock:
                if position < len(download_seconds) and download_seconds[position]:
                    self._download_seconds[stored.file_path] = float(download_seconds[position])
                extra: JSONDict = {"media_group_id": group, "photo": self._photo_sizes(stored)}
                if caption and position == 0:
                    extra["caption"] = caption
                messages.append(self._user_message(chat_id, user, extra))
        with self._lock:
            return [self._enqueue({"message": message}) for message in messages]

    def send_contact(
        self,
        chat_id: int,
        phone_number: str,
        contact_first_name: str,
        *,
        contact_last_name: str | None = None,
        contact_user_id: int | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user shares a contact card: their own ("share my phone number": ``contact_user_id`` is their id) or
        one from their address book (another user's id, or none for someone not on Telegram)."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        contact: JSONDict = {"phone_number": phone_number, "first_name": contact_first_name}
        if contact_last_name:
            contact["last_name"] = contact_last_name
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        with self._lock:
            message = self._user_message(chat_id, user, {"contact": contact})
        return self._enqueue({"message": message})

    def send_document(
        self,
        chat_id: int,
        content: bytes,
        file_name: str,
        mime_type: str,
        *,
        caption: str | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a file."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="document", mime_type=mime_type, file_name=file_name)
        with self._lock:
            extra: JSONDict = {"document": self._document(stored)}
            if caption:
                extra["caption"] = caption
            message = self._user_message(chat_id, user, extra)
        return self._enqueue({"message": message})

    def send_sticker(
        self,
        chat_id: int,
        *,
        emoji: str = "👍",
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a (static) sticker."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(b"RIFF\x00\x00\x00\x00WEBPVP8 ", kind="sticker", mime_type="image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "StandInStickers",
            "file_size": len(stored.data),
        }
        with self._lock:
            message = self._user_message(chat_id, user, {"sticker": sticker})
        return self._enqueue({"message": message})

    def send_voice(
        self,
        chat_id: int,
        content: bytes = b"OggS\x00\x02stand-in voice",
        *,
        duration: int = 2,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a voice message."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="voice", mime_type="audio/ogg")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(stored.data),
        }
        with self._lock:
            message = self._user_message(chat_id, user, {"voice": voice})
        return self._enqueue({"message": message})

    def send_location(
        self,
        chat_id: int,
        lat: float,
        lon: float,
        *,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user shares a location."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        location = {"latitude": float(lat), "longitude": float(lon)}
        with self._lock:
            message = self._user_message(chat_id, user, {"location": location})
        return self._enqueue({"message": message})

    def block_user(self, chat_id: int, *, first_name: str = "Test") -> int | None:
        """The user blocks the bot (Telegram's "Stop and block bot"). Every further call that sends to
        the chat — sendMessage, sendPhoto, sendChatAction, ... — fails with 403 "Forbidden: bot was
        blocked by the user". In a private chat the bot also gets a ``my_chat_member`` update (its
        status "member" → "kicked"), as the Bot API documents: "For private chats, this update is
        received only when the bot is blocked or unblocked by the user". Returns that update's id."""
        with self._lock:
            self._blocked.add(chat_id)
        return self._bot_status_update(chat_id, first_name, "member", "kicked")

    def unblock_user(self, chat_id: int, *, first_name: str = "Test") -> int | None:
        """The user unblocks the bot (Telegram then also sends /start when the user taps "Restart")."""
        with self._lock:
            self._blocked.discard(chat_id)
        return self._bot_status_update(chat_id, first_name, "kicked", "member")

    def is_blocked(self, chat_id: int) -> bool:
        with self._lock:
            return chat_id in self._blocked

    def _bot_status_update(self, chat_id: int, first_name: str, old: str, new: str) -> int | None:
        if chat_id <= 0:
            return None
        user = self._user(chat_id, first_name, None, None, None)
        new_member: JSONDict = {"status": new, "user": dict(self.bot_user)}
        if new == "kicked":
            new_member["until_date"] = 0
        update = {"my_chat_member": {"chat": {"id": chat_id, "first_name": first_name, "type": "private"},
                                     "from": user, "date": int(time.time()),
                                     "old_chat_member": {"status": old, "user": dict(self.bot_user)},
                                     "new_chat_member": new_member}}
        return self._enqueue(update)

    def push_raw_update(self, update: JSONDict) -> int:
        """Queue any update as is (``update_id`` is assigned when missing)."""
        update = dict(update)
        with self._lock:
            for value in update.values():
                if isinstance(value, dict) and isinstance(value.get("chat"), dict):
                    chat_id = value["chat"].get("id")
                    message_id = value.get("message_id")
                    if isinstance(chat_id, int) and isinstance(message_id, int):
                        self._messages.setdefault((chat_id, message_id), value)
                        if self._next_message_id.get(chat_id, 1) <= message_id:
                            self._next_message_id[chat_id] = message_id + 1
        return self._enqueue(update)

    def update(self, update_id: int) -> JSONDict:
        """The update with this id as the server made it (delivered or not), for delivering it by hand."""
        with self._lock:
            return json.loads(_dumps(self._history[update_id]))

    def redeliver(self, update_id: int) -> None:
        """Queue the identical update again (same ``update_id``), as Telegram does on retries."""
        with self._lock:
            update = self._history[update_id]
        self._enqueue(update, redelivery=True)
