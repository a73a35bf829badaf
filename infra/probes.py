"""Is a service there? Probes that tell a slow service from a down one, for clients and the embedded stack alike."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import requests

from infra.exceptions import ServiceError

T = TypeVar("T")

# A probe asks with the first timeout, and once more with the second if the answer was late: on a
# busy machine (a Spark batch on both cores) a healthy service can take seconds to answer, and a
# service that is only slow must not be reported down.
PROBE_TIMEOUTS = (3.0, 10.0)


class State(StrEnum):
    UP = "up"
    SLOW = "slow"  # it took the connection (or its process lives) but answered neither probe in time
    DOWN = "down"


@dataclass(frozen=True)
class Health:
    state: State
    detail: str

    @property
    def ok(self) -> bool:
        return self.state is State.UP


def ask_patiently(ask: Callable[[float], T], late: Callable[[Exception], bool]) -> T | None:
    """`ask(timeout)` with each of PROBE_TIMEOUTS until it answers; None when it was late both times.

    An exception that `late` does not recognise as a late answer propagates at once.
    """
    for timeout in PROBE_TIMEOUTS:
        try:
            return ask(timeout)
        except Exception as exc:
            if not late(exc):
                raise
    return None


def slow(what: str) -> Health:
    return Health(State.SLOW, f"{what} took the connection but did not answer within {PROBE_TIMEOUTS[-1]:.0f} s")


def http_get(url: str) -> requests.Response | Health:
    """GET `url`, patiently: the response, whatever its status, or the Health that explains why there is none.

    A refused (or never accepted) connection is DOWN; an answer late twice is SLOW.
    """
    try:
        response = ask_patiently(
            lambda timeout: requests.get(url, timeout=timeout),
            lambda exc: isinstance(exc, requests.ReadTimeout),
        )
    except requests.RequestException as exc:
        return Health(State.DOWN, f"no answer from {url}: {type(exc).__name__}")
    return response if response is not None else slow(url)


def http_health(url: str) -> Health:
    """GET a health endpoint: healthy on HTTP 200."""
    response = http_get(url)
    if isinstance(response, Health):
        return response
    if response.status_code != 200:
        return Health(State.DOWN, f"{url} answered HTTP {response.status_code}")
    return Health(State.UP, "healthy")


def port_is_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def require(name: str, url: str, health: Health, fix: str) -> None:
    """Fail in one line, before a command's first real call, when a service is down; `fix` says what to do.

    A slow service is let through: the client's own timeouts and retries deal with it.
    """
    if health.state is State.DOWN:
        raise ServiceError(f"{name} at {url} does not answer ({health.detail}); {fix}")
