"""What every embedded service offers the stack manager."""

from __future__ import annotations

from typing import Protocol

from infra.probes import Health


class Service(Protocol):
    name: str

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def health(self) -> Health: ...

    def exited_early(self) -> str | None: ...

    def stop(self) -> bool: ...
