"""The dashboard as a service of the stack: `warden up` starts `warden dashboard` in the background."""

from __future__ import annotations

import sys
from pathlib import Path

from infra.probes import Health, http_health
from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port


class DashboardServer:
    name = "dashboard"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.home)

    @property
    def url(self) -> str:
        return self.settings.dashboard_url

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        require_free_port("127.0.0.1", self.settings.dashboard_port, "the dashboard")
        warden = str(Path(sys.executable).with_name("warden"))
        self.process.start([warden, "dashboard"], env=self.settings.to_env())

    def health(self) -> Health:
        return http_health(f"{self.url}/healthz")

    def exited_early(self) -> str | None:
        return self.process.exited_early()

    def stop(self) -> bool:
        return self.process.stop()
