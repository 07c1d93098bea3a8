"""The login throttle: failed logins per address in a sliding window, on a clock the test moves."""

from __future__ import annotations

from console.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_after_too_many_failures_until_the_window_passes() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 60.0, clock=clock)
    for _ in range(2):
        throttle.fail("203.0.113.7")
    assert not throttle.blocked("203.0.113.7")
    clock.now += 30
    throttle.fail("203.0.113.7")
    assert throttle.blocked("203.0.113.7")
    assert not throttle.blocked("198.51.100.1")  # other addresses are not affected
    clock.now += 31  # the first two failures have left the window; the third has not
    assert not throttle.blocked("203.0.113.7")
    throttle.fail("203.0.113.7")
    throttle.fail("203.0.113.7")
    assert throttle.blocked("203.0.113.7")


def test_an_unknown_address_is_never_blocked_and_memory_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(1, 60.0, clock=clock, max_addresses=2)
    throttle.fail(None)
    assert not throttle.blocked(None)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        throttle.fail(address)
    # the oldest address was forgotten to keep two
    assert [throttle.blocked(a) for a in ("192.0.2.2", "192.0.2.3", "192.0.2.1")] == [True, True, False]
