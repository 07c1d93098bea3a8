"""`qinglian worker`: the background work without the HTTP app — outbox delivery to every channel,
housekeeping and digests — for deployments that run web workers and background workers apart."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.channels.wecom import CHANNEL as WECOM_CHANNEL
from bot.channels.wecom import WeComSender
from bot.config import Settings
from bot.jobs import background_jobs
from bot.outbox import plain
from bot.runtime import Runtime
from storage.migrate import upgrade

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await asyncio.to_thread(upgrade, settings.resolved_database_url, settings.resolved_keyring())
    runtime = Runtime.build(settings)
    channels: list[object] = []
    wecom = WeComSender(settings.city)
    if wecom.enabled():
        runtime.outbox.register(WECOM_CHANNEL, plain(wecom.send))
    if settings.telegram_token:
        from bot.channels.telegram import TelegramChannel

        telegram = TelegramChannel(settings, runtime, max_rate=settings.telegram_max_rate)
        await telegram.start(receive=False)
        channels.append(telegram)
    if settings.wechat_token:
        from bot.channels.wechat.channel import WeChatChannel

        wechat = WeChatChannel(settings, runtime)
        await wechat.start()
        channels.append(wechat)
    runtime.outbox.start()
    jobs = background_jobs(runtime.sessionmaker, settings.city, settings.evidence_dir, runtime.outbox.wake,
                           runtime.read_sessionmaker)
    log.info("worker running: outbox, housekeeping, digests, deadlines, hot issues")
    try:
        await stop.wait()
    finally:
        await jobs.stop()  # between rounds: nothing is cancelled in the middle of a transaction
        await runtime.outbox.stop()  # first: a round in progress still has its channels to finish with
        for channel in channels:
            await channel.stop()  # type: ignore[attr-defined]
        await wecom.close()
        await runtime.close()
        log.info("worker stopped")
