"""`qinglian check`: is this configuration ready to go live? Each check says what it found."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.config import ConfigError, Settings, configuration_problems, writable_data_dir
from storage.crypto import KeyRing
from storage.db import create_engine, masked_url


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str


async def _database(settings: Settings) -> Finding:
    from storage.migrate import DatabaseUnreachable, schema_status

    try:
        newest, where = await schema_status(settings.resolved_database_url)
    except DatabaseUnreachable as exc:
        reason = (exc.reason.strip().splitlines() or [exc.__class__.__name__])[0]
        return Finding("database", False, f"cannot open the database at {masked_url(settings.resolved_database_url)}: "
                                          f"{reason} (check QINGLIAN_DATABASE_URL — host, port, user, password and "
                                          "database name — and that PostgreSQL runs and accepts this server)")
    return Finding("database", newest, where)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _file_key_ids(settings: Settings) -> dict[str, dict[str, int]]:
    """How many evidence files and classifier model files are under each key id (as `qinglian keys status`)."""
    from nlp.registry import ModelRegistry
    from storage.keys import evidence_status, file_status

    return {"evidence file": evidence_status(settings.evidence_dir),
            "model file": file_status(path for path, _ in ModelRegistry(settings.data_dir / "models").artifact_files())}


async def _stored_key_ids(settings: Settings, ring: KeyRing) -> dict[str, dict[str, int]] | None:
    """How many stored values are under each key id, per encrypted column; None when the database cannot be
    reached. A database that does not exist yet (SQLite) or has no schema holds none, and is not created."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from storage.keys import key_status

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not await asyncio.to_thread(Path(url.database).exists):
            return {}
    engine = create_engine(settings.resolved_database_url, ring)
    try:
        try:
            async with engine.connect() as connection:
                has_schema = await connection.run_sync(lambda sync: inspect(sync).has_table("cases"))
        except (SQLAlchemyError, OSError):
            return None
        return await key_status(engine) if has_schema else {}
    finally:
        await engine.dispose()


