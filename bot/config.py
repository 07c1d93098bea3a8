"""Settings from the environment: secrets and deployment facts (`QINGLIAN_*` variables). What a city
decides is the city configuration (`handlers.city`)."""

from __future__ import annotations

import difflib
import errno
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from console.passwords import MIN_HASH_MEMORY_KIB, PasswordHashing
from handlers.city import CityConfig, ConfigError, load_city_config

if TYPE_CHECKING:
    from storage.crypto import KeyRing

__all__ = ["PLACEHOLDER_SECRETS", "ConfigError", "Settings", "configuration_problems", "load_settings"]

MIN_SECRET_GUESSES_LOG10 = 25.0
"""How hard QINGLIAN_SECRET_KEY must be to guess in production, as zxcvbn estimates it: 10^25 guesses (about 83
bits). A random key passes by far (`secrets.token_urlsafe(32)`: about 10^43); a repeated character, a
keyboard or counting pattern, or a short phrase of common words does not."""

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "change_me", "changeme", "secret", "placeholder", "dev", "test",
                                 "replace-me", "replace_me", "xxx"})

GENERATE_SECRET = "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
"""The command the secret key's refusals name: a random key that passes production's checks by far."""

DEFAULT_MIN_FREE_DISK_MB = 100
"""The free space (MB of 1024² bytes) the start requires on the data directory's disk by default: room for the
classifier models and jieba's cache the first start writes (a few MB), SQLite's database growing and its journal, and
a few reports' evidence (up to 5 files of 10 MB each) — so that a disk a few kilobytes short of full stops the start
with one line rather than the first resident's upload."""



