"""What a step of long work cost: its time and the peak resident memory of this process and of
its children (Spark's driver JVM in local mode, and the Python workers it starts).

Sampled on a thread every fraction of a second: a peak shorter than that can be missed, which
the figures state by being "sampled".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

import psutil

_MB = 1024 * 1024


@dataclass(frozen=True)
class StepUsage:
    seconds: float
    python_mb: float  # this process
    child_mb: float  # its largest child process, the Spark driver's JVM in local mode
    child_name: str

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}seconds": round(self.seconds, 1),
            f"{prefix}peak_rss_mb_python": round(self.python_mb),
            f"{prefix}peak_rss_mb_child": round(self.child_mb),
        }

    def __str__(self) -> str:
        minutes, seconds = divmod(round(self.seconds), 60)
        child = f", {self.child_name} {self.child_mb / 1024:.1f} GB" if self.child_name else ""
        return f"{minutes}:{seconds:02d}, peak memory: python {self.python_mb / 1024:.1f} GB{child}"


class MeasuredStep:
    """`with MeasuredStep() as step: ...`, then `step.usage` once the block has ended."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._peaks: dict[int, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="peak-memory", daemon=True)
        self._started = 0.0
        self._usage: StepUsage | None = None

    @property
    def usage(self) -> StepUsage:
        if self._usage is None:
            raise RuntimeError("a step's usage is known once its block has ended")
        return self._usage

    def __enter__(self) -> MeasuredStep:
        self._started = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        own = self._peaks.pop(self._process.pid, (0.0, "python"))[0]
        child_mb, child_name = max(self._peaks.values(), default=(0.0, ""))
        self._usage = StepUsage(time.monotonic() - self._started, own, child_mb, child_name)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        try:
            processes = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                rss, name = process.memory_info().rss / _MB, process.name()
            except psutil.Error:  # it ended between the listing and the read
                continue
            if rss > self._peaks.get(process.pid, (0.0, ""))[0]:
                self._peaks[process.pid] = (rss, name)
