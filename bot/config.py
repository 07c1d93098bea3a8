"""Settings (environment) and the city configuration (TOML).

Secrets and deployment facts come from `QINGLIAN_*` environment variables; what a city decides —
districts, queues, routing, deadlines, limits, texts — comes from a TOML file validated here, with
Changsha's configuration as the default.
"""

from __future__ import annotations

import secrets
import tomllib
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from storage.crypto import KeyRing

DEFAULT_CITY_CONFIG = Path(__file__).with_name("default_config.toml")
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "change_me", "changeme", "secret", "placeholder", "dev", "test",
                                 "replace-me", "replace_me", "xxx"})


class ConfigError(Exception):
    """A setting or the city configuration is invalid; the message is one line for the operator."""


class District(BaseModel):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    zh: str
    en: str


class Queue(BaseModel):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,59}$")]
    zh: str
    en: str
    accept_within_working_days: int = Field(default=15, ge=1)
    resolve_within_days: int = Field(default=60, ge=1)
    telegram_chat_id: int | None = None
    wecom_webhook_env: Annotated[str | None, Field(pattern=r"^QINGLIAN_[A-Z0-9_]+$")] = None


class Console(BaseModel):
    identity_roles: list[Literal["reviewer", "supervisor", "admin"]] = ["supervisor", "admin"]
    session_hours: float = Field(default=8, gt=0)
    login_attempts: int = Field(default=5, ge=1)
    login_lock_minutes: int = Field(default=15, ge=1)
    digest_hour: int = Field(default=8, ge=0, le=23)
    holidays: list[date] = Field(default_factory=list)
    workdays_override: list[date] = Field(default_factory=list)


class Routing(BaseModel):
    """`label → queue`; a label mapped to the district placeholder routes by the reporter's district."""

    labels: dict[str, str]
    district_queue_prefix: str = "district_"
    district_placeholder: str = "@district"
    triage_queue: str = "triage"
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class Limits(BaseModel):
    description_min_chars: int = Field(default=10, ge=1)
    description_max_chars: int = Field(default=3000, ge=10)
    place_max_chars: int = Field(default=200, ge=10)
    max_attachments: int = Field(default=5, ge=0, le=20)
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    draft_ttl_days: int = Field(default=7, ge=1)
    status_wrong_codes: int = Field(default=5, ge=1)
    status_window_minutes: int = Field(default=10, ge=1)
    case_session_minutes: int = Field(default=30, ge=1)
    reports_per_day: int = Field(default=10, ge=1)
    #: reports filed from one client address (IPv6: one /64) within 24 hours; 0: no limit. Only where the
    #: channel knows the address (the web chat); behind a proxy see FORWARDED_ALLOW_IPS in docs/deploy.md
    reports_per_ip_per_day: int = Field(default=30, ge=0)
    #: wrong receipt codes from one client address within `status_window_minutes`; 0: no limit
    status_wrong_codes_per_ip: int = Field(default=20, ge=0)
    contact_retention_days: int = Field(default=365, ge=1)


class CityConfig(BaseModel):
    city_zh: str
    city_en: str
    timezone: str = "Asia/Shanghai"
    case_number_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,8}$")] = "QL"
    default_locale: Literal["zh", "en"] = "zh"
    districts: list[District]
    queues: list[Queue]
    routing: Routing
    limits: Limits = Limits()
    console: Console = Console()
    texts: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("districts")
    @classmethod
    def _unique_districts(cls, districts: list[District]) -> list[District]:
        codes = [d.code for d in districts]
        if len(codes) != len(set(codes)):
            raise ValueError("district codes must be unique")
        if not districts:
            raise ValueError("at least one district is required")
        return districts

    @model_validator(mode="after")
    def _routing_targets_exist(self) -> CityConfig:
        queue_codes = {q.code for q in self.queues}
        if self.routing.triage_queue not in queue_codes:
            raise ValueError(f"routing.triage_queue {self.routing.triage_queue!r} is not a configured queue")
        for label, target in self.routing.labels.items():
            if target == self.routing.district_placeholder:
                missing = [
                    self.routing.district_queue_prefix + d.code
                    for d in self.districts
                    if self.routing.district_queue_prefix + d.code not in queue_codes
                ]
                if missing:
                    raise ValueError(f"label {label!r} routes by district but queues {missing} are missing")
            elif target not in queue_codes:
                raise ValueError(f"label {label!r} routes to unknown queue {target!r}")
        return self

    def district(self, code: str | None) -> District | None:
        return next((d for d in self.districts if d.code == code), None)

    def queue(self, code: str) -> Queue | None:
        return next((q for q in self.queues if q.code == code), None)


