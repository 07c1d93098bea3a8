"""`qinglian check`: is this configuration ready to go live? Each check says what it found."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from bot.config import ConfigError, Settings
from storage.db import create_engine


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
        return Finding("database", False, str(exc).splitlines()[0])
    return Finding("database", newest, where)


async def _encryption(settings: Settings) -> Finding:
    """Every encrypted value readable with the configured key ring (`qinglian keys status` in one line)."""
    from storage.keys import PLAINTEXT, key_status

    try:
        ring = settings.resolved_keyring()
    except ConfigError as exc:
        return Finding("encryption keys", False, str(exc))
    engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
    try:
        status = await key_status(engine)
    except Exception:  # noqa: BLE001 - no schema yet: the database check says so
        return Finding("encryption keys", True, f"current key {ring.current.key_id}; nothing stored yet")
    finally:
        await engine.dispose()
    totals: dict[str, int] = {}
    for counts in status.values():
        for key_id, count in counts.items():
            totals[key_id] = totals.get(key_id, 0) + count
    unreadable = {key_id: n for key_id, n in totals.items() if key_id != PLAINTEXT and key_id not in ring.keys}
    if unreadable:
        listed = ", ".join(f"{key_id} ({n})" for key_id, n in sorted(unreadable.items()))
        return Finding("encryption keys", False, f"values under keys missing from the key ring: {listed}; "
                                                 "add the key to QINGLIAN_ENCRYPTION_OLD_KEYS")
    older = sum(n for key_id, n in totals.items() if key_id not in (PLAINTEXT, ring.current.key_id))
    detail = f"current key {ring.current.key_id}, {totals.get(ring.current.key_id, 0)} values under it"
    if older:
        detail += f"; {older} under older keys (`qinglian keys rotate` moves them)"
    if totals.get(PLAINTEXT):
        detail += f"; {totals[PLAINTEXT]} not encrypted (`qinglian db upgrade`)"
    return Finding("encryption keys", True, detail)


async def _data_dir(settings: Settings) -> Finding:
    def probe() -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.data_dir):
            pass

    try:
        await asyncio.to_thread(probe)
    except OSError as exc:
        return Finding("data directory", False, f"{settings.data_dir} is not writable: {exc.strerror}")
    return Finding("data directory", True, f"{settings.data_dir.resolve()} is writable")


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
            body = (await client.get(url)).json()
    except (httpx.HTTPError, ValueError) as exc:
        return Finding("telegram", False, f"Bot API at {settings.telegram_api_url} not reachable: {exc}")
    if not body.get("ok"):
        return Finding("telegram", False, f"Bot API refused the token: {body.get('description')}")
    mode = "webhook " + str(settings.telegram_webhook_url) if settings.telegram_webhook_url else "long polling"
    if settings.telegram_webhook_url and not str(settings.telegram_webhook_url).startswith("https://"):
        return Finding("telegram", False, "Telegram only delivers webhooks to https:// URLs")
    return Finding("telegram", True, f"@{body['result'].get('username')} via {mode}")


async def _wechat(settings: Settings) -> Finding:
    if not settings.wechat_token:
        return Finding("wechat", True, "off (no QINGLIAN_WECHAT_TOKEN)")
    missing = [name for name in ("wechat_app_id", "wechat_app_secret") if not getattr(settings, name)]
    if missing:
        return Finding("wechat", False, "missing " + ", ".join(f"QINGLIAN_{m.upper()}" for m in missing))
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
    return Finding("wecom robots", True, "every configured robot webhook is set")


CHECKS: tuple[Callable[[Settings], Awaitable[Finding]], ...] = (
    _secret, _data_dir, _database, _encryption, _redis, _public_url, _telegram, _wechat, _wecom,
)


async def run_checks(settings: Settings) -> list[Finding]:
    city = settings.city
    findings = [Finding("configuration", True, f"{city.city_en}: {len(city.districts)} districts, "
                                               f"{len(city.queues)} queues, threshold "
                                               f"{city.routing.confidence_threshold}")]
    for check in CHECKS:
        findings.append(await check(settings))
    return findings