def _require_http(value: str) -> str:
    """`value` if it is an http(s) URL with a host; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QINGLIAN_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = None
    #: Redis for the limits every process shares (the Telegram send rate, the console's login throttle);
    #: without it they live in the database
    redis_url: str | None = None
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
    #: With an AES key set, callbacks must come encrypted (`encrypt_type=aes`); this lets plaintext callbacks
    #: through too, only while an account is being switched from plaintext to safe mode.
    wechat_allow_plaintext: bool = False
    #: where WeChat's one-time subscription authorisation page lives (residents open it from the bot's link)
    wechat_mp_url: str = "https://mp.weixin.qq.com"
    encryption_key: str | None = None
    encryption_old_keys: str | None = None
    pseudonym_key: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: the bearer token a Prometheus scraper sends to /metrics; unset: /metrics answers only on loopback
    metrics_token: str | None = None
    #: the longest one statement of a staff page, an export, the statistics or /metrics may read for; past it
    #: the page answers that it asked for too much (residents' steps and every write are not bounded by it)
    read_timeout_seconds: float = Field(default=30.0, gt=0, le=3600,
                                        description="seconds one read statement of the console may run")
    #: how many reads over a period's cases (statistics, the loop's figures, exports) one process runs at once;
    #: the others wait their turn, leaving cores to the residents' steps
    heavy_reads: int = Field(default=1, ge=1, le=64,
                             description="statistics and exports one process computes at the same time")
    #: how often each serving process looks whether another model version was promoted (or rolled back to)
    model_check_seconds: float = Field(default=2.0, gt=0, le=3600,
                                       description="seconds between checks of the promoted classifier model")
    #: the free space `serve`, `worker` and `check` require on the data directory's disk before they start
    #: (evidence files, models, the jieba cache, SQLite's database and journal); 0 turns the check off
    min_free_disk_mb: int = Field(default=DEFAULT_MIN_FREE_DISK_MB, ge=0,
                                  description="MB (1024² bytes) free on the data directory's disk to start")
    #: Argon2id's cost for staff passwords (`console.passwords.PasswordHashing`): RFC 9106's second recommendation
    #: by default (64 MiB, 3 passes, 4 lanes, about 0.2 s of CPU a sign-in); OWASP's minimum (19,456 KiB and
    #: 2 passes, or as much work traded between them) is the lowest accepted. Hashes already stored keep their cost.
    password_hash_memory_kib: int = Field(default=65536, ge=MIN_HASH_MEMORY_KIB, le=4 * 1024 * 1024,
                                          description="KiB of memory one Argon2id password hash takes")
    password_hash_time_cost: int = Field(default=3, ge=1, le=64, description="passes of one Argon2id password hash")
    password_hash_parallelism: int = Field(default=4, ge=1, le=64, description="lanes of one Argon2id password hash")

    @field_validator("password_hash_time_cost")
    @classmethod
    def _password_hash_work(cls, value: int, info: ValidationInfo) -> int:
        memory = info.data.get("password_hash_memory_kib")
        if memory is not None:
            PasswordHashing(time_cost=value, memory_kib=memory)  # ValueError: below OWASP's minimum
        return value

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

    @field_validator("telegram_api_url", "public_url", "wechat_api_url", "wechat_mp_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return _require_http(value) if value else None

    @field_validator("public_url", "database_url", "telegram_webhook_url", "wechat_app_id", "wechat_app_secret",
                     "metrics_token", mode="before")
    @classmethod
    def _no_placeholder_in_production(cls, value: object, info: ValidationInfo) -> object:
        """The example environment file's CHANGE_ME, left in a setting production uses, stops the start."""
        if info.data.get("environment") == "production" and isinstance(value, str) and "change_me" in value.lower():
            raise ValueError("still holds the example's CHANGE_ME placeholder; set the real value")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        from storage.db import parsed_url

        try:  # the message never repeats the value: it holds the password
            parsed = parsed_url(value)
        except ValueError as problem:
            if "@" in str(problem):
                raise ValueError(f"{problem}, which must be written %40 (postgresql+asyncpg://user:p%40ss@host/db)"
                                 ) from None
            raise ValueError(f"{problem} (postgresql+asyncpg://user:password@host/db; write '@' in the password "
                             "as %40)") from None
        if value.startswith("postgresql") and not parsed.database:
            # asyncpg would connect to the database named like the user (`postgres`, often) and make the service's
            # tables there, beside whatever else it holds
            raise ValueError("names no database (postgresql+asyncpg://user:password@host/qinglian)")
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
    def password_hashing(self) -> PasswordHashing:
        return PasswordHashing(time_cost=self.password_hash_time_cost, memory_kib=self.password_hash_memory_kib,
                               parallelism=self.password_hash_parallelism)

    @cached_property
    def city(self) -> CityConfig:
        return load_city_config(self.config_file)

    def resolved_secret_key(self) -> bytes:
        """The key for receipt-code hashes and cookies.

        In development an unset key is generated once and kept in the data directory, so restarts
        keep every receipt code valid; production refuses to start without a real one.
        """
        if self.secret_key and self.secret_key.strip().lower() not in PLACEHOLDER_SECRETS:
            if self.environment == "production":
                if len(self.secret_key) < 32:
                    raise ConfigError("QINGLIAN_SECRET_KEY must be at least 32 characters in production; generate "
                                      f"one with {GENERATE_SECRET}")
                if secret_guesses_log10(self.secret_key) < MIN_SECRET_GUESSES_LOG10:
                    raise ConfigError("QINGLIAN_SECRET_KEY is too easy to guess (repeated characters, a pattern or "
                                      "common words); production needs a random one, e.g. the output of "
                                      f"{GENERATE_SECRET}")
            return self.secret_key.encode()
        if self.environment == "production":
            raise ConfigError("QINGLIAN_SECRET_KEY is unset or a placeholder; production needs a real secret: generate "
                              f"one with {GENERATE_SECRET}, set it once and keep it (docs/deploy.md, section 4)")
        key_file = self.data_dir / "secret.key"
        try:
            if not key_file.exists():
                key_file.parent.mkdir(parents=True, exist_ok=True)
                # written aside and renamed into place: a write a full disk cut short left an empty key file,
                # and the next start took it for the key
                temporary = key_file.with_name(f".secret.key.{secrets.token_hex(4)}.part")
                try:
                    temporary.write_text(secrets.token_urlsafe(48))
                    temporary.chmod(0o600)
                    temporary.replace(key_file)
                finally:
                    temporary.unlink(missing_ok=True)
            return key_file.read_text().strip().encode()
        except OSError as problem:
            raise ConfigError(f"{data_dir_problem(self.data_dir, problem)} (it keeps the development secret key "
                              "when QINGLIAN_SECRET_KEY is unset)") from None

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

    def metrics_authorised(self, authorization: str | None, client: str | None) -> bool:
        """Whether a request may read /metrics: with QINGLIAN_METRICS_TOKEN set, only with that bearer token;
        without it, only from this machine (a scraper beside the service, or none)."""
        if self.metrics_token:
            scheme, _, token = (authorization or "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                     self.metrics_token.encode())
        return client in ("127.0.0.1", "::1")

    def webhook_secret(self) -> str:
        """Telegram's secret-token header value: configured, or derived from the secret key."""
        if self.telegram_webhook_secret:
            return self.telegram_webhook_secret
        return hmac.new(self.resolved_secret_key(), b"telegram-webhook", hashlib.sha256).hexdigest()[:48]


def data_dir_problem(data_dir: Path, problem: OSError) -> str:
    """One line for a data directory the service cannot use: which one, the system's reason, and which setting."""
    line = (f"the data directory {data_dir.resolve()} (QINGLIAN_DATA_DIR) cannot be written: "
            f"{problem.strerror or problem}")
    if problem.errno in (errno.ENOSPC, errno.EDQUOT):
        line += " (its disk is full, or its user's quota used up: free space there or give the volume more)"
    return line


WRITE_PROBE_BYTES = 64 * 1024
"""What the start writes and syncs in the data directory: an empty file, which a full disk still takes (an inode,
no block), proved nothing; a block that must reach the disk (on NFS, the server) does."""


def writable_data_dir(data_dir: Path, min_free_mb: int = DEFAULT_MIN_FREE_DISK_MB) -> int:
    """Create the data directory if needed, write a block in it and sync it, and see that its disk has
    `min_free_mb` free, or raise ConfigError saying why not: a read-only mount, a directory owned by another user, a
    file in its place, a full disk or quota. Evidence files, models, the jieba cache and SQLite's database go there,
    and a service that found out only while starting ended in a traceback. Returns the MB free."""
    import tempfile

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-") as probe:
            probe.write(b"\0" * WRITE_PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
        disk = os.statvfs(data_dir)
    except OSError as problem:
        raise ConfigError(data_dir_problem(data_dir, problem)) from None
    free_mb = disk.f_bavail * disk.f_frsize // 2**20  # what a user other than root may still write
    if free_mb < min_free_mb:
        raise ConfigError(f"the data directory {data_dir.resolve()} (QINGLIAN_DATA_DIR) has {free_mb} MB free, less "
                          f"than the {min_free_mb} MB the service needs to start (QINGLIAN_MIN_FREE_DISK_MB): free "
                          "space on its disk or give the volume more")
    return free_mb


def secret_guesses_log10(secret: str) -> float:
    """zxcvbn's estimate of how many guesses find `secret` (log10), from its first 72 characters (zxcvbn's
    limit; a longer random key is only stronger)."""
    from zxcvbn import zxcvbn

    return float(zxcvbn(secret[:72], max_length=72)["guesses_log10"])


MISSPELT_SETTING_SIMILARITY = 0.8
"""How close (difflib's ratio of the names after `QINGLIAN_`) a variable that is no setting must be to a setting's
name to be taken for a misspelling of it: DATABSE_URL, ENVIROMENT, ENCRYPTION_KEYS, LOGLEVEL are (0.94 and more);
the test suite's, compose's and the city's own variables (TEST_POSTGRES, IMAGE, WECOM_…) are far from any (0.5 at
most)."""


def _misspelt_settings(names: Iterable[str], city: CityConfig | None) -> list[tuple[str, str]]:
    """(variable, the setting it was surely meant to be) for each QINGLIAN_ variable of `names` that is no setting
    and whose name is a near miss of one."""
    settings = {f"QINGLIAN_{name.upper()}" for name in Settings.model_fields}
    named_by_city = {queue.wecom_webhook_env for queue in city.queues if queue.wecom_webhook_env} if city else set()
    misspelt = []
    for name in sorted(set(names)):
        if not name.startswith("QINGLIAN_") or name in settings or name in named_by_city:
            continue
        close = difflib.get_close_matches(name.removeprefix("QINGLIAN_"),
                                          [setting.removeprefix("QINGLIAN_") for setting in settings],
                                          n=1, cutoff=MISSPELT_SETTING_SIMILARITY)
        if close:
            misspelt.append((name, f"QINGLIAN_{close[0]}"))
    return misspelt


def _variable_names() -> list[str]:
    """The names of the environment's variables and of the `.env` file's (read as the settings read it)."""
    names = [name.upper() for name in os.environ]
    env_file = Settings.model_config.get("env_file")
    if isinstance(env_file, str) and Path(env_file).is_file():
        from dotenv import dotenv_values

        names += [name.upper() for name in dotenv_values(env_file)]
    return names


def configuration_problems(**overrides: object) -> tuple[Settings | None, list[tuple[str, str]]]:
    """The settings, and every problem that reading them finds, as (what, why and what to do): each setting that
    cannot be read (the reason never repeats its value: it may be a password or token), each misspelt variable, the
    city configuration. The settings are None when a setting cannot be read."""
    problems: list[tuple[str, str]] = []
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            name = f"QINGLIAN_{str(error['loc'][0]).upper()}" if error["loc"] else "a setting"
            if name not in (named for named, _ in problems):  # one reason per setting is enough to fix it
                problems.append((name, error["msg"].removeprefix("Value error, ")))
    city = None
    if settings is not None:
        try:
            city = settings.city
        except ConfigError as problem:
            problems.append(("city configuration", str(problem)))
    for name, meant in _misspelt_settings(_variable_names(), city):
        problems.append((name, f"is not a setting: did you mean {meant}? Correct its name (it is not read as it is, "
                               "and the service would run without it)"))
    return settings, problems


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with the first problem turned into a one-line `ConfigError`
    (`configuration_problems` lists them all). A variable whose name is a misspelling of a setting's stops the start
    too: it would not be read, and the service would run without it (QINGLIAN_ENVIROMENT=production runs in
    development, QINGLIAN_DATABSE_URL on SQLite in the data directory)."""
    settings, problems = configuration_problems(**overrides)
    if problems:
        name, reason = problems[0]
        if name == "city configuration":
            raise ConfigError(reason)
        if reason.startswith("is not a setting"):
            raise ConfigError(f"{name} {reason}")
        raise ConfigError(f"invalid setting {name}: {reason}")
    assert settings is not None
    return settings
