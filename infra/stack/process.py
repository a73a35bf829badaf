"""Start, find and stop the embedded services' processes.

Each process runs in its own session (process group), so `stop` takes its children with it;
its pid lives in `$WARDEN_HOME/run/<name>.pid` and its output in `$WARDEN_HOME/logs/<name>.log`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.exceptions import PortInUseError, ServiceError
from infra.probes import port_is_open


def require_free_port(host: str, port: int, service: str) -> None:
    if port_is_open(host, port):
        raise PortInUseError(
            f"port {port} on {host} is already in use by another process; "
            f"{service} needs it (stop that process or change the {service} port setting)"
        )


def run_java(command: Sequence[str], what: str) -> str:
    """Run a one-off JVM tool (a storage format, an id generator) to its end; its stdout.

    A failure is a ServiceError naming `what` and the tool's last line of output.
    """
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"{what} failed: {last[0]}")
    return result.stdout


@dataclass(frozen=True)
class ManagedProcess:
    """One long-running process of the embedded stack."""

    name: str
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the process is alive, else None (and a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {self.name}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(  # noqa: S603 - commands are built from settings, not input
                    list(command),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ServiceError(f"{self.name}: cannot run {command[0]!r}: {exc.strerror}") from None
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def exited_early(self) -> str | None:
        """If the process died, the last lines of its log, to explain why."""
        if self.pid() is not None:
            return None
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        return " | ".join(lines[-3:]) if lines else "no output"

    def stop(self, timeout: float = 20.0, *, main_only: bool = False) -> bool:
        """SIGTERM the process group (or only its main process, which then stops its children
        in order), SIGKILL the group after `timeout`; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        if main_only:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        else:
            _signal_group(pid, signal.SIGTERM)
        # The group is listed again each round: a member may start late, and a zombie (which
        # `wait_procs` would wait for until its parent reaps it) counts as gone.
        deadline = time.monotonic() + timeout
        while (members := _group(pid)) and time.monotonic() < deadline:
            psutil.wait_procs(members, timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
        if _group(pid):
            _signal_group(pid, signal.SIGKILL)
            while members := _group(pid):
                psutil.wait_procs(members, timeout=0.5)
        self.pid_file.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(pgid: int) -> list[psutil.Process]:
    """The living (not zombie) processes of process group `pgid`."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
