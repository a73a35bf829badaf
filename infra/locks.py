"""The training lock: one holder at a time for the work that rewrites shared state.

Feature refreshes and training runs rewrite the same files: the Feast registry and online store,
the statistics in the lake and the window's training set, and they need the two cores to
themselves. `warden train`, `warden demo` and the scheduled DAGs' tasks all take this lock, so
a person's command and a scheduled run never overlap: the second waits, saying for whom.

An OS file lock under WARDEN_HOME: it dies with its holder, so a killed run never leaves it
taken. It spans one machine, which is where the embedded stack runs every one of these paths.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from infra.exceptions import BusyError
from infra.progress import ProgressLine
from infra.settings import Settings

TRAINING = "training"


@contextmanager
def holding(
    settings: Settings, what: str, progress: ProgressLine | None = None, name: str = TRAINING
) -> Iterator[None]:
    """Run the block holding the lock `name`; wait up to `settings.lock_wait_seconds` for it."""
    path = settings.home / "run" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_suffix(".holder")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        other = _read(holder)
        (progress or ProgressLine(what)).update(f"waiting for {other} to finish (the {name} lock)", force=True)
        try:
            lock.acquire(timeout=settings.lock_wait_seconds)
        except Timeout:
            raise BusyError(
                f"{what}: {_read(holder)} still holds the {name} lock ({path}) after "
                f"{settings.lock_wait_seconds:.0f} s; run it again when that has finished"
            ) from None
    try:
        command = " ".join(Path(arg).name for arg in sys.argv[:2])
        holder.write_text(f"{what} (pid {os.getpid()}, `{command}`, since {datetime.now(UTC):%H:%M:%S} UTC)")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def current_holder(settings: Settings, name: str = TRAINING) -> str | None:
    """Who holds the lock `name` now, or None when it is free."""
    path = settings.home / "run" / f"{name}.lock"
    if not path.exists():
        return None
    try:
        FileLock(path).acquire(timeout=0)
    except Timeout:
        return _read(path.with_suffix(".holder"))
    FileLock(path).release()
    return None


def _read(holder: Path) -> str:
    try:
        return holder.read_text().strip() or "another run"
    except FileNotFoundError:
        return "another run"
