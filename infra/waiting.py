"""Waiting for something with a deadline: call a probe until its answer will do, or time runs out.

One mechanism for every poll-until-a-deadline in streamwarden, on tenacity. What to do when time
runs out (raise, go on without it) differs from one caller to the next, so `wait_until` returns
the probe's last answer and the caller decides. A call that fails for a while and is retried (an
exception, not an answer) uses tenacity directly: `streaming/sinks.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result, stop_before_delay, wait_fixed

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float, interval: float = 0.0, done: Callable[[T], object] = bool
) -> T:
    """Call `probe` every `interval` seconds until `done` holds for its answer (by default: until
    it is true), for at most `timeout` seconds: its last answer. The first call is made at once;
    no call starts after `timeout`. An exception from `probe` propagates at once, not retried."""
    return Retrying(
        stop=stop_before_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda answer: not done(answer)),
        retry_error_callback=_last_answer,
    )(probe)


def _last_answer(state: RetryCallState) -> object:
    """The answer of the last call, when time ran out."""
    return state.outcome.result() if state.outcome is not None else None
