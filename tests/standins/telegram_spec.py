"""The Bot API reference and request validation of the stand-in Bot API server.

Every request is checked against the official machine-readable spec in
``tests/data/telegram-bot-api/api.json``: method exists, required fields present, no unknown
fields, every value parses as one of its listed types (objects recursively), plus the value rules
clients commonly break (text length, entity markup, callback_data size, inline buttons with exactly
one action, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.standins.telegram_entities import (
    _PARSERS,
    EntityParseError,
    JSONDict,
)

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "telegram-bot-api" / "api.json"

PRIMITIVES = frozenset({"Integer", "Float", "Boolean", "String"})

#: Parameters removed from the documented API that Telegram still accepts. They are recorded in
#: ``warnings`` (or ``violations`` with ``strict_legacy=True``) instead of being rejected.
LEGACY_PARAMETERS: dict[str, frozenset[str]] = {
    "reply_to_message_id": frozenset({"Integer"}),
    "allow_sending_without_reply": frozenset({"Boolean"}),
    "disable_web_page_preview": frozenset({"Boolean"}),
}

_INLINE_BUTTON_PASSIVE_FIELDS = frozenset({"text", "icon_custom_emoji_id", "style"})

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode(
        "utf-8"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Upload):
        return value.describe()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _jsonable(value: Any) -> Any:
    """A deep copy of ``value`` that is plain JSON (uploads become descriptors)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Upload):
        return value.describe()
    return value



@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def describe(self) -> JSONDict:
        return {"filename": self.filename, "content_type": self.content_type, "size": len(self.data)}

    def __repr__(self) -> str:
        return f"Upload(filename={self.filename!r}, content_type={self.content_type!r}, size={len(self.data)})"


class _ApiError(Exception):
    def __init__(self, code: int, description: str, *, retry_after: int | None = None,
                 delay: float = 0.0) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.delay = delay

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body



# --------------------------------------------------------------------------------------------
# the spec and request validation


_DISCRIMINATOR_RE = re.compile(r'(?:always|must be)\s+"?\*?([a-z_]+)')


