"""`warden simulate`: live telemetry into Kafka at a steady rate, ground truth into the lake."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from features.schema import ANOMALY_KINDS
from infra.context import Context
from infra.exceptions import ServiceError
from infra.lake import Lake
from infra.progress import ProgressLine
from simulator.generator import TelemetryGenerator, fleet_registry
from streaming.kafka_io import DeliveryCounter, produce_all, require_broker, telemetry_producer

# Each step produces about this much event time, so pacing stays smooth at any rate.
_STEP_SECONDS = 0.1
# Labels are buffered and written in files of about this many rows.
_LABEL_FLUSH_ROWS = 500_000


@dataclass(frozen=True)
class SimulationParams:
    devices: int = 100
    rate: float = 1000.0
    duration: float = 10.0
    events: int | None = None
    anomaly_rate: float = 0.02
    seed: int = 0
    start: datetime | None = None


@dataclass
class SimulationReport:
    topic: str
    events: int
    failed: int
    seconds: float
    seed: int
    anomalies: Counter[str] = field(default_factory=Counter)
    labels_written: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def simulate(
    ctx: Context,
    params: SimulationParams,
    progress: ProgressLine | None = None,
    stop: threading.Event | None = None,
) -> SimulationReport:
    """Produce telemetry for `duration` seconds (or `events` events) at `rate` events/s, or until
    `stop` is set.

    Event time advances with the schedule (devices / rate between a device's readings), so when
    the producer keeps up, `ts` follows the wall clock; when it cannot, the summary says so.
    """
    progress = progress or ProgressLine("simulate")
    settings = ctx.settings
    require_broker(settings)
    lake = ctx.lake
    lake.check_writable()
    total = params.events if params.events is not None else round(params.rate * params.duration)
    generator = TelemetryGenerator(
        params.devices,
        seed=params.seed,
        start=params.start or datetime.now(UTC),
        interval_s=params.devices / params.rate,
        anomaly_rate=params.anomaly_rate,
        id_prefix="s",
    )
    lake.write_file(fleet_registry(generator.fleet), "devices", f"fleet-{params.devices}.parquet")
    rounds_per_step = max(1, round(params.rate * _STEP_SECONDS / params.devices))
    step_seconds = rounds_per_step * params.devices / params.rate
    producer = telemetry_producer(settings)
    deliveries = DeliveryCounter()
    run_id = uuid.uuid4().hex[:8]
    report = SimulationReport(settings.topic.telemetry, 0, 0, 0.0, params.seed)
    labels: list[pa.Table] = []
    buffered = 0
    started = time.monotonic()
    step = 0
    while report.events < total and not (stop is not None and stop.is_set()):
        chunk = generator.next_chunk(rounds_per_step)
        chunk = chunk.head(min(len(chunk), total - report.events))
        keys, values = chunk.json_events(generator.fleet)
        # Pace on the schedule, not on the previous step, so short stalls are caught up. A step's
        # readings are sent at the end of their slot, as a device sends a reading after taking
        # it: no event is produced before its own `ts` (a latency measured from `ts` is never
        # negative, and at most one step long where the real one is zero).
        delay = started + (step + 1) * step_seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        produce_all(producer, settings.topic.telemetry, keys, values, deliveries)
        step += 1
        report.events += len(chunk)
        report.anomalies.update(ANOMALY_KINDS[k] for k in chunk.kind[chunk.kind >= 0])
        labels.append(chunk.label_table(generator.fleet))
        buffered += len(chunk)
        if buffered >= _LABEL_FLUSH_ROWS:
            report.labels_written += _flush_labels(lake, labels, run_id)
            buffered = 0
        elapsed = time.monotonic() - started
        progress.update(
            f"{report.events:,}/{total:,} events, {report.events / max(elapsed, 1e-9):,.0f}/s, "
            f"{deliveries.failed} errors"
        )
    remaining = producer.flush(60)
    report.seconds = time.monotonic() - started
    report.labels_written += _flush_labels(lake, labels, run_id)
    report.failed = deliveries.failed + remaining
    if report.failed:
        raise ServiceError(
            f"{report.failed} of {report.events} events were not acknowledged by Kafka: "
            f"{deliveries.first_error or 'delivery timed out'}"
        )
    progress.done(f"{report.events:,} events in {report.seconds:.1f} s ({report.rate:,.0f}/s), 0 errors")
    return report


def _flush_labels(lake: Lake, labels: list[pa.Table], run_id: str) -> int:
    if not labels:
        return 0
    table = pa.concat_tables(labels)
    labels.clear()
    return lake.write(table, "labels", basename=f"sim-{run_id}-{uuid.uuid4().hex[:6]}-{{i}}.parquet")
