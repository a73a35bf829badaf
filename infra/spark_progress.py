"""How far a long Spark step is: its running stages' finished partitions and the time so far,
on a progress line, read from Spark's status tracker while the step runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from infra.progress import ProgressLine

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@contextmanager
def spark_progress(spark: SparkSession, progress: ProgressLine, doing: str, every: float = 2.0) -> Iterator[None]:
    """While the block runs, `progress` shows `doing` with the partitions its stages finished."""
    tracker = spark.sparkContext.statusTracker()
    started = time.monotonic()
    stop = threading.Event()

    def report() -> None:
        seen: set[int] = set()
        while not stop.wait(every):
            active = tracker.getActiveStageIds()
            running = []
            for stage_id in active:
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    running.append(f"{info.numCompletedTasks}/{info.numTasks}")
            seen.update(active)
            minutes, seconds = divmod(round(time.monotonic() - started), 60)
            done = len(seen - set(active))
            stages = f"{done} stages done, partitions done {', '.join(running)}" if running else f"{done} stages done"
            progress.update(f"{doing}: {stages}; {minutes}:{seconds:02d}")

    thread = threading.Thread(target=report, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
