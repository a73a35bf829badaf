"""Per-batch metrics of the stream: a JSON line per batch under WARDEN_HOME, and Prometheus.

The batch function records what only it knows (dead letters, feature misses, latency, model
version); a StreamingQueryListener adds what Spark knows (input rate, durations, consumer lag)
once the batch has committed, and writes the merged record.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client import values as prometheus_values
from prometheus_client.core import HistogramMetricFamily
from pydantic import BaseModel, ConfigDict, ValidationError
from pyspark.sql.streaming import StreamingQueryListener

from infra.settings import Settings
from streaming.drivers import Takeover


class BatchMetrics(BaseModel):
    """What the batch function records of a batch, as it goes."""

    batch_id: int
    input_rows: int = 0
    scored_rows: int = 0
    alerts: int = 0
    dead_letters: dict[str, int] = {}
    feature_status: dict[str, int] = {}
    model_name: str = ""
    model_version: str = ""
    latency_ms: dict[str, float] = {}  # event ts → sink, percentiles
    latency_bins_ms: list[tuple[float, float]] = []  # (latency, events) bins
    kafka_latency_ms: dict[str, float] = {}  # Kafka timestamp → sink
    skipped_as_written: bool = False  # a replay of a batch whose sinks were all written
    phases_ms: dict[str, float] = {}
    # When the batch function recorded it; None in a BatchRecord without the batch function's
    # part (a trigger whose batch function did not record: refused as the job stopped, or failed).
    finished_at: float | None = None


class BatchRecord(BatchMetrics):
    """A line of the stream's metrics file: a committed micro-batch, as the batch function and
    Spark's progress report saw it. `warden status`, the dashboard, the demo and the bench read
    the file through `parse_batch_record` only."""

    # NaN and infinity written as JSON's usual constants, as `json.dumps` did, so that they read back.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    timestamp: str | None = None
    num_input_rows: int = 0
    input_rows_per_second: float = 0.0
    processed_rows_per_second: float = 0.0
    batch_duration_ms: float = 0.0
    consumer_lag_records: float = 0.0
    max_partition_lag_records: float = 0.0
    lag_by_partition: dict[str, int] = {}
    driver: int = 0  # the pid of the driver that ran the batch


def parse_batch_record(line: str | bytes) -> BatchRecord | None:
    """A line of the metrics file as a record; None for a line being written (or torn)."""
    try:
        return BatchRecord.model_validate_json(line)
    except ValidationError:
        return None


# The `_created` series of every counter double the exposition and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
# Importing Feast switches the whole process to prometheus_client's multiprocess mode (values in
# files shared by every metric of the same name, no `clear()`). The stream is one process that
# imports Feast: its metrics keep their values in memory, whatever was imported first.
prometheus_values.ValueClass = prometheus_values.MutexValue

SWAP = "swap"
REFUSAL = "refusal"
TAKEOVER = "takeover"


def metrics_file(settings: Settings) -> Path:
    return settings.home / "stream" / "metrics.jsonl"


def model_events_file(settings: Settings) -> Path:
    """Swaps and refusals of the champion, a JSON line each."""
    return settings.home / "stream" / "model-events.jsonl"


def takeovers_file(settings: Settings) -> Path:
    """Takeovers of the query by a standby driver, a JSON line each."""
    return settings.home / "stream" / "takeovers.jsonl"


def read_takeovers(settings: Settings) -> list[dict[str, Any]]:
    """Every takeover recorded, oldest first."""
    path = takeovers_file(settings)
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            found.append(dict(json.loads(line)))
    return found


# Event time → sink, in seconds: micro-batches put the floor near a second, backlogs go far past it.
LATENCY_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


class LatencyHistogram:
    """A Prometheus histogram fed with weighted observations: each batch hands over the
    (latency, count) bins that Spark's `histogram_numeric` gathered while the batch was written,
    so the stream never brings per-event values to the driver."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*buckets, float("inf"))
        self.counts = [0] * len(self.bounds)  # not cumulative; summed up when collected
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, bins: list[tuple[float, float]]) -> None:
        with self._lock:
            for value, weight in bins:
                count = round(weight)
                slot = next(i for i, bound in enumerate(self.bounds) if value <= bound)
                self.counts[slot] += count
                self.total += value * count

    def collect(self) -> list[HistogramMetricFamily]:
        with self._lock:
            cumulative, running = [], 0
            for bound, count in zip(self.bounds, self.counts, strict=True):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
            total = self.total
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        return [family]


