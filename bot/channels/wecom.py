"""WeCom (企业微信) group robots: staff notices for queues that configure a webhook.

The webhook URL carries the robot's key, so it is a secret: the queue names the environment
variable that holds it (`wecom_webhook_env`), and the outbox recipient is the queue code.
"""

from __future__ import annotations

import os

import httpx

from bot.outbox import PermanentFailure, TemporaryFailure
from handlers.city import CityConfig
from handlers.types import Outbound

CHANNEL = "wecom"
RATE_LIMITED = 45009


class WeComSender:
    def __init__(self, city: CityConfig, client: httpx.AsyncClient | None = None) -> None:
        self._city = city
        # made at the first send: a city without robots never builds one (a client's TLS context reads the whole CA
        # bundle, about 50 ms of CPU, at every start of every process)
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        return self._client

    def enabled(self) -> bool:
        return any(queue.wecom_webhook_env for queue in self._city.queues)

    async def send(self, recipient: str, message: Outbound) -> None:
        queue = self._city.queue(recipient)
        variable = queue.wecom_webhook_env if queue else None
        url = os.environ.get(variable or "")
        if not url:
            raise PermanentFailure(f"queue {recipient} has no WeCom webhook (set {variable or 'wecom_webhook_env'})")
        try:
            response = await self._http().post(url, json={"msgtype": "text", "text": {"content": message.text}})
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"network: {exc}") from exc
        if response.status_code >= 500:
            raise TemporaryFailure(f"WeCom answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise TemporaryFailure(f"WeCom answered {response.status_code} without JSON") from None
        code = body.get("errcode", -1)
        if code == RATE_LIMITED:
            raise TemporaryFailure("WeCom rate limit (45009)", retry_after=60)
        if code != 0:
            raise PermanentFailure(f"WeCom error {code}: {body.get('errmsg', '')}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
