"""What the bot sends to the stand-in Bot API server: messages, edits, files, commands, chats.

Any method without a handler of its own is validated like every request and answered with a
plausible result of the type the spec says it returns.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.standins.telegram_core import StoredFile
from tests.standins.telegram_entities import JSONDict
from tests.standins.telegram_spec import _INLINE_BUTTON_PASSIVE_FIELDS, Upload, Validated, _ApiError, _jsonable
from tests.standins.telegram_updates import TelegramUpdates

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)



def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, when recognisable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
                i += 2 if marker != 0xFF else 1
                continue
            (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + seg_len
    return None



class TelegramMethods(TelegramUpdates):
    def _method_handlers(self) -> dict[str, Callable[[Validated], Any]]:
        return {
            **super()._method_handlers(),
            "sendMessage": self._h_send_message,
            "editMessageText": self._h_edit_message_text,
            "editMessageReplyMarkup": self._h_edit_message_reply_markup,
            "editMessageCaption": self._h_edit_message_caption,
            "deleteMessage": self._h_delete_message,
            "answerCallbackQuery": self._h_answer_callback_query,
            "sendPhoto": self._h_send_photo,
            "sendDocument": self._h_send_document,
            "sendChatAction": self._h_send_chat_action,
            "setMyCommands": self._h_set_my_commands,
            "getMyCommands": self._h_get_my_commands,
            "deleteMyCommands": self._h_delete_my_commands,
            "getFile": self._h_get_file,
            "getChat": self._h_get_chat,
            "*": self._h_generic,
        }

    # ------------------------------------------------------------------ messages sent by the bot

    def _chat_id(self, v: Validated) -> int:
        chat_id = v.params["chat_id"]
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _chat_obj(self, chat_id: int) -> JSONDict:
        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        if chat_id > 0:
            return {"id": chat_id, "first_name": "Test", "type": "private"}
        if str(chat_id).startswith("-100"):
            return {"id": chat_id, "title": "Test Supergroup", "type": "supergroup"}
        return {"id": chat_id, "title": "Test Group", "type": "group"}

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _reply_to(self, chat_id: int, v: Validated) -> JSONDict | None:
        p = v.params
        reply = p.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            target_chat = reply.get("chat_id", chat_id)
            allow = bool(reply.get("allow_sending_without_reply"))
        else:
            message_id = p.get("reply_to_message_id")
            target_chat = chat_id
            allow = False
        if message_id is None:
            return None
        allow = allow or bool(p.get("allow_sending_without_reply"))
        target = None
        if isinstance(target_chat, int):
            target = self._messages.get((target_chat, int(message_id)))
        if target is None:
            if allow:
                return None
            raise _ApiError(400, "Bad Request: message to be replied not found")
        quoted = dict(target)
        quoted.pop("reply_to_message", None)
        return quoted

    def _bot_message(self, chat_id: int, v: Validated, **content: Any) -> JSONDict:
        """Create, store and record a message sent by the bot (call with the lock held)."""
        p = v.params
        reply_to = self._reply_to(chat_id, v)
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": dict(self.bot_user),
            "chat": self._chat_obj(chat_id),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if isinstance(p.get("message_thread_id"), int):
            message["message_thread_id"] = p["message_thread_id"]
        message.update({k: val for k, val in content.items() if val is not None})
        if "caption" in v.formatted:
            caption, entities = v.formatted["caption"]
            message["caption"] = caption
            if entities:
                message["caption_entities"] = entities
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        if p.get("protect_content"):
            message["has_protected_content"] = True
        self._messages[(chat_id, message["message_id"])] = message
        self._record(chat_id, message, v)
        return dict(message)

    def _record(self, chat_id: int, message: JSONDict, v: Validated) -> None:
        p = v.params
        entry: JSONDict = {
            "message_id": message["message_id"],
            "text": message.get("text", message.get("caption")),
            "reply_markup": p.get("reply_markup") if isinstance(p.get("reply_markup"), dict) else None,
            "method": v.method,
            "chat_id": chat_id,
            "date": int(time.time()),
            "parse_mode": p.get("parse_mode"),
            "raw_text": p.get("text", p.get("caption")),
            "entities": message.get("entities", message.get("caption_entities", [])),
            "params": _jsonable(p),
        }
        for media in ("photo", "document", "sticker", "voice", "audio", "video", "animation", "location"):
            if media in message:
                entry["media"] = {"type": media, "value": message[media]}
                break
        with self._cond:
            self._sent.setdefault(chat_id, []).append(entry)
            self._sent_total += 1
            self._cond.notify_all()

    def _h_send_message(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        text, entities = v.formatted["text"]
        with self._lock:
            content: JSONDict = {"text": text}
            if entities:
                content["entities"] = entities
            if isinstance(v.params.get("link_preview_options"), dict):
                content["link_preview_options"] = v.params["link_preview_options"]
            return self._bot_message(chat_id, v, **content)

    def _editable(self, v: Validated) -> tuple[int, JSONDict]:
        chat_id = self._chat_id(v)
        message = self._messages.get((chat_id, int(v.params["message_id"])))
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise _ApiError(400, "Bad Request: message can't be edited")
        return chat_id, message

    def _apply_edit(self, chat_id: int, message: JSONDict, changes: JSONDict, v: Validated) -> JSONDict:
        markup = v.params.get("reply_markup")
        changes = dict(changes)
        changes["reply_markup"] = markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None
        if all(message.get(k) == (val or None) for k, val in changes.items()):
            raise _ApiError(400, _NOT_MODIFIED)
        for key, val in changes.items():
            if val:
                message[key] = val
            else:
                message.pop(key, None)
        message["edit_date"] = int(time.time())
        self._record(chat_id, message, v)
        return dict(message)

    def _h_edit_message_text(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        with self._lock:
            chat_id, message = self._editable(v)
            if "text" not in v.formatted:  # rich_message edits are not simulated
                return dict(message)
            text, entities = v.formatted["text"]
            if "text" not in message:
                raise _ApiError(400, "Bad Request: there is no text in the message to edit")
            return self._apply_edit(chat_id, message, {"text": text, "entities": entities}, v)

    def _h_edit_message_caption(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        caption, entities = v.formatted.get("caption", ("", []))
        with self._lock:
            chat_id, message = self._editable(v)
            if "text" in message:
                raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
            return self._apply_edit(
                chat_id, message, {"caption": caption, "caption_entities": entities}, v
            )

    def _h_edit_message_reply_markup(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        with self._lock:
            chat_id, message = self._editable(v)
            return self._apply_edit(chat_id, message, {}, v)

    def _h_delete_message(self, v: Validated) -> bool:
        chat_id = self._chat_id(v)
        with self._lock:
            message = self._messages.pop((chat_id, int(v.params["message_id"])), None)
            if message is None:
                raise _ApiError(400, "Bad Request: message to delete not found")
            self._deleted.setdefault(chat_id, []).append(message["message_id"])
        return True

    def _h_answer_callback_query(self, v: Validated) -> bool:
        query_id = str(v.params["callback_query_id"])
        with self._cond:
            query = self._callbacks.get(query_id)
            if query is None or query["answer"] is not None:
                raise _ApiError(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                )
            query["answer"] = _jsonable(v.params)
            self._cond.notify_all()
        return True

    def _file_param(self, value: Any, kind: str, *, default_name: str, v: Validated | None = None) -> StoredFile:
        """Resolve an ``InputFile or String`` parameter (or an ``attach://`` name) to a stored file."""
        if isinstance(value, str) and value.startswith("attach://") and v is not None:
            value = v.files.get(value[len("attach://") :], value)
        if isinstance(value, Upload):
            return self._store_file(
                value.data,
                kind=kind,
                mime_type=value.content_type,
                file_name=value.filename or default_name,
            )
        text = str(value)
        if re.match(r"https?://", text):
            name = text.rsplit("/", 1)[-1] or default_name
            return self._store_file(b"", kind=kind, mime_type=mimetypes.guess_type(name)[0] or "", file_name=name)
        stored = self._files.get(text)
        if stored is None:
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return stored

    def _photo_sizes(self, stored: StoredFile) -> list[JSONDict]:
        width, height = _image_size(stored.data) or (1280, 720)
        scale = 90 / max(width, height, 1)
        thumb = self._store_file(stored.data, kind="photo", mime_type=stored.mime_type)
        return [
            {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "file_size": len(thumb.data),
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            },
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data),
                "width": width,
                "height": height,
            },
        ]

    def _h_send_photo(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        with self._lock:
            stored = self._file_param(v.params["photo"], "photo", default_name="photo.jpg", v=v)
            return self._bot_message(chat_id, v, photo=self._photo_sizes(stored))

    def _document(self, stored: StoredFile) -> JSONDict:
        document: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return document

    def _h_send_document(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        with self._lock:
            stored = self._file_param(v.params["document"], "document", default_name="document", v=v)
            return self._bot_message(chat_id, v, document=self._document(stored))

    def _h_send_chat_action(self, v: Validated) -> bool:
        chat_id = self._chat_id(v)
        with self._lock:
            self._chat_actions.setdefault(chat_id, []).append(str(v.params["action"]))
        return True

    @staticmethod
    def _commands_key(v: Validated) -> tuple[str, str]:
        scope = v.params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(v.params.get("language_code", ""))

    def _h_set_my_commands(self, v: Validated) -> bool:
        with self._lock:
            self._commands[self._commands_key(v)] = list(v.params["commands"])
        return True

    def _h_get_my_commands(self, v: Validated) -> list[JSONDict]:
        with self._lock:
            return list(self._commands.get(self._commands_key(v), []))

    def _h_delete_my_commands(self, v: Validated) -> bool:
        with self._lock:
            self._commands.pop(self._commands_key(v), None)
        return True

    def _h_get_file(self, v: Validated) -> JSONDict:
        with self._lock:
            stored = self._files.get(str(v.params["file_id"]))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return stored.as_file()

    def _h_get_chat(self, v: Validated) -> JSONDict:
        chat_id = v.params["chat_id"]
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        with self._lock:
            chat = self._chat_obj(chat_id)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _h_generic(self, v: Validated) -> Any:
        """Any other method: a plausible result of the type the spec says it returns."""
        returns = self.spec.returns(v.method)
        p = v.params
        if not returns or returns[0] == "Boolean" or ("Boolean" in returns and "inline_message_id" in p):
            return True
        result_type = returns[0]
        if result_type == "Message" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return self._bot_message(chat_id, v, **self._generic_content(v))
        if result_type == "Array of Message" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return [self._bot_message(chat_id, v, **self._media_content(item, v)) for item in p.get("media", [])]
        if result_type == "MessageId" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return {"message_id": self._bot_message(chat_id, v)["message_id"]}
        if result_type == "Array of MessageId" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return [
                    {"message_id": self._bot_message(chat_id, v)["message_id"]}
                    for _ in p.get("message_ids", [])
                ]
        return self.spec.fake(result_type)

    def _media_content(self, item: Any, v: Validated) -> JSONDict:
        """Message content for one InputMedia item of sendMediaGroup."""
        if not isinstance(item, dict) or "media" not in item:
            return {}
        kind = str(item.get("type", "document"))
        stored = self._file_param(item["media"], kind, default_name=kind, v=v)
        content: JSONDict = {}
        if kind == "photo":
            content["photo"] = self._photo_sizes(stored)
        elif kind == "document":
            content["document"] = self._document(stored)
        elif kind in self.spec.type_fields["Message"]:
            content[kind] = self._file_object(kind, stored)
        if item.get("caption"):
            content["caption"] = item["caption"]
        return content

    def _generic_content(self, v: Validated) -> JSONDict:
        p = v.params
        content: JSONDict = {}
        if v.method == "sendLocation":
            content["location"] = {"latitude": p["latitude"], "longitude": p["longitude"]}
        elif v.method == "sendContact":
            content["contact"] = {"phone_number": p["phone_number"], "first_name": p["first_name"]}
        elif v.method == "sendDice":
            content["dice"] = {"emoji": p.get("emoji", "🎲"), "value": 1}
        message_fields = self.spec.type_fields["Message"]
        for name in ("audio", "animation", "video", "video_note", "voice", "sticker"):
            if name in p and name in message_fields:
                stored = self._file_param(p[name], name, default_name=name, v=v)
                content[name] = self._file_object(name, stored)
        return content

    def _file_object(self, message_field: str, stored: StoredFile) -> JSONDict:
        """An Audio/Video/Sticker/... object (per the spec's required fields) for a stored file."""
        obj = self.spec.fake(self.spec.type_fields["Message"][message_field]["types"][0])
        obj.update({"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.data)})
        if stored.mime_type and "mime_type" in self.spec.type_fields.get(message_field.title().replace("_", ""), {}):
            obj["mime_type"] = stored.mime_type
        return obj

    def last_buttons(self, chat_id: int) -> list[tuple[str, str]]:
        """(text, callback_data) of the newest message whose current inline keyboard is not empty.

        Buttons without callback_data show their other action (url, ...) as the second item.
        """
        with self._lock:
            seen: set[int] = set()
            for entry in reversed(self._sent.get(chat_id, [])):
                mid = entry["message_id"]
                if mid in seen:
                    continue
                seen.add(mid)
                message = self._messages.get((chat_id, mid))
                if message is None:
                    continue
                keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
                buttons = [
                    (str(b.get("text", "")), _button_action(b)) for row in keyboard for b in row
                ]
                if buttons:
                    return buttons
        return []

    def inbox(self, chat_id: int) -> list[JSONDict]:
        """What the user sees of the bot in the chat now, oldest first: every message the bot sent and
        did not delete, as edited since (Message objects, as Telegram returns them). Two sendMessage
        calls with the same text are two messages here, as in Telegram."""
        with self._lock:
            return [dict(message) for (chat, _), message in sorted(self._messages.items())
                    if chat == chat_id and message.get("from", {}).get("id") == self.bot_user["id"]]

    # ------------------------------------------------------------------ files

    def _store_file(
        self, data: bytes, *, kind: str, mime_type: str = "", file_name: str | None = None
    ) -> StoredFile:
        number = next(self._file_counter)
        extension = {
            "photo": ".jpg",
            "sticker": ".webp",
            "voice": ".oga",
            "video_note": ".mp4",
            "video": ".mp4",
            "animation": ".mp4",
        }.get(kind)
        if extension is None:
            extension = Path(file_name or "").suffix or (mimetypes.guess_extension(mime_type or "") or "")
        folder = {"photo": "photos", "sticker": "stickers", "voice": "voice"}.get(kind, f"{kind}s")
        prefix = {"photo": "AgAC", "document": "BQAC", "sticker": "CAAC", "voice": "AwAC"}.get(kind, "BAAC")
        stored = StoredFile(
            file_id=f"{prefix}AgIAAxkB{number:08d}{secrets.token_urlsafe(18)}",
            file_unique_id=f"AQAD{number:08d}",
            file_path=f"{folder}/file_{number}{extension}",
            data=data,
            mime_type=mime_type,
            file_name=file_name,
        )
        with self._lock:
            self._files[stored.file_id] = stored
            self._files_by_path[stored.file_path] = stored
        return stored

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a file the server knows (uploaded by a user or by the bot)."""
        with self._lock:
            return self._files[file_id].data



def _button_action(button: JSONDict) -> str:
    if "callback_data" in button:
        return str(button["callback_data"])
    for key, value in button.items():
        if key not in _INLINE_BUTTON_PASSIVE_FIELDS:
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


def _callback_datas(message: JSONDict) -> set[str]:
    keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {str(b["callback_data"]) for row in keyboard for b in row if "callback_data" in b}

