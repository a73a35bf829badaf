"""The stream's drivers: one runs the query on its checkpoint, standbys wait to take it over.

Two queries on one checkpoint would both write its offset log and both publish their batches:
only one driver may run the query. That one holds an OS file lock beside the checkpoint. The
kernel releases it the moment its holder dies, so a standby polling for it (every 50 ms) learns
of a crash at once, and takes over with its Spark session built, its imports done and the
champion loaded.

A holder that hangs (SIGSTOP, a machine that swaps, a JVM stuck in a pause) keeps its lock. So
every driver also keeps a record under WARDEN_HOME/stream/drivers (its pid, its processes, its
role) and rewrites it every second: a lease. A standby that sees the active driver's record
untouched for `stream_lease_seconds` fences it before taking over: SIGKILL to each process the
record names (the Python driver and its JVM), matched by start time, so a reused pid is never
hit. A driver whose batch has run longer than `stream_batch_timeout_seconds` stops renewing its
lease: its process lives, but a batch stuck for good (a Kafka client waiting forever on a broker
that went away: confluentinc/librdkafka#5456) is as hung as a stopped process. Fencing by
killing the old holder is what makes the lease safe: a driver that was only paused never wakes
up to write a batch after the takeover (HDFS's NameNode failover fences the same way,
`sshfence`). The Kafka sink fences it a second time on its own: the new holder's
`init_transactions` aborts the old one's open transaction and refuses its commits.

The checkpoint lives under WARDEN_HOME on the drivers' machine (`Settings.checkpoint_dir`),
and so do all its drivers: the lock and the fence need one kernel. Drivers on several machines
would need a lease in a shared store and a fencing token that every sink checks (the lake's
commits too); streamwarden does not offer that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from infra.exceptions import BusyError
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.waiting import wait_until

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
LOCK_POLL_SECONDS = 0.05
FENCE_WAIT_SECONDS = 10.0


class Role(StrEnum):
    STARTING = "starting"  # building its session, loading the champion
    STANDBY = "standby"  # ready, waiting for the lock
    ACTIVE = "active"  # holds the lock, runs the query


class Cause(StrEnum):
    EXITED = "exited"  # the active driver died: its lock was free
    UNRESPONSIVE = "unresponsive"  # its lease ran out: fenced, then taken over


@dataclass(frozen=True)
class DriverRecord:
    """What a driver says of itself, rewritten every second."""

    pid: int
    created: float  # the process's start time: tells it from a later process with its pid
    role: str
    since: float  # when it took its role
    processes: list[tuple[int, float]]  # (pid, start time): itself and its children (the JVM)
    heartbeat: float = 0.0  # when the record was last written

    @property
    def alive(self) -> bool:
        return _matches(self.pid, self.created)

    def silent_for(self, now: float | None = None) -> float:
        return (now or time.time()) - self.heartbeat

    def describe(self) -> str:
        return f"pid {self.pid} ({self.role} since {_clock(self.since)})"


@dataclass(frozen=True)
class Takeover:
    """A standby that took the query over from another driver."""

    previous: int  # the pid of the driver it took over from
    cause: str
    last_heartbeat: float  # the previous driver's last sign of life
    detected_at: float  # when this driver held the lock
    fenced: int  # processes of the previous driver killed before the query started


def drivers_folder(settings: Settings) -> Path:
    return settings.home / "stream" / "drivers"


def lock_path(settings: Settings) -> Path:
    return settings.checkpoint_dir.with_name(f"{settings.checkpoint_dir.name}.lock")


def active_driver(settings: Settings) -> DriverRecord | None:
    """The driver running the query, if one is alive and has renewed its lease: the stream's
    liveness, from its heartbeat."""
    return next(
        (
            record
            for record in read_drivers(settings)
            if record.role == Role.ACTIVE and record.silent_for() <= settings.stream.lease_seconds
        ),
        None,
    )


def read_drivers(settings: Settings) -> list[DriverRecord]:
    """The records of the drivers alive now (running or hung), the active one first."""
    found = [record for record in _records(settings) if record.alive]
    return sorted(found, key=lambda record: (record.role != Role.ACTIVE, record.since))


class Driver:
    """This process as one of the stream's drivers: its record, its heartbeat, the lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._batch_running_for: Callable[[], float] = lambda: 0.0
        self._stalled = False
        folder = drivers_folder(settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}.json"
        self._process = psutil.Process()
        self._lock = FileLock(lock_path(settings), thread_local=False)
        self._role = Role.STARTING
        self._since = time.time()
        self._stop = threading.Event()
        self._writing = threading.Lock()  # the heartbeat and a change of role write the same file
        self._beat = threading.Thread(target=self._beating, name="driver-heartbeat", daemon=True)

    def __enter__(self) -> Driver:
        lock_path(self.settings).parent.mkdir(parents=True, exist_ok=True)
        self._write()
        self._beat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._beat.join(5)
        self.path.unlink(missing_ok=True)
        if self._lock.is_locked:
            self._lock.release(force=True)

    @property
    def active(self) -> bool:
        return self._role is Role.ACTIVE

    def take_now(self) -> None:
        """Take the lock, or fail in one line naming the driver that holds it."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self._holder()
            who = holder.describe() if holder else "another driver"
            raise BusyError(
                f"the stream's checkpoint {self.settings.checkpoint_dir} is held by {who}; two queries never "
                "run on one checkpoint: `warden stream --standby` waits to take over from it"
            ) from None
        previous = self._previous_active()
        if previous is not None:  # a crashed run: what survived it must not write any more
            _fence(previous)
        self._become(Role.ACTIVE)

    def wait_to_take_over(self, stop: threading.Event, progress: ProgressLine) -> Takeover | None:
        """As a standby, wait for the lock: until the active driver exits or its lease runs out
        (then fence it). None when `stop` was set first, or when no driver held the query while
        this one waited."""
        self._become(Role.STANDBY)
        announced: int | None = None
        cause, fenced = Cause.EXITED, 0
        while not stop.is_set():
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                holder = self._holder()
                if holder is None:
                    stop.wait(LOCK_POLL_SECONDS)
                    continue
                if holder.pid != announced:
                    announced = holder.pid
                    progress.update(f"standby: ready, waiting to take over from driver {holder.describe()}", force=True)
                lease = self.settings.stream.lease_seconds
                if holder.silent_for() > lease:
                    progress.update(
                        f"driver pid {holder.pid} silent for {holder.silent_for():.1f} s (lease {lease:g} s): "
                        "fencing it (SIGKILL) to take over",
                        force=True,
                    )
                    cause = Cause.UNRESPONSIVE
                    fenced += _fence(holder)
                stop.wait(LOCK_POLL_SECONDS)
                continue
            detected = time.time()
            previous = self._previous_active()
            fenced += _fence(previous) if previous is not None else 0
            self._become(Role.ACTIVE)
            if previous is None or announced is None:
                # Nobody ran the query while this driver waited: a start (after a crash, maybe), not a takeover.
                return None
            return Takeover(previous.pid, cause, previous.heartbeat, detected, fenced)
        return None

    def watch(self, batch_running_for: Callable[[], float]) -> None:
        """Renew the lease only while the batch in flight, if any, has run for at most
        `stream_batch_timeout_seconds` (`batch_running_for`: its seconds so far, 0 between batches)."""
        self._batch_running_for = batch_running_for

    def _become(self, role: Role) -> None:
        self._role, self._since = role, time.time()
        self._write()

    def _holder(self) -> DriverRecord | None:
        return next((r for r in read_drivers(self.settings) if r.role == Role.ACTIVE and r.pid != os.getpid()), None)

    def _previous_active(self) -> DriverRecord | None:
        """The record left by the driver that held the lock last, dead or fenced (removed once read)."""
        others = [r for r in _records(self.settings) if r.role == Role.ACTIVE and r.pid != os.getpid()]
        if not others:
            return None
        newest = max(others, key=lambda record: record.since)
        for record in others:
            (drivers_folder(self.settings) / f"{record.pid}.json").unlink(missing_ok=True)
        return newest

    def _beating(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if self._batch_stalled():
                continue
            try:
                self._write()
            except OSError as exc:  # a full disk must not end the driver; a standby may fence it
                log.warning("driver heartbeat not written: %s", exc)

    def _batch_stalled(self) -> bool:
        running_for, limit = self._batch_running_for(), self.settings.stream.batch_timeout_seconds
        stalled = running_for > limit
        if stalled and not self._stalled:
            log.error(
                "the batch in flight has run for %.0f s (WARDEN_STREAM_BATCH_TIMEOUT_SECONDS: %g): the lease is no "
                "longer renewed, a standby fences this driver and takes over",
                running_for,
                limit,
            )
        self._stalled = stalled
        return stalled

    def _write(self) -> None:
        processes = []
        for process in [self._process, *self._process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a Python worker that ended meanwhile
                processes.append((process.pid, process.create_time()))
        with self._writing:
            record = DriverRecord(
                pid=self._process.pid,
                created=self._process.create_time(),
                role=self._role.value,
                since=self._since,
                processes=processes,
                heartbeat=time.time(),
            )
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(asdict(record)))
            partial.replace(self.path)


def _records(settings: Settings) -> Iterator[DriverRecord]:
    folder = drivers_folder(settings)
    if not folder.exists():
        return
    for path in folder.glob("*.json"):
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            fields = json.loads(path.read_text())
            fields["processes"] = [tuple(p) for p in fields["processes"]]
            yield DriverRecord(**fields)


def _fence(record: DriverRecord) -> int:
    """SIGKILL every process of `record` still alive (a stopped one too), wait until they are
    gone; how many there were."""
    victims = [(pid, created) for pid, created in record.processes if pid != os.getpid() and _matches(pid, created)]
    for pid, _ in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Gone, or a zombie that its parent has not reaped yet: either way it runs no more code.
    alive = wait_until(
        lambda: [(pid, created) for pid, created in victims if _matches(pid, created)],
        done=lambda left: not left,
        timeout=FENCE_WAIT_SECONDS,
        interval=0.01,
    )
    if alive:
        raise BusyError(
            f"driver pid {record.pid} could not be fenced: {', '.join(str(pid) for pid, _ in alive)} still alive "
            f"{FENCE_WAIT_SECONDS:.0f} s after SIGKILL; the standby does not take over"
        )
    if victims:
        log.warning("fenced driver pid %d: killed %d processes", record.pid, len(victims))
    return len(victims)


def _matches(pid: int, created: float) -> bool:
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - created) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _clock(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%H:%M:%S} UTC"
