"""Failed logins per client address: after too many in a sliding window, an address must wait.

The account lock (`staff_actions.record_login`) stops guessing one account's password; this stops one
address from trying many accounts. `mount_console` builds one throttle per app and keeps it in the app's
state; the counts live in this process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from fastapi import Request

IP_FAILURE_LIMIT = 20  # failed logins from one address within the lock window before it must wait
MAX_ADDRESSES = 10_000  # addresses remembered at most; the oldest is forgotten first
THROTTLE_STATE = "console_login_throttle"


class LoginThrottle:
    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str) -> deque[float]:
        stamps = self._failures.setdefault(ip, deque())
        cutoff = self._clock() - self.window_seconds
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
        return stamps

    def blocked(self, ip: str | None) -> bool:
        return ip is not None and len(self._recent(ip)) >= self.limit

    def fail(self, ip: str | None) -> None:
        if ip is None:
            return
        self._recent(ip).append(self._clock())
        while len(self._failures) > self._max_addresses:
            self._failures.pop(next(iter(self._failures)))


def login_throttle(request: Request) -> LoginThrottle:
    """The FastAPI dependency: the throttle `mount_console` put in the app's state."""
    throttle = getattr(request.app.state, THROTTLE_STATE)
    assert isinstance(throttle, LoginThrottle)
    return throttle
