"""Per-batch metrics of the stream: a JSON line per batch under WARDEN_HOME, and Prometheus.

The batch function records what only it knows (dead letters, feature misses, latency, model
version); a StreamingQueryListener adds what Spark knows (input rate, durations, consumer lag)
once the batch has committed, and writes the merged record.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pyspark.sql.streaming import StreamingQueryListener

from infra.settings import Settings


@dataclass
class BatchMetrics:
    batch_id: int
    input_rows: int = 0
    scored_rows: int = 0
    alerts: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    feature_status: dict[str, int] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)  # event ts → sink, percentiles
    kafka_latency_ms: dict[str, float] = field(default_factory=dict)  # Kafka timestamp → sink
    alerts_skipped_as_written: bool = False
    phases_ms: dict[str, float] = field(default_factory=dict)
    finished_at: float = 0.0


def metrics_file(settings: Settings) -> Path:
    return settings.home / "stream" / "metrics.jsonl"


class StreamMetrics:
    """Collects batch records, exports them to Prometheus and appends them to the JSON-lines file."""

    def __init__(self, settings: Settings, serve: bool = True) -> None:
        self.path = metrics_file(settings)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: dict[int, BatchMetrics] = {}
        self.totals = {"batches": 0, "rows": 0, "alerts": 0, "dead_letters": 0}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        r = self.registry
        self.input_rows = Counter("warden_stream_input_rows", "Records read from Kafka.", registry=r)
        self.scored_rows = Counter("warden_stream_scored_rows", "Valid events scored.", registry=r)
        self.alerts = Counter("warden_stream_alerts", "Alerts published.", registry=r)
        self.dead_letters = Counter(
            "warden_stream_dead_letters", "Events sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.feature_status = Counter(
            "warden_stream_feature_rows", "Scored rows by state of their device statistics.", ["status"], registry=r
        )
        self.swaps = Counter("warden_stream_model_swaps", "Champion models swapped in.", registry=r)
        self.refusals = Counter("warden_stream_model_refusals", "Model versions refused.", registry=r)
        self.batch_seconds = Histogram(
            "warden_stream_batch_duration_seconds",
            "Wall time of a micro-batch.",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.latency = Gauge(
            "warden_stream_event_latency_seconds", "Event time to sink, last batch.", ["quantile"], registry=r
        )
        self.lag = Gauge("warden_stream_consumer_lag_records", "Records behind the end of the topic.", registry=r)
        self.rate = Gauge("warden_stream_processed_rows_per_second", "Rows per second, last batch.", registry=r)
        self.model_version = Gauge("warden_stream_model_version", "Version of the champion scoring.", registry=r)
        if serve:
            start_http_server(settings.metrics_port, addr="127.0.0.1", registry=r)

    def record_batch(self, metrics: BatchMetrics) -> None:
        metrics.finished_at = time.time()
        with self._lock:
            self._pending[metrics.batch_id] = metrics
        self.totals["batches"] += 1
        self.totals["rows"] += metrics.input_rows
        self.totals["alerts"] += metrics.alerts
        self.totals["dead_letters"] += sum(metrics.dead_letters.values())
        self.input_rows.inc(metrics.input_rows)
        self.scored_rows.inc(metrics.scored_rows)
        self.alerts.inc(metrics.alerts)
        for reason, count in metrics.dead_letters.items():
            self.dead_letters.labels(reason).inc(count)
        for status, count in metrics.feature_status.items():
            self.feature_status.labels(status).inc(count)
        for quantile, value in metrics.latency_ms.items():
            self.latency.labels(quantile).set(value / 1000)
        if metrics.model_version:
            self.model_version.set(float(metrics.model_version))

    def record_progress(self, progress: dict[str, Any]) -> None:
        """Merge Spark's progress report for a batch with our record and write it out."""
        batch_id = int(progress["batchId"])
        with self._lock:
            ours = self._pending.pop(batch_id, None)
        source = (progress.get("sources") or [{}])[0]
        lag = float((source.get("metrics") or {}).get("maxOffsetsBehindLatest", 0) or 0)
        durations = progress.get("durationMs") or {}
        record = {
            "batch_id": batch_id,
            "timestamp": progress.get("timestamp"),
            "num_input_rows": progress.get("numInputRows", 0),
            "input_rows_per_second": progress.get("inputRowsPerSecond", 0.0),
            "processed_rows_per_second": progress.get("processedRowsPerSecond", 0.0),
            "batch_duration_ms": progress.get("batchDuration", durations.get("triggerExecution", 0)),
            "consumer_lag_records": _total_lag(source),
            "max_partition_lag_records": lag,
            **(asdict(ours) if ours else {}),
        }
        self.lag.set(record["consumer_lag_records"])
        self.rate.set(float(record["processed_rows_per_second"] or 0.0))
        self.batch_seconds.observe(float(record["batch_duration_ms"] or 0) / 1000)
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")


def _total_lag(source: dict[str, Any]) -> float:
    """Sum over partitions of (latest offset − offset the batch ended at)."""
    latest, end = source.get("latestOffset"), source.get("endOffset")
    if isinstance(latest, str):
        latest = json.loads(latest)
    if isinstance(end, str):
        end = json.loads(end)
    if not isinstance(latest, dict) or not isinstance(end, dict):
        return 0.0
    total = 0
    for topic, partitions in latest.items():
        for partition, offset in partitions.items():
            total += max(int(offset) - int(end.get(topic, {}).get(partition, offset)), 0)
    return float(total)


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


def last_batch(settings: Settings) -> dict[str, Any] | None:
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
        try:
            return dict(json.loads(line))
        except ValueError:
            continue
    return None