class ApiSpec:
    """The Bot API reference (``api.json`` from PaulSonOfLars/telegram-bot-api-spec)."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or DEFAULT_SPEC_PATH
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        self.version: str = raw.get("version", "")
        self.methods: dict[str, JSONDict] = raw["methods"]
        self.types: dict[str, JSONDict] = raw["types"]
        self._by_lower = {name.lower(): name for name in self.methods}
        self.method_fields: dict[str, dict[str, JSONDict]] = {
            name: {f["name"]: f for f in m.get("fields", [])} for name, m in self.methods.items()
        }
        self.type_fields: dict[str, dict[str, JSONDict]] = {
            name: {f["name"]: f for f in t.get("fields", [])}
            for name, t in self.types.items()
            if "subtypes" not in t
        }
        self.required: dict[str, tuple[str, ...]] = {
            name: tuple(f["name"] for f in t.get("fields", []) if f["required"])
            for name, t in self.types.items()
        }
        # subtype name -> (field, value), e.g. BotCommandScopeChat -> ("type", "chat")
        self.discriminators: dict[str, tuple[str, str]] = {}
        for name, t in self.types.items():
            fields = t.get("fields", [])
            if fields and fields[0]["name"] in ("type", "status", "source") and "subtype_of" in t:
                description = fields[0]["description"]
                if isinstance(description, list):
                    description = " ".join(description)
                m = _DISCRIMINATOR_RE.search(description)
                if m:
                    self.discriminators[name] = (fields[0]["name"], m.group(1))
        self.update_types: tuple[str, ...] = tuple(
            f["name"] for f in self.types["Update"]["fields"] if f["name"] != "update_id"
        )

    def canonical_method(self, name: str) -> str | None:
        """Bot API method names are case-insensitive."""
        return self._by_lower.get(name.lower())

    def returns(self, method: str) -> list[str]:
        return list(self.methods[method].get("returns", []))

    def validate_object(self, value: Any, type_name: str) -> list[str]:
        """Check a decoded JSON value (e.g. an Update this server produces) against a type."""
        checker = _Checker(self, {})
        _, problem = checker.union(value, [type_name], type_name, top=False)
        return [] if problem is None else [f"{problem.path}: {problem.description}"]

    def fake(self, type_name: str, depth: int = 0) -> Any:
        """A minimal value of a type: required fields only, discriminators filled in."""
        if type_name.startswith("Array of "):
            return []
        if type_name == "Integer":
            return 0
        if type_name == "Float":
            return 0.0
        if type_name == "Boolean":
            return False
        if type_name in ("String", "InputFile"):
            return ""
        spec_type = self.types.get(type_name, {})
        if "subtypes" in spec_type:
            for sub in spec_type["subtypes"]:
                if sub in self.types:
                    return self.fake(sub, depth + 1)
            return self.fake(spec_type["subtypes"][0], depth + 1)
        obj: JSONDict = {}
        if depth > 8:
            return obj
        for f in spec_type.get("fields", []):
            if f["required"]:
                obj[f["name"]] = self.fake(f["types"][0], depth + 1)
        if type_name in self.discriminators:
            key, value = self.discriminators[type_name]
            obj[key] = value
        return obj


@dataclass
class Problem:
    description: str
    path: str


class _Checker:
    """Validates values against spec types; converts them to Python values on success."""

    def __init__(self, spec: ApiSpec, files: dict[str, Upload]) -> None:
        self.spec = spec
        self.files = files
        self.referenced: set[str] = set()

    # a field's value against its list of alternative types
    def union(self, value: Any, types: list[str], path: str, top: bool) -> tuple[Any, Problem | None]:
        if len(types) == 1:
            return self.one(value, types[0], path, top)
        if all(t.startswith("Array of ") for t in types):
            # sendMediaGroup's "Array of InputMediaAudio, InputMediaDocument, ... and InputMediaVideo":
            # one array whose items may be of any of the listed types
            return self.array(value, [t[len("Array of ") :] for t in types], path, top)
        decoded = value
        if top and isinstance(value, str) and value[:1] in ("{", "["):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
        if isinstance(decoded, dict):
            object_types = [t for t in types if t in self.spec.types]
            ordered = sorted(object_types, key=lambda t: self._fit(decoded, t)) + [
                t for t in types if t not in self.spec.types
            ]
        else:
            ordered = list(types)
        best: Problem | None = None
        for t in ordered:
            converted, problem = self.one(value, t, path, top)
            if problem is None:
                return converted, None
            if best is None:
                best = problem
        if best is not None and (
            isinstance(decoded, dict | list) or best.description.startswith("can't parse")
        ):
            return value, best
        return value, Problem(f'Field "{path}" must be of type {" or ".join(types)}', path)

    def array(self, value: Any, item_types: list[str], path: str, top: bool) -> tuple[Any, Problem | None]:
        if top and isinstance(value, str):
            value, problem = self._decode(value, path)
            if problem:
                return value, problem
        if not isinstance(value, list):
            return value, Problem(f'Field "{path}" must be of type Array of {" or ".join(item_types)}', path)
        out = []
        for index, item in enumerate(value):
            converted, problem = self.union(item, item_types, f"{path}[{index}]", False)
            if problem:
                return value, problem
            out.append(converted)
        return out, None

    def _fit(self, value: JSONDict, type_name: str) -> tuple[int, int]:
        spec_type = self.spec.types[type_name]
        if "subtypes" in spec_type:
            scores = [self._fit(value, s) for s in spec_type["subtypes"] if s in self.spec.types]
            return min(scores) if scores else (1, 0)
        discriminator = self.spec.discriminators.get(type_name)
        mismatch = 0
        if discriminator is not None and value.get(discriminator[0]) != discriminator[1]:
            mismatch = 1
        fields = self.spec.type_fields.get(type_name, {})
        unknown = sum(1 for k, v in value.items() if v is not None and k not in fields)
        missing = sum(1 for k in self.spec.required.get(type_name, ()) if value.get(k) is None)
        return mismatch, unknown + missing

    def _decode(self, value: str, path: str) -> tuple[Any, Problem | None]:
        try:
            return json.loads(value), None
        except ValueError:
            if path == "reply_markup":
                return value, Problem("can't parse reply keyboard markup JSON object", path)
            if path == "entities" or path.endswith("_entities"):
                return value, Problem("can't parse entities JSON object", path)
            return value, Problem(f"can't parse {path} JSON object", path)

    def _attach(self, value: str, path: str) -> tuple[Any, Problem | None]:
        name = value[len("attach://") :]
        upload = self.files.get(name)
        if upload is None:
            return value, Problem(f'Field "{path}": attached file "{name}" not found in the request', path)
        self.referenced.add(name)
        return upload, None

    def one(self, value: Any, t: str, path: str, top: bool) -> tuple[Any, Problem | None]:
        if t.startswith("Array of "):
            return self.array(value, [t[len("Array of ") :]], path, top)
        if t in PRIMITIVES:
            return self._primitive(value, t, path, top)
        if t == "InputFile":
            if isinstance(value, Upload):
                return value, None
            if isinstance(value, str) and value.startswith("attach://"):
                return self._attach(value, path)
            return value, Problem(f'Field "{path}" must be an uploaded file', path)
        spec_type = self.spec.types.get(t)
        if spec_type is None:
            return value, Problem(f'Field "{path}" has unknown type {t}', path)
        if top and isinstance(value, str):
            value, problem = self._decode(value, path)
            if problem:
                return value, problem
        if "subtypes" in spec_type:
            return self.union(value, list(spec_type["subtypes"]), path, False)
        if not isinstance(value, dict):
            return value, Problem(f'Field "{path}" must be of type {t}', path)
        fields = self.spec.type_fields.get(t, {})
        out: JSONDict = {}
        for key, item in value.items():
            if item is None:
                continue
            spec_field = fields.get(key)
            if spec_field is None:
                return value, Problem(f'unknown field "{key}" in {t} at {path}', f"{path}.{key}")
            converted, problem = self.union(item, spec_field["types"], f"{path}.{key}", False)
            if problem:
                return value, problem
            out[key] = converted
        for key in self.spec.required.get(t, ()):
            if key not in out:
                return value, Problem(f'field "{key}" of {t} is required at {path}', f"{path}.{key}")
        discriminator = self.spec.discriminators.get(t)
        if discriminator is not None and out.get(discriminator[0]) != discriminator[1]:
            return value, Problem(
                f'field "{discriminator[0]}" of {t} must be "{discriminator[1]}" at {path}', path
            )
        rule = _TYPE_RULES.get(t)
        if rule is not None:
            problem = rule(out, path)
            if problem:
                return value, problem
        return out, None

    def _primitive(self, value: Any, t: str, path: str, top: bool) -> tuple[Any, Problem | None]:
        bad = Problem(f'Field "{path}" must be of type {t}', path)
        if isinstance(value, Upload):
            return value, bad
        if t == "String":
            if isinstance(value, str):
                if value.startswith("attach://") and not top:
                    _, problem = self._attach(value, path)
                    return value, problem
                return value, None
            if not top and isinstance(value, int | float) and not isinstance(value, bool):
                return str(value), None
            return value, bad
        if t == "Integer":
            if isinstance(value, bool):
                return value, bad
            if isinstance(value, int):
                return value, None
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,20}", value.strip()):
                return int(value), None
            return value, bad
        if t == "Float":
            if isinstance(value, bool):
                return value, bad
            if isinstance(value, int | float):
                return float(value), None
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    return value, bad
                if number != number or number in (float("inf"), float("-inf")):
                    return value, bad
                return number, None
            return value, bad
        # Boolean
        if isinstance(value, bool):
            return value, None
        if top and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1"):
                return True, None
            if lowered in ("false", "0"):
                return False, None
        return value, bad


def _rule_inline_button(button: JSONDict, path: str) -> Problem | None:
    if not button.get("text"):
        return Problem("can't parse inline keyboard button: Text must be non-empty", path)
    actions = [k for k in button if k not in _INLINE_BUTTON_PASSIVE_FIELDS]
    if not actions:
        return Problem(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
            path,
        )
    if len(actions) > 1:
        return Problem(
            "can't parse inline keyboard button: exactly one of the optional fields must be used, "
            f"got {', '.join(actions)}",
            path,
        )
    if "callback_data" in button:
        size = len(str(button["callback_data"]).encode("utf-8"))
        if not 1 <= size <= 64:
            return Problem("BUTTON_DATA_INVALID", f"{path}.callback_data")
    if "url" in button and not button["url"]:
        return Problem("BUTTON_URL_INVALID", f"{path}.url")
    return None


def _rule_keyboard_button(button: JSONDict, path: str) -> Problem | None:
    if not button.get("text"):
        return Problem("can't parse keyboard button: Text must be non-empty", path)
    return None


def _rule_bot_command(command: JSONDict, path: str) -> Problem | None:
    if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
        return Problem("BOT_COMMAND_INVALID", f"{path}.command")
    if not 1 <= len(str(command.get("description", ""))) <= 256:
        return Problem("BOT_COMMAND_DESCRIPTION_INVALID", f"{path}.description")
    return None


_TYPE_RULES: dict[str, Callable[[JSONDict, str], Problem | None]] = {
    "InlineKeyboardButton": _rule_inline_button,
    "KeyboardButton": _rule_keyboard_button,
    "BotCommand": _rule_bot_command,
}


@dataclass
class Validated:
    """The outcome of checking one request."""

    method: str
    params: JSONDict
    files: dict[str, Upload] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    legacy: list[str] = field(default_factory=list)
    #: field name ("text" / "caption") -> (plain text after entity parsing, entities)
    formatted: dict[str, tuple[str, list[JSONDict]]] = field(default_factory=dict)


def _format(params: JSONDict, name: str, entities_name: str) -> tuple[str, list[JSONDict]]:
    text = params[name]
    if entities_name in params:
        return text, list(params[entities_name])
    mode = str(params.get("parse_mode") or "").lower()
    parser = _PARSERS.get(mode)
    if parser is None:
        return text, []
    try:
        return parser(text)
    except EntityParseError as exc:
        raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from exc


def validate_request(
    spec: ApiSpec, method: str, params: JSONDict, files: dict[str, Upload] | None = None
) -> Validated:
    """Check one call of ``method`` (canonical name) with raw ``params``.

    ``params`` values are strings as they arrive in a query string or form (JSON bodies are
    converted to that form first) or :class:`Upload` for file parts; ``files`` holds every file
    part by name, for ``attach://<name>`` references.
    """
    files = files or {}
    fields = spec.method_fields[method]
    checker = _Checker(spec, files)
    result = Validated(method=method, params={}, files=files)
    for name, spec_field in fields.items():
        if name not in params:
            if spec_field["required"]:
                if name == "chat_id":
                    result.problems.append(Problem("chat_id is empty", name))
                elif name == "text" and method == "sendMessage":
                    result.problems.append(Problem("message text is empty", name))
                else:
                    result.problems.append(Problem(f'parameter "{name}" is required', name))
            continue
        converted, problem = checker.union(params[name], spec_field["types"], name, top=True)
        if problem is not None:
            result.problems.append(_top_problem(name, problem))
            result.params[name] = params[name]
        else:
            result.params[name] = converted
    for name, value in params.items():
        if name in fields:
            continue
        if isinstance(value, Upload) and name in checker.referenced:
            continue
        if name in LEGACY_PARAMETERS:
            converted, problem = checker.union(value, sorted(LEGACY_PARAMETERS[name]), name, True)
            if problem is not None:
                result.problems.append(problem)
            result.params[name] = converted
            result.legacy.append(name)
            continue
        if isinstance(value, Upload):
            result.problems.append(Problem(f'unexpected file "{name}" in the request', name))
        else:
            result.problems.append(Problem(f'unknown parameter "{name}"', name))
    if not result.problems:
        try:
            problem = _method_rules(method, result)
        except _ApiError as exc:
            problem = Problem(exc.description.removeprefix("Bad Request: "), "text")
        if problem is not None:
            result.problems.append(problem)
    return result


def _top_problem(name: str, problem: Problem) -> Problem:
    if problem.path == name or problem.description.startswith("can't parse"):
        return problem
    # nested structural problems keep Telegram's "can't parse ..." framing
    if problem.description.isupper():  # e.g. BUTTON_DATA_INVALID
        return problem
    return Problem(f"can't parse {name}: {problem.description}", problem.path)


def _method_rules(method: str, v: Validated) -> Problem | None:
    p = v.params
    chat_id = p.get("chat_id")
    if isinstance(chat_id, str) and not chat_id.startswith("@"):
        return Problem("chat not found", "chat_id")
    parse_mode = p.get("parse_mode")
    if parse_mode and str(parse_mode).lower() not in _PARSERS:
        return Problem("unsupported parse_mode", "parse_mode")
    if "text" in p and method in ("sendMessage", "editMessageText"):
        plain, entities = _format(p, "text", "entities")
        if not plain.strip():
            return Problem("message text is empty", "text")
        if len(plain) > 4096:  # characters (code points) after entity parsing
            return Problem("message is too long", "text")
        v.formatted["text"] = (plain, entities)
    elif method == "editMessageText" and "rich_message" not in p:
        return Problem("message text is empty", "text")
    if "caption" in p and isinstance(p["caption"], str):
        plain, entities = _format(p, "caption", "caption_entities")
        if len(plain) > 1024:
            return Problem("message caption is too long", "caption")
        v.formatted["caption"] = (plain, entities)
    fields = v.params
    spec_has_inline = method.startswith("editMessage") or method in ("stopPoll", "stopMessageLiveLocation")
    if spec_has_inline and "inline_message_id" not in fields:
        if "chat_id" not in fields or "message_id" not in fields:
            return Problem("message identifier is not specified", "message_id")
    if method == "sendChatAction" and p.get("action") not in CHAT_ACTIONS:
        return Problem("wrong parameter action in request", "action")
    if method == "answerCallbackQuery" and len(str(p.get("text", ""))) > 200:
        return Problem("MESSAGE_TOO_LONG", "text")
    if method == "setWebhook":
        url = str(p.get("url", ""))
        if url and not re.match(r"https?://[^/\s]+", url):
            return Problem("bad webhook: An HTTPS URL must be provided for webhook", "url")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            return Problem("secret token contains unallowed characters", "secret_token")
        if "max_connections" in p and not 1 <= int(p["max_connections"]) <= 100:
            return Problem("bad webhook: max_connections must be between 1 and 100", "max_connections")
    if method == "sendMediaGroup":
        media = p.get("media", [])
        if not 2 <= len(media) <= 10:
            return Problem("media group must include 2-10 items", "media")
        kinds = {item.get("type") for item in media}
        for lonely in ("audio", "document"):
            if lonely in kinds and len(kinds) > 1:
                return Problem(f"{lonely} can't be mixed with other media types", "media")
    if method == "setMyCommands" and len(p.get("commands", [])) > 100:
        return Problem("too many commands", "commands")
    return None