def load_city_config(path: Path | None) -> CityConfig:
    source = path or DEFAULT_CITY_CONFIG
    try:
        with source.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"city configuration file {source} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"city configuration {source} is not valid TOML: {exc}") from None
    try:
        return CityConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"city configuration {source}: {where}: {first['msg']}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QINGLIAN_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = None
    config_file: Path | None = None
    secret_key: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    telegram_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_max_rate: float = Field(default=30.0, gt=0, description="messages per second to Telegram")
    wechat_app_id: str | None = None
    wechat_app_secret: str | None = None
    wechat_token: str | None = None
    wechat_aes_key: str | None = None
    wechat_api_url: str = "https://api.weixin.qq.com"
    encryption_key: str | None = None
    encryption_old_keys: str | None = None
    pseudonym_key: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) != 43:
            raise ValueError("must be the 43-character EncodingAESKey from the Official Account settings")
        return value

    @field_validator("wechat_token")
    @classmethod
    def _wechat_token(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not (3 <= len(value) <= 32 and value.isascii() and value.isalnum()):
            raise ValueError("must be 3-32 letters or digits, as set in the Official Account's server settings")
        return value

    @field_validator("telegram_token")
    @classmethod
    def _token_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        bot_id, _, rest = value.partition(":")
        if not bot_id.isdigit() or not rest:
            raise ValueError("must look like 123456:ABC-DEF (the token BotFather gave you)")
        return value

    @field_validator("telegram_api_url", "public_url", "wechat_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        if value.startswith("sqlite"):
            from storage.db import sqlite_busy_timeout

            sqlite_busy_timeout(value)  # `?timeout=N`: seconds a write waits for the lock (default 30)
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'qinglian.db').resolve()}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"

    @cached_property
    def city(self) -> CityConfig:
        return load_city_config(self.config_file)

    def resolved_secret_key(self) -> bytes:
        """The key for receipt-code hashes and cookies.

        In development an unset key is generated once and kept in the data directory, so restarts
        keep every receipt code valid; production refuses to start without a real one.
        """
        if self.secret_key and self.secret_key.strip().lower() not in PLACEHOLDER_SECRETS:
            if self.environment == "production" and len(self.secret_key) < 32:
                raise ConfigError("QINGLIAN_SECRET_KEY must be at least 32 characters in production")
            return self.secret_key.encode()
        if self.environment == "production":
            raise ConfigError("QINGLIAN_SECRET_KEY is unset or a placeholder; production needs a real secret")
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()

    def resolved_keyring(self) -> KeyRing:
        """The keys of reporter data: `QINGLIAN_ENCRYPTION_KEY` encrypts, every key of
        `QINGLIAN_ENCRYPTION_OLD_KEYS` (comma-separated) still decrypts, and the key derived from the secret
        key with HKDF — the current key when no encryption key is set — always decrypts too, so a
        deployment that starts without an explicit key can adopt one later.

        Pseudonyms of user ids use `QINGLIAN_PSEUDONYM_KEY`, or a key derived from the secret key.
        """
        from storage.crypto import DataKey, KeyRing, derive

        secret = self.resolved_secret_key()
        derived = DataKey(derive(secret, "qinglian field encryption key v1"), "derived from QINGLIAN_SECRET_KEY")
        current = derived
        if self._real_key_setting("encryption_key"):
            current = DataKey(self._parse_key("encryption_key", self.encryption_key or ""), "QINGLIAN_ENCRYPTION_KEY")
        older = [DataKey(self._parse_key("encryption_old_keys", part), "QINGLIAN_ENCRYPTION_OLD_KEYS")
                 for part in (self.encryption_old_keys or "").replace("\n", ",").split(",") if part.strip()]
        pseudonym_key = derive(secret, "qinglian pseudonyms v1")
        if self._real_key_setting("pseudonym_key"):
            pseudonym_key = self._parse_key("pseudonym_key", self.pseudonym_key or "")
        return KeyRing(current, [*older, derived], pseudonym_key=pseudonym_key)

    def _real_key_setting(self, name: str) -> bool:
        value = getattr(self, name)
        if not value or not value.strip():
            return False
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            if self.environment == "production":
                raise ConfigError(f"QINGLIAN_{name.upper()} is a placeholder; set a real key "
                                  "(`qinglian keys generate` prints one) or leave it unset")
            return False
        return True

    @staticmethod
    def _parse_key(name: str, value: str) -> bytes:
        from storage.crypto import CryptoError, parse_key

        try:
            return parse_key(value)
        except CryptoError as problem:
            raise ConfigError(f"QINGLIAN_{name.upper()} {problem}") from None

    def webhook_secret(self) -> str:
        """Telegram's secret-token header value: configured, or derived from the secret key."""
        if self.telegram_webhook_secret:
            return self.telegram_webhook_secret
        import hashlib
        import hmac

        return hmac.new(self.resolved_secret_key(), b"telegram-webhook", hashlib.sha256).hexdigest()[:48]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with every problem turned into a one-line `ConfigError`."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting QINGLIAN_{field.upper()}: {message}") from None
    settings.city  # noqa: B018 - validate the city configuration now, not at first use
    return settings
