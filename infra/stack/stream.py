"""The streaming job as a service of the stack: `warden up --service stream` runs `warden stream`
in the background, and with WARDEN_STREAM_STANDBY=true a second driver beside it.

Both run `warden stream --standby`: the first one ready takes the query, the other waits to take
it over (`streaming.drivers`). Running `warden up --service stream` again after a crash starts
the driver that died, which becomes the standby of the one that took over: the slots are
processes, the roles are the lock's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.probes import Health, State
from infra.settings import Settings
from infra.stack.process import ManagedProcess
from streaming.drivers import Role, read_drivers


class StreamDrivers:
    name = "stream"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        slots = ["stream", "stream-standby"] if settings.stream.standby else ["stream"]
        self.processes = [ManagedProcess(slot, settings.home) for slot in slots]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    def is_running(self) -> bool:
        return any(process.pid() is not None for process in self.processes)

    def start(self) -> None:
        warden = str(Path(sys.executable).with_name("warden"))
        for process in self.processes:
            process.start([warden, "stream", "--standby"], env=self.settings.to_env())

    def health(self) -> Health:
        """Up when every driver runs and has said what it is doing (building its session, waiting for
        a champion or for the lock, running the query); which one holds the query, and since when."""
        pids = {process.name: process.pid() for process in self.processes}
        records = {record.pid: record for record in read_drivers(self.settings)}
        shown = "; ".join(records[pid].describe() for pid in pids.values() if pid in records)
        dead = [name for name, pid in pids.items() if pid is None]
        if dead:
            running = f" ({shown})" if shown else ""
            return Health(State.DOWN, f"{', '.join(dead)} not running{running}; `warden up --service stream` starts it")
        if not all(pid in records for pid in pids.values()):
            return Health(State.SLOW, "a driver is starting")
        return Health(State.UP, shown)

    def exited_early(self) -> str | None:
        return next((why for process in self.processes if (why := process.exited_early()) is not None), None)

    def stop(self) -> bool:
        # The standby first: stopping the active one first would hand it the query. Each driver's
        # main process only: it finishes the batch in flight, then stops its JVM.
        roles = {record.pid: record.role for record in read_drivers(self.settings)}
        ordered = sorted(self.processes, key=lambda process: roles.get(process.pid() or 0) == Role.ACTIVE)
        return any([process.stop(timeout=180, main_only=True) for process in ordered])