async def _encryption(settings: Settings) -> Finding:
    """Every encrypted value, evidence file and classifier model file readable with the configured key ring
    (`qinglian keys status` in one line)."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.keys import PLAINTEXT

    try:
        ring = settings.resolved_keyring()
    except ConfigError as exc:
        return Finding("encryption keys", False, str(exc))
    try:
        status = await _stored_key_ids(settings, ring)
    except SQLAlchemyError as exc:  # reachable, but the schema is not what this version reads
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Finding("encryption keys", False, f"could not count the stored values: {reason} "
                                                 "(`qinglian db upgrade` migrates the schema)")
    if status is None:
        return Finding("encryption keys", False, "not checked: the database is unreachable (see the database line)")
    counts: dict[str, dict[str, int]] = {"value": {}}  # kind -> key id -> how many
    for column_counts in status.values():
        for key_id, count in column_counts.items():
            counts["value"][key_id] = counts["value"].get(key_id, 0) + count
    counts.update(await asyncio.to_thread(_file_key_ids, settings))

    def described(key_ids: set[str]) -> str:
        return ", ".join(_plural(sum(by_key.get(key_id, 0) for key_id in key_ids), kind)
                         for kind, by_key in counts.items() if any(key_id in by_key for key_id in key_ids))

    stored = {key_id for by_key in counts.values() for key_id in by_key}
    unreadable = sorted(key_id for key_id in stored if key_id != PLAINTEXT and key_id not in ring.keys)
    if unreadable:
        listed = ", ".join(f"{key_id} ({described({key_id})})" for key_id in unreadable)
        return Finding("encryption keys", False, f"values under keys missing from the key ring: {listed}; "
                                                 "add the key to QINGLIAN_ENCRYPTION_OLD_KEYS")
    current = ring.current.key_id
    if not stored:
        return Finding("encryption keys", True, f"current key {current}; nothing stored yet")
    detail = f"current key {current}, {counts['value'].get(current, 0)} values under it"
    files = [_plural(by_key[current], kind) for kind, by_key in counts.items()
             if kind != "value" and by_key.get(current)]
    if files:
        detail += f", and {' and '.join(files)}"
    older = stored - {PLAINTEXT, current}
    if older:
        detail += f"; {described(older)} under older keys (`qinglian keys rotate` moves them)"
    if PLAINTEXT in stored:
        detail += f"; {described({PLAINTEXT})} not encrypted (`qinglian db upgrade` encrypts values, " \
                  "`qinglian keys rotate` files)"
    return Finding("encryption keys", True, detail)


async def _data_dir(settings: Settings) -> Finding:
    try:  # the probe `serve` and `worker` start with
        free_mb = await asyncio.to_thread(writable_data_dir, settings.data_dir, settings.min_free_disk_mb)
    except ConfigError as exc:
        return Finding("data directory", False, str(exc))
    return Finding("data directory", True, f"{settings.data_dir.resolve()} is writable, {free_mb} MB free")


async def _secret(settings: Settings) -> Finding:
    try:
        settings.resolved_secret_key()
    except ConfigError as exc:
        return Finding("secret key", False, str(exc))
    source = "QINGLIAN_SECRET_KEY" if settings.secret_key else "generated development key in the data directory"
    return Finding("secret key", True, source)


async def _telegram(settings: Settings) -> Finding:
    if not settings.telegram_token:
        return Finding("telegram", True, "off (no QINGLIAN_TELEGRAM_TOKEN)")
    url = f"{settings.telegram_api_url}/bot{settings.telegram_token}/getMe"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url)
    except httpx.HTTPError as exc:  # the message never holds the address: it has the token in it
        return Finding("telegram", False, f"Bot API at {settings.telegram_api_url} not reachable: {exc}")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # another server, or a proxy's error page
        return Finding("telegram", False, f"{settings.telegram_api_url} answered HTTP {answer.status_code} without the "
                                          "Bot API's JSON: is QINGLIAN_TELEGRAM_API_URL the root of a Bot API server "
                                          "(https://api.telegram.org)?")
    if not body.get("ok"):
        return Finding("telegram", False, f"Bot API refused the token: {body.get('description')}")
    mode = "webhook " + str(settings.telegram_webhook_url) if settings.telegram_webhook_url else "long polling"
    if settings.telegram_webhook_url and not str(settings.telegram_webhook_url).startswith("https://"):
        return Finding("telegram", False, "Telegram only delivers webhooks to https:// URLs")
    return Finding("telegram", True, f"@{body['result'].get('username')} via {mode}")


async def _wechat(settings: Settings) -> Finding:
    names = ("wechat_token", "wechat_app_id", "wechat_app_secret")
    given = [name for name in (*names, "wechat_aes_key") if getattr(settings, name)]
    if not given:
        return Finding("wechat", True, "off (no QINGLIAN_WECHAT_TOKEN)")
    missing = [name for name in names if not getattr(settings, name)]
    if missing:  # half set: the token alone turns WeChat on, so without it the credentials were silently unused
        return Finding("wechat", False, "missing " + ", ".join(f"QINGLIAN_{m.upper()}" for m in missing)
                       + " while " + ", ".join(f"QINGLIAN_{g.upper()}" for g in given) + " "
                       + ("is" if len(given) == 1 else "are") + " set: set all of them (docs/deploy.md, section 9), "
                       "or none to leave WeChat off")
    # Through the service's own token store: a token fetched here and not stored would retire the
    # one the running service uses.
    from bot.channels.wechat.api import WeChatApi
    from storage.db import create_sessionmaker

    engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await WeChatApi(settings, create_sessionmaker(engine), client).access_token()
    except httpx.TransportError as exc:  # DNS, connection, timeout: the network, not the account
        return Finding("wechat", False, f"{settings.wechat_api_url} cannot be reached from this server: {exc} "
                                        "(check its DNS, outbound network or proxy)")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        hint = " (is this server's IP on the account's allow-list?)" if "40164" in str(exc) else ""
        return Finding("wechat", False, f"no access token from {settings.wechat_api_url}: {exc}{hint}")
    finally:
        await engine.dispose()
    mode = "safe mode (AES)" if settings.wechat_aes_key else "plaintext mode"
    return Finding("wechat", True, f"app {settings.wechat_app_id}, access token available, {mode}")


async def _redis(settings: Settings) -> Finding:
    """Redis, when set, holds the limits every process shares (the console's login throttle, Telegram's send
    rate): a server that does not answer would refuse every console login."""
    if not settings.redis_url:
        return Finding("redis", True, "off (the shared limits live in the database)")
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Finding("redis", False, f"no answer from QINGLIAN_REDIS_URL: {exc} (start Redis, or unset the "
                                       "setting to keep the shared limits in the database)")
    finally:
        await client.aclose()
    return Finding("redis", True, "answers")


async def _public_url(settings: Settings) -> Finding:
    if settings.environment == "production" and not settings.public_url.startswith("https://"):
        return Finding("public URL", False, f"{settings.public_url} is not https: cookies would not be secure")
    return Finding("public URL", True, settings.public_url)


async def _wecom(settings: Settings) -> Finding:
    missing = [q.wecom_webhook_env for q in settings.city.queues
               if q.wecom_webhook_env and not os.environ.get(q.wecom_webhook_env)]
    if missing:
        return Finding("wecom robots", False, "unset: " + ", ".join(sorted(set(filter(None, missing)))))
    placeholders = sorted({q.wecom_webhook_env for q in settings.city.queues if q.wecom_webhook_env
                           and "change_me" in os.environ.get(q.wecom_webhook_env, "").lower()})
    if placeholders:  # the example file's line, uncommented as it is
        return Finding("wecom robots", False, "still the example's CHANGE_ME placeholder: " + ", ".join(placeholders)
                       + " (set the robot's webhook URL from the WeCom group)")
    return Finding("wecom robots", True, "every configured robot webhook is set")


CODE_CEILING_FACTOR = 10
"""How many residents' worth of wrong receipt codes an address's ceiling should be at least (docs/security.md)."""


async def _code_limits(settings: Settings) -> Finding:
    """Whether the per-address ceilings on wrong receipt codes stand well above one resident's limit: below
    that, a few residents mistyping behind one office or carrier NAT lock every code out of their address."""
    limits = settings.city.limits
    per_resident = limits.status_wrong_codes
    ceilings = {"status_wrong_codes_per_ip": limits.status_wrong_codes_per_ip,
                "status_wrong_codes_per_platform_address": limits.status_wrong_codes_per_platform_address}
    low = [f"{name} = {value}" for name, value in ceilings.items() if 0 < value < CODE_CEILING_FACTOR * per_resident]
    if low:
        return Finding("receipt-code limits", False,
                       f"{', '.join(low)} under {CODE_CEILING_FACTOR} × status_wrong_codes ({per_resident}): a few "
                       "residents mistyping behind one network would lock out every code from it")
    shown = [str(value) if value else "no limit" for value in ceilings.values()]
    return Finding("receipt-code limits", True,
                   f"wrong codes in {limits.status_window_minutes} minutes: {per_resident} per resident, "
                   f"{shown[0]} per address, {shown[1]} per platform address")


def read_configuration() -> tuple[Settings | None, list[Finding]]:
    """The settings, and every problem found reading them (each setting that cannot be read, each misspelt
    variable, the city configuration) as failed findings: all of them in one run, none repeating a value. The
    settings are None when a setting cannot be read. The secret key and the encryption keys are checks of their own
    (`_secret`, `_encryption`), run with the others."""
    settings, problems = configuration_problems()
    return settings, [Finding(name, False, reason) for name, reason in problems]


CHECKS: tuple[Callable[[Settings], Awaitable[Finding]], ...] = (
    _secret, _data_dir, _database, _encryption, _redis, _public_url, _telegram, _wechat, _wecom, _code_limits,
)


async def run_checks(settings: Settings) -> list[Finding]:
    city = settings.city
    findings = [Finding("configuration", True, f"{city.city_en}: {len(city.districts)} districts, "
                                               f"{len(city.queues)} queues, threshold "
                                               f"{city.routing.confidence_threshold}")]
    for check in CHECKS:
        try:
            findings.append(await check(settings))
        except ConfigError as exc:  # a key the check needs (the key ring of the database's connection)
            findings.append(Finding(check.__name__.strip("_").replace("_", " "), False, str(exc)))
    return findings
