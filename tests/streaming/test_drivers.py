"""The drivers' lock, lease and fence with real processes: a driver in a child process holds the
query (with a child of its own standing in for its JVM); this process is the other driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.exceptions import BusyError
from infra.progress import ProgressLine
from infra.settings import Settings, load_settings
from streaming.drivers import Cause, Driver, read_drivers

LEASE_SECONDS = 2.0
# A driver holding the query; argv[2]: how long its batch in flight has run (0: none in flight).
ACTIVE = """
import subprocess, sys, time
from infra.settings import load_settings
from streaming.drivers import Driver
jvm = subprocess.Popen(["sleep", "300"])
settings = load_settings(home=sys.argv[1], stream_batch_timeout_seconds=60)
with Driver(settings) as driver:
    driver.take_now()
    driver.watch(lambda: float(sys.argv[2]))
    print(jvm.pid, flush=True)
    time.sleep(300)
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path, stream_lease_seconds=LEASE_SECONDS)


@pytest.fixture
def batch_running_for() -> float:
    return 0.0


@pytest.fixture
def active(settings: Settings, batch_running_for: float) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A driver holding the query in a child process, and the pid of its stand-in JVM."""
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", ACTIVE, str(settings.home), str(batch_running_for)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    jvm = int(proc.stdout.readline())
    yield proc, jvm
    for pid in (proc.pid, jvm):
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def _standby(settings: Settings, stop: threading.Event | None = None):  # noqa: ANN202 - a Takeover or None
    with Driver(settings) as driver:
        return driver.wait_to_take_over(stop or threading.Event(), ProgressLine("test")), driver.active


def test_a_second_driver_is_refused_while_one_holds_the_query(settings: Settings, active: tuple) -> None:
    proc, _ = active
    with Driver(settings) as driver, pytest.raises(BusyError, match=rf"held by pid {proc.pid} \(active since"):
        driver.take_now()
    [record] = read_drivers(settings)
    assert (record.pid, record.role) == (proc.pid, "active")


def test_a_standby_takes_over_when_the_active_driver_dies_and_kills_what_it_left(
    settings: Settings, active: tuple
) -> None:
    proc, jvm = active
    timer = threading.Timer(1.0, os.kill, (proc.pid, signal.SIGKILL))  # the Python driver only: its JVM lives on
    timer.start()
    started = time.monotonic()
    takeover, was_active = _standby(settings)
    assert was_active
    assert takeover is not None and takeover.previous == proc.pid and takeover.cause == Cause.EXITED
    assert takeover.fenced == 1  # the orphaned "JVM", which could still have been writing
    assert not psutil.pid_exists(jvm) or psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - started < LEASE_SECONDS + 1  # a death is seen at once, not after the lease


def test_a_hung_driver_is_fenced_once_its_lease_runs_out(settings: Settings, active: tuple) -> None:
    proc, jvm = active
    os.killpg(proc.pid, signal.SIGSTOP)  # alive, its lock held, its heartbeat stopped
    takeover, was_active = _standby(settings)
    assert was_active
    assert takeover is not None and takeover.cause == Cause.UNRESPONSIVE
    assert takeover.detected_at - takeover.last_heartbeat >= LEASE_SECONDS
    assert proc.wait(10) == -signal.SIGKILL
    assert takeover.fenced == 2  # the Python driver and its "JVM"
    assert not psutil.pid_exists(jvm) or psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("batch_running_for", [61.0])
def test_a_driver_whose_batch_is_stuck_is_fenced_once_its_lease_runs_out(settings: Settings, active: tuple) -> None:
    """Alive and heartbeating, but its batch has run past the timeout (60 s): it stops renewing
    its lease, and a standby fences it as it fences a stopped one."""
    proc, _jvm = active
    assert [d.role for d in read_drivers(settings)] == ["active"]
    gave_up = threading.Event()
    threading.Timer(30, gave_up.set).start()  # a driver that renewed its lease would be waited for forever
    takeover, was_active = _standby(settings, gave_up)
    gave_up.set()
    assert was_active
    assert takeover is not None and takeover.cause == Cause.UNRESPONSIVE
    assert proc.wait(10) == -signal.SIGKILL
    assert takeover.fenced == 2


def test_a_standby_with_nobody_before_it_starts_the_query_without_a_takeover(settings: Settings) -> None:
    takeover, was_active = _standby(settings)
    assert takeover is None and was_active


def test_a_standby_asked_to_stop_leaves_without_the_query(settings: Settings, active: tuple) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    takeover, was_active = _standby(settings, stop)
    assert takeover is None and not was_active
    assert active[0].poll() is None