class StreamMetrics:
    """Collects batch records, exports them to Prometheus and appends them to the JSON-lines file.

    Names follow Prometheus' conventions: the unit in the name, `_total` on counters (added by
    the client), histograms for durations, an `_info` gauge for the model scoring.
    """

    def __init__(self, settings: Settings, serve: bool = True) -> None:
        self.path = metrics_file(settings)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.events_path = model_events_file(settings)
        self._pending: dict[int, BatchMetrics] = {}
        self.totals = {"batches": 0, "rows": 0, "alerts": 0, "dead_letters": 0}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        r = self.registry
        self.input_records = Counter("warden_stream_input_records", "Records read from Kafka.", registry=r)
        self.scored_records = Counter("warden_stream_scored_records", "Valid events scored.", registry=r)
        self.alerts = Counter("warden_stream_alerts", "Alerts published.", registry=r)
        self.dead_letters = Counter(
            "warden_stream_dead_letters", "Events sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.feature_status = Counter(
            "warden_stream_feature_records",
            "Scored events by state of their device statistics.",
            ["status"],
            registry=r,
        )
        self.swaps = Counter("warden_stream_model_swaps", "Champion models swapped in.", registry=r)
        self.refusals = Counter("warden_stream_model_refusals", "Model versions refused.", registry=r)
        self.batches = Counter("warden_stream_batches", "Micro-batches committed.", registry=r)
        self.batch_seconds = Histogram(
            "warden_stream_batch_duration_seconds",
            "Wall time of a micro-batch.",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.latency = LatencyHistogram(
            "warden_stream_event_latency_seconds",
            "Event time to the lake and alert sinks, per event.",
            LATENCY_BUCKETS_S,
        )
        r.register(self.latency)
        self.lag = Gauge(
            "warden_stream_consumer_lag_records",
            "Records behind the end of the topic after the last batch.",
            ["partition"],
            registry=r,
        )
        self.model_info = Gauge(
            "warden_stream_model_info",
            "The model version scoring (value 1).",
            ["model_name", "model_version"],
            registry=r,
        )
        self.takeovers_path = takeovers_file(settings)
        self.takeovers = Counter("warden_stream_takeovers", "Takeovers of the query by a standby driver.", registry=r)
        self.last_takeover = Gauge(
            "warden_stream_last_takeover_timestamp_seconds",
            "When a standby last took the query over (Unix time; 0: never).",
            registry=r,
        )
        self.last_takeover_seconds = Gauge(
            "warden_stream_last_takeover_duration_seconds",
            "From the previous driver's last heartbeat to the first batch with events its standby committed.",
            registry=r,
        )
        self._takeover: Takeover | None = None
        self._settings = settings
        if serve:
            self.serve()

    def serve(self) -> None:
        """Serve the metrics on 127.0.0.1: only the active driver does, on the one port.

        The stream's takeovers so far, whichever drivers made them, are counted from their file
        first: the counter goes on rising when the driver that serves it changes."""
        earlier = read_takeovers(self._settings)
        self.takeovers.inc(len(earlier))
        if earlier:
            self.last_takeover.set(earlier[-1]["at"])
            self.last_takeover_seconds.set(earlier[-1]["seconds"])
        start_http_server(self._settings.metrics_port, addr="127.0.0.1", registry=self.registry)

    def record_takeover(self, takeover: Takeover) -> None:
        """This driver took the query over: recorded once its first batch with events has committed."""
        self._takeover = takeover

    def record_model_event(self, kind: str, version: str, previous: str = "", reason: str = "") -> None:
        """A swap or a refusal, with its time: the markers of the dashboard's time axis."""
        (self.swaps if kind == SWAP else self.refusals).inc()
        event = {"at": time.time(), "kind": kind, "version": version, "previous": previous, "reason": reason}
        with self._lock, self.events_path.open("a") as out:
            out.write(json.dumps(event) + "\n")

    def record_batch(self, metrics: BatchMetrics) -> None:
        metrics.finished_at = time.time()
        with self._lock:
            self._pending[metrics.batch_id] = metrics
        self.totals["batches"] += 1
        self.totals["rows"] += metrics.input_rows
        self.totals["alerts"] += metrics.alerts
        self.totals["dead_letters"] += sum(metrics.dead_letters.values())
        self.batches.inc()
        self.input_records.inc(metrics.input_rows)
        self.scored_records.inc(metrics.scored_rows)
        self.alerts.inc(metrics.alerts)
        for reason, count in metrics.dead_letters.items():
            self.dead_letters.labels(reason).inc(count)
        for status, count in metrics.feature_status.items():
            self.feature_status.labels(status).inc(count)
        self.latency.observe([(ms / 1000, count) for ms, count in metrics.latency_bins_ms])
        if metrics.model_version:
            self.model_info.clear()
            self.model_info.labels(metrics.model_name, metrics.model_version).set(1)

    def record_progress(self, progress: dict[str, Any]) -> None:
        """Merge Spark's progress report for a batch with our record and write it out."""
        batch_id = int(progress["batchId"])
        with self._lock:
            ours = self._pending.pop(batch_id, None)
        source = (progress.get("sources") or [{}])[0]
        lag = float((source.get("metrics") or {}).get("maxOffsetsBehindLatest", 0) or 0)
        by_partition = _lag_by_partition(source)
        durations = progress.get("durationMs") or {}
        record = BatchRecord(
            timestamp=progress.get("timestamp"),
            num_input_rows=progress.get("numInputRows", 0),
            input_rows_per_second=progress.get("inputRowsPerSecond", 0.0),
            processed_rows_per_second=progress.get("processedRowsPerSecond", 0.0),
            batch_duration_ms=progress.get("batchDuration", durations.get("triggerExecution", 0)),
            consumer_lag_records=float(sum(by_partition.values())),
            max_partition_lag_records=lag,
            lag_by_partition=by_partition,
            driver=os.getpid(),
            **(ours.model_dump() if ours else {"batch_id": batch_id}),
        )
        for partition, behind in by_partition.items():
            self.lag.labels(partition).set(behind)
        self.batch_seconds.observe(record.batch_duration_ms / 1000)
        with self.path.open("a") as out:
            # Unset fields left out: a trigger the batch function did not record has no `finished_at`.
            out.write(record.model_dump_json(exclude_unset=True) + "\n")
        if self._takeover is not None and record.num_input_rows:  # scoring again, not an empty trigger
            self._finish_takeover(self._takeover, batch_id)

    def _finish_takeover(self, takeover: Takeover, batch_id: int) -> None:
        self._takeover = None
        committed = time.time()
        event = {
            "at": takeover.detected_at,
            "kind": TAKEOVER,
            "driver": os.getpid(),
            "previous": takeover.previous,
            "cause": takeover.cause,
            "fenced": takeover.fenced,
            "last_heartbeat": takeover.last_heartbeat,
            "first_batch": batch_id,
            "first_batch_at": committed,
            # From the previous driver's last sign of life: at most one heartbeat more than from its end.
            "seconds": round(committed - takeover.last_heartbeat, 3),
            "detection_seconds": round(takeover.detected_at - takeover.last_heartbeat, 3),
        }
        with self._lock, self.takeovers_path.open("a") as out:
            out.write(json.dumps(event) + "\n")
        self.takeovers.inc()
        self.last_takeover.set(takeover.detected_at)
        self.last_takeover_seconds.set(committed - takeover.last_heartbeat)


def _lag_by_partition(source: dict[str, Any]) -> dict[str, int]:
    """Per partition: latest offset − offset the batch ended at."""
    latest, end = source.get("latestOffset"), source.get("endOffset")
    if isinstance(latest, str):
        latest = json.loads(latest)
    if isinstance(end, str):
        end = json.loads(end)
    if not isinstance(latest, dict) or not isinstance(end, dict):
        return {}
    lag = {}
    for topic, partitions in latest.items():
        for partition, offset in partitions.items():
            lag[partition] = max(int(offset) - int(end.get(topic, {}).get(partition, offset)), 0)
    return dict(sorted(lag.items(), key=lambda item: int(item[0])))


class ProgressListener(StreamingQueryListener):
    """Hands every progress report of the query to StreamMetrics."""

    def __init__(self, metrics: StreamMetrics) -> None:
        self.metrics = metrics

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        self.metrics.record_progress(json.loads(event.progress.json))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


def batch_records(settings: Settings, after_batch: int = -1) -> list[BatchRecord]:
    """Every batch record after `after_batch`, oldest first (a batch retried after a restart
    keeps its newest record)."""
    path = metrics_file(settings)
    if not path.exists():
        return []
    records: dict[int, BatchRecord] = {}
    for line in path.read_text().splitlines():
        record = parse_batch_record(line)
        if record is not None and record.batch_id > after_batch:
            records[record.batch_id] = record
    return [records[batch] for batch in sorted(records)]


def pooled_latency(records: list[BatchRecord], quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[float, float]:
    """Event time → sink latency percentiles (ms) over all the events of `records`, from each
    batch's latency histogram; empty when they scored nothing."""
    bins = sorted((ms, count) for record in records for ms, count in record.latency_bins_ms)
    total = sum(count for _, count in bins)
    if not total:
        return {}
    found: dict[float, float] = {}
    seen = 0.0
    pending = list(quantiles)
    for ms, count in bins:
        seen += count
        while pending and seen >= pending[0] * total:
            found[pending.pop(0)] = ms
    return found


def last_batch(settings: Settings) -> BatchRecord | None:
    """The newest batch record, for `warden status`."""
    path = metrics_file(settings)
    try:
        with path.open("rb") as stream:
            stream.seek(0, 2)
            size = stream.tell()
            stream.seek(max(size - 65536, 0))
            lines = stream.read().decode(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        if (record := parse_batch_record(line)) is not None:
            return record
    return None
