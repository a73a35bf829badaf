"""What every embedded service offers the stack manager."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import requests


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class Service(Protocol):
    name: str

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def health(self) -> Health: ...

    def exited_early(self) -> str | None: ...

    def stop(self) -> bool: ...


def http_health(url: str, timeout: float = 3.0) -> Health:
    """GET a health endpoint: healthy on HTTP 200."""
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return Health(False, f"no answer from {url}: {type(exc).__name__}")
    if response.status_code != 200:
        return Health(False, f"{url} answered HTTP {response.status_code}")
    return Health(True, "healthy")
