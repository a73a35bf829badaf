"""The training lock between a person's command and a scheduled run: real processes, real flock."""

from __future__ import annotations

import io
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infra.exceptions import BusyError
from infra.locks import current_holder, holding
from infra.progress import ProgressLine
from infra.settings import Settings, load_settings

HOLD = """
import sys, time
from infra.locks import current_holder, holding
from infra.settings import load_settings
with holding(load_settings(home=sys.argv[1]), "the feature_refresh DAG"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print("releasing", flush=True)
"""


def _holder(home: Path, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", HOLD, str(home), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _settings(home: Path, wait: float) -> Settings:
    return load_settings(home=home, lock_wait_seconds=wait)


def test_a_second_run_waits_for_the_first_and_says_for_whom(tmp_path: Path) -> None:
    first = _holder(tmp_path, 2)
    said = io.StringIO()
    with holding(_settings(tmp_path, 60), "a training run", ProgressLine("train", stream=said)):
        # The first run said it was releasing before this one got the lock.
        assert select.select([first.stdout], [], [], 0)[0], "the lock was taken while the first run held it"
        assert first.stdout is not None and first.stdout.readline().strip() == "releasing"
    assert "waiting for the feature_refresh DAG (pid" in said.getvalue()
    first.wait(10)


def test_a_run_that_waited_too_long_fails_in_one_line(tmp_path: Path) -> None:
    first = _holder(tmp_path, 30)
    try:
        assert (current_holder(_settings(tmp_path, 1)) or "").startswith("the feature_refresh DAG (pid")
        with pytest.raises(BusyError, match=r"the feature_refresh DAG \(pid \d+.*still holds the training lock"):
            with holding(_settings(tmp_path, 0.5), "a training run", ProgressLine("train", stream=io.StringIO())):
                pytest.fail("the lock was taken while another process held it")
    finally:
        first.kill()
        first.wait(10)


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    first = _holder(tmp_path, 30)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    with holding(_settings(tmp_path, 0.5), "a training run", ProgressLine("train", stream=io.StringIO())):
        pass
    assert current_holder(_settings(tmp_path, 1)) is None
    # Taken at once (a wait would have ended in BusyError after 0.5 s); the dead holder's note is replaced.
    assert not (tmp_path / "run" / "training.holder").exists()
