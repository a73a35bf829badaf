"""The systems the benchmark runs, each as the process a user would start, on the same topic.

- `streamwarden`: the real `warden stream` (Spark Structured Streaming, exactly-once sinks).
- `handwritten`: a confluent-kafka consumer loop (bench/baselines/handwritten.py).
- `quix`: a Quix Streams application (bench/baselines/quix.py).

All read the scratch telemetry topic and score with the same champion and the same feature
definitions; each writes its alerts to a topic of its own, so that a consumer outside the
process can time them. Each reports its work as batches (rows, wall seconds, end time).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from infra.settings import PROJECT_ROOT, Settings
from infra.stack.kafka import KafkaBroker
from streaming.kafka_io import end_offsets
from streaming.metrics import metrics_file, parse_batch_record

BASELINE_WARMUP_SECONDS = 20.0


@dataclass(frozen=True)
class Batch:
    rows: int
    seconds: float
    end: float  # unix time the batch finished
    phases_ms: dict[str, float] = field(default_factory=dict)  # streamwarden's own phase clock


class Running:
    """A started system: its process, its log, and the batches it has reported so far."""

    def __init__(self, system: System, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.system = system
        self.proc = proc
        self.log = log

    def batches(self) -> list[Batch]:
        return self.system.batches()

    def rows(self) -> int:
        return sum(b.rows for b in self.batches())

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise SystemExit(f"error: {self.system.name} exited with code {self.proc.returncode}; {self.log}:\n{tail}")

    def stop(self) -> None:
        """As a user stops it: SIGTERM, and the process finishes its batch."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(180)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group (the driver and its JVM), as a crash would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)


class System:
    name: str

    def __init__(self, bench: Settings) -> None:
        self.bench = bench
        self.settings = bench.updated(
            **{"topic_alerts": f"{bench.topic.alerts}_{self.name}", "topic_dlq": f"{bench.topic.dlq}_{self.name}"}
        )
        KafkaBroker(self.settings).ensure_topics()

    @property
    def alerts_topic(self) -> str:
        return self.settings.topic.alerts

    def start(self, starting_offsets: str, *, fresh: bool = True, env: dict[str, str] | None = None) -> Running:
        """Start the process; `env` is added to its environment."""
        raise NotImplementedError

    def batches(self) -> list[Batch]:
        raise NotImplementedError

    def started(self) -> bool:
        raise NotImplementedError

    def _spawn(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603
            command,
            env={**os.environ, **self.settings.to_env(), **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a SIGKILL takes the JVM with it
        )


class Streamwarden(System):
    name = "streamwarden"

    def start(self, starting_offsets: str, *, fresh: bool = True, env: dict[str, str] | None = None) -> Running:
        if fresh:  # a new query: no checkpoint, no earlier batches
            shutil.rmtree(self.settings.checkpoint_dir, ignore_errors=True)
            metrics_file(self.settings).unlink(missing_ok=True)
        log = self.settings.home / f"{self.name}.log"
        warden = str(Path(sys.executable).with_name("warden"))
        proc = self._spawn([warden, "stream"], {"WARDEN_STREAM_STARTING_OFFSETS": starting_offsets, **(env or {})}, log)
        return Running(self, proc, log)

    def start_standby(self, number: int) -> Running:
        """`warden stream --standby` on the same checkpoint: ready, waiting to take the query over."""
        log = self.settings.home / f"{self.name}-standby-{number}.log"
        warden = str(Path(sys.executable).with_name("warden"))
        return Running(self, self._spawn([warden, "stream", "--standby"], {}, log), log)

    def batches(self) -> list[Batch]:
        path = metrics_file(self.settings)
        if not path.exists():
            return []
        records = [parse_batch_record(line) for line in path.read_text().splitlines()]
        return [
            Batch(r.input_rows, r.batch_duration_ms / 1000, r.finished_at or 0.0, r.phases_ms)
            for r in records
            if r is not None
        ]

    def started(self) -> bool:
        """The query has run its first trigger: offsets at "latest" are fixed from here on."""
        return metrics_file(self.settings).exists()


class Baseline(System):
    def __init__(self, bench: Settings, name: str) -> None:
        self.name = name
        super().__init__(bench)
        self.metrics = bench.home / f"{name}.jsonl"
        self.group = ""
        self._started = 0.0

    def start(self, starting_offsets: str, *, fresh: bool = True, env: dict[str, str] | None = None) -> Running:
        self.metrics.unlink(missing_ok=True)
        self.group = f"bench-{self.name}-{uuid.uuid4().hex[:8]}"
        self._started = time.monotonic()
        if starting_offsets == "latest":
            # Pin "latest" to the end as of now: a consumer that gets its partitions late (Quix
            # takes a while) must still read everything offered after this point.
            _commit_end_offsets(self.settings, self.group)
            starting_offsets = "earliest"
        log = self.settings.home / f"{self.name}.log"
        script = PROJECT_ROOT / "bench" / "baselines" / f"{self.name}.py"
        command = [
            sys.executable,
            str(script),
            "--from",
            starting_offsets,
            "--metrics-file",
            str(self.metrics),
            "--consumer-group",
            self.group,
        ]
        return Running(self, self._spawn(command, env or {}, log), log)

    def batches(self) -> list[Batch]:
        if not self.metrics.exists():
            return []
        records = [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]
        return [Batch(r["rows"], r["seconds"], r["end"]) for r in records]

    def started(self) -> bool:
        # Its offsets are pinned, so nothing is missed; the wait keeps its start-up (Feast, the
        # model, joining the group: 8-9 s measured) out of the latency figures.
        return time.monotonic() - self._started > BASELINE_WARMUP_SECONDS


def _commit_end_offsets(settings: Settings, group: str) -> None:
    ends = end_offsets(settings, settings.topic.telemetry).by_partition
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(
            offsets=[TopicPartition(settings.topic.telemetry, p, o) for p, o in ends.items()], asynchronous=False
        )
    finally:
        consumer.close()


def systems(bench: Settings, names: list[str]) -> list[System]:
    known = {
        "streamwarden": lambda: Streamwarden(bench),
        "handwritten": lambda: Baseline(bench, "handwritten"),
        "quix": lambda: Baseline(bench, "quix"),
    }
    unknown = set(names) - set(known)
    if unknown:
        raise SystemExit(f"error: unknown system(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return [known[name]() for name in names]
