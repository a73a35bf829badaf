"""The body of each micro-batch: validate, enrich, score, and write every sink exactly once."""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.formulas import (
    BASELINE_COLUMNS,
    BASELINE_OF,
    BASELINE_TIME,
    FEATURE_COLUMNS,
    REPORTED_COLUMNS,
    STATS_COLUMNS,
    STATS_TIME,
    STATUSES,
)
from features.logic import EARLIER_FIELDS, add_features, earlier, usable_stats
from features.schema import EVENT_FIELDS
from infra.lake import PARTITION_COLUMN
from infra.settings import Settings
from models.loader import ScoringModel
from models.scoring import SCORE
from streaming.exceptions import StopRequested
from streaming.metrics import BatchMetrics, StreamMetrics
from streaming.parse import REASONS
from streaming.sinks import DeltaBatchWriter, TransactionalKafkaSink
from streaming.state import READING_FIELDS, LastReadings, Reading, newer
from streaming.statistics import OnlineStatistics

log = logging.getLogger(__name__)

# The batch's id and scoring time reach its rows through a joined relation, not as literals: a
# literal number is inlined in the generated code, so every batch would compile its own (Janino,
# 100-400 ms a batch on two cores); a joined value leaves the code the same from batch to batch.
_BATCH_FIELDS = [T.StructField("batch_id", T.LongType()), T.StructField("scored_at", T.TimestampType())]
_READING_TYPES = {"ts": T.TimestampType(), "event_id": T.StringType()}
# What a batch joins to its events, a row per device: the device's statistics from the online
# store, its reading before the batch, the batch's id and scoring time. One relation, joined in
# the batch's own task (`_one_partition`), and one plan shape for every batch keeps its generated code.
_CONTEXT_SCHEMA = T.StructType(
    [
        T.StructField("device_id", T.StringType()),
        T.StructField(STATS_TIME, T.TimestampType()),
        *(T.StructField(name, T.DoubleType()) for name in STATS_COLUMNS),
        T.StructField(BASELINE_TIME, T.TimestampType()),
        *(T.StructField(name, T.DoubleType()) for name in BASELINE_COLUMNS),
        T.StructField(BASELINE_OF, T.StringType()),
        T.StructField("device_type", T.StringType()),
        *(T.StructField(earlier(f), _READING_TYPES.get(f, T.DoubleType())) for f in EARLIER_FIELDS),
        T.StructField("met", T.BooleanType()),  # true on every row: an event without it has no row
        *_BATCH_FIELDS,
    ]
)
_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_LATENCY_BINS = 16
# The lake's tables that a batch writes: valid events scored, and rejected ones.
LAKE_TABLES = ("scored", "rejected")
# Rejected records a batch's scoring job hands to the driver (each at most WARDEN_MAX_EVENT_BYTES):
# a batch with more writes them from its events and reads them back.
INLINE_DEAD_LETTERS = 1_000
# A rejected record (`_rejected_record`), then the batch's id and the date partition: `rejected`.
_REJECTED_RECORD = T.StructType(
    [
        T.StructField("value", T.BinaryType()),
        T.StructField("key", T.BinaryType()),
        T.StructField("reason", T.StringType()),
        T.StructField("reason_detail", T.StringType()),
        T.StructField("source_topic", T.StringType()),
        T.StructField("source_partition", T.IntegerType()),
        T.StructField("source_offset", T.LongType()),
        T.StructField("source_timestamp", T.TimestampType()),
    ]
)
_REJECTED_SCHEMA = T.StructType(
    [*_REJECTED_RECORD.fields, T.StructField("batch_id", T.LongType()), T.StructField(PARTITION_COLUMN, T.StringType())]
)
# (key, value, headers) of a record for the dead-letter topic.
DeadLetter = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


class _PhaseClock:
    """Wall time of each phase of a batch, in milliseconds: where a batch spends its time."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        # Added up: a batch scored twice (new devices) passes through its phases twice.
        self.phases[phase] = round(self.phases.get(phase, 0.0) + (now - self.last) * 1000, 1)
        self.last = now


class BatchProcessor:
    """Called by `foreachBatch` with each micro-batch of raw Kafka records and its id."""

    def __init__(
        self,
        settings: Settings,
        spark: SparkSession,
        statistics: OnlineStatistics,
        champion: Callable[[], ScoringModel | None],
        tables: DeltaBatchWriter,
        readings: LastReadings,
        kafka_sink: Callable[[], TransactionalKafkaSink],
        metrics: StreamMetrics,
    ) -> None:
        self.settings = settings
        self.spark = spark
        self.statistics = statistics
        self.champion = champion
        self.tables = tables
        self.readings = readings
        self.kafka_sink = kafka_sink
        self.metrics = metrics
        # Held while a batch runs, so a shutdown can wait for the batch to finish.
        self.busy = threading.Lock()
        self.stopping = threading.Event()
        self._batch_started: float | None = None
        self._failure: BaseException | None = None

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        try:
            self._run(records, batch_id)
        except BaseException as exc:
            # Spark hands the job this failure back as text around a traceback; the job asks for
            # the exception itself (`take_failure`) and decides by its type.
            self._failure = exc
            raise

    def take_failure(self) -> BaseException | None:
        """The exception that ended the last batch to fail, once; None when none failed since."""
        failure, self._failure = self._failure, None
        return failure

    def _run(self, records: DataFrame, batch_id: int) -> None:
        if self.stopping.is_set():
            # Shutting down: fail before any side effect; the batch is replayed on restart.
            raise StopRequested(f"batch {batch_id} not started: the job is stopping")
        with self.busy:
            self._batch_started = time.monotonic()
            clock = _PhaseClock({})
            try:
                if batch_id < self.kafka_sink().next_batch_id():
                    # Replayed after a crash that followed its Kafka transaction: every sink was
                    # written before that transaction committed, so nothing is written again.
                    self.metrics.record_batch(BatchMetrics(batch_id=batch_id, skipped_as_written=True))
                else:
                    # A driver's first batch may wait for its Kafka sink to connect (`streaming.job`).
                    clock.lap("sink")
                    self._process(records, batch_id, clock)
            finally:
                self._batch_started = None

    def running_for(self) -> float:
        """Seconds the batch in flight has run so far; 0 between batches."""
        started = self._batch_started
        return 0.0 if started is None else time.monotonic() - started

    def _process(self, parsed: DataFrame, batch_id: int, clock: _PhaseClock) -> None:
        model = self.champion()
        if model is None:  # the job only starts once a champion is loaded
            raise RuntimeError("no champion model loaded")
        metrics = BatchMetrics(batch_id=batch_id, model_name=model.info.name, model_version=model.version)
        metrics.phases_ms = clock.phases
        readings = self.readings.before(batch_id)
        # Every device met so far: the batch's own are known only once it has been read, and
        # reading it first would cost a Spark job of its own.
        devices = sorted(self.statistics.met() | readings.keys())
        for attempt in (1, 2):
            context = self._context(devices, readings, batch_id)
            clock.lap("features")
            written = self._write_scored(parsed, context, model, f"{batch_id}-{attempt}", batch_id, self.tables)
            clock.lap("score")
            if not written.unmet:
                break
            if attempt == 2:  # every device of the batch was in its context: a bug, not data to drop
                raise RuntimeError(
                    f"batch {batch_id}: devices without context after a second pass: {written.unmet[:5]}"
                )
            # Devices the stream had never met were scored without their statistics: score the
            # batch again with them (the write replaces the first one's rows). Once per new device.
            log.info(
                "batch %d met %d new devices: scoring it again with their statistics", batch_id, len(written.unmet)
            )
            devices = sorted({*devices, *written.unmet})
        metrics.dead_letters = written.rejected
        metrics.input_rows = written.valid + sum(written.rejected.values())
        metrics.alerts = _summarize(written.summary, metrics)
        alerts: Iterator[tuple[bytes | None, bytes]] = iter(())
        if metrics.alerts:
            # What reaches Kafka is what the lake holds: the rows this write observed, or, for a
            # big batch, its rows read back a file at a time, in memory bounded by a file's rows.
            inline = "alert_list" in written.summary
            alerts = (
                _observed_alerts(written.summary) if inline else _alerts(self.tables.read_batch("scored", batch_id))
            )
        letters = self._write_rejected(parsed, written, batch_id, self.tables) if written.rejected else iter(())
        clock.lap("lake")
        self.readings.save(batch_id, newer(readings, written.newest))
        clock.lap("state")
        self.kafka_sink().publish(batch_id, alerts, letters)
        clock.lap("kafka")
        self.metrics.record_batch(metrics)

    def rehearse(
        self, parsed: DataFrame, readings: dict[str, Reading], tables: DeltaBatchWriter, batch_id: int
    ) -> None:
        """Score `parsed` as batch `batch_id` is scored, against these earlier readings, into
        `tables` (a scratch lake): no Kafka transaction, no state, no metrics. What a standby runs
        before it waits, so that its first real batch finds the JVM's classes loaded and the plan's
        code generated and compiled (`streaming.rehearsal`)."""
        model = self.champion()
        if model is None:
            raise RuntimeError("no champion model loaded")
        context = self._context(sorted(readings), readings, batch_id)
        written = self._write_scored(parsed, context, model, f"rehearsal-{batch_id}", batch_id, tables)
        if written.rejected:
            collections.deque(self._write_rejected(parsed, written, batch_id, tables), maxlen=0)

    def _write_rejected(
        self, parsed: DataFrame, written: Written, batch_id: int, tables: DeltaBatchWriter
    ) -> Iterator[DeadLetter]:
        """Write the batch's rejected records to `rejected`; their dead letters.

        A batch whose scoring job observed every rejected record (a few, each of bounded size)
        writes those: no second pass over the batch, which would read it from Kafka and parse it
        again (1-2 s for 15k events), nor a read back. Otherwise its rejected records are written
        from the batch and read back a file at a time: a batch of garbage does not fill the driver."""
        observed = [dict(zip(_REJECTED_RECORD.names, row, strict=True)) for row in written.rejected_rows]
        if len(observed) == sum(written.rejected.values()) <= INLINE_DEAD_LETTERS:
            rows = [
                (
                    *record.values(),
                    batch_id,
                    f"{record['source_timestamp']:%Y-%m-%d}" if record["source_timestamp"] else None,
                )
                for record in observed
            ]
            tables.write(self.spark.createDataFrame(rows, schema=_REJECTED_SCHEMA), "rejected", batch_id)
            return (_dead_letter(record) for record in observed)
        batch = F.broadcast(self._batch(batch_id))
        rejected = parsed.where(~_is_valid()).crossJoin(batch).select(*_rejected_columns())
        tables.write(rejected, "rejected", batch_id)
        return _dead_letters(tables.read_batch("rejected", batch_id))

    def _write_scored(
        self,
        parsed: DataFrame,
        context: DataFrame,
        model: ScoringModel,
        attempt: str,
        batch_id: int,
        tables: DeltaBatchWriter,
    ) -> Written:
        """Score the batch's valid events and write them to `scored`, in one Spark job that also
        counts the batch's events by reject reason, finds each device's newest reading and the
        devices missing from `context`, and summarizes the scored rows (observed metrics)."""
        census, devices, summary = (Observation(f"{name}-{attempt}") for name in ("census", "devices", "summary"))
        numbered = parsed.select(_all(), _row_in_task())
        inline = self.settings.stream.inline_alerts_max_rows
        census_metrics = _census_metrics(self.settings.max_event_bytes, inline)
        valid = numbered.observe(census, *census_metrics).drop(_ROW_IN_TASK)
        valid = valid.where(_is_valid())
        events = valid.join(_one_partition(context), "device_id", "left")
        featured = add_features(usable_stats(events, self.settings.feature.max_age_minutes), with_earlier=True)
        featured = featured.select(_all(), _newest_in_batch()).observe(devices, *_device_metrics())
        # A device missing from the context has no batch id to file its rows under: they are
        # left out, and the batch is scored again (`_process`).
        featured = featured.where(_met())
        info = model.info
        # Only what the scored table keeps reaches the model: the JVM scorer copies every row it scores.
        rows = model.score(featured.select(*_model_inputs())).select(
            *_scored_columns(info.threshold, info.name, info.version)
        )
        # A batch small enough gathers its alerts too; a bigger one reads them back (bounded memory).
        observed = rows.select(_all(), _row_in_task()).observe(summary, *_summary_metrics(inline)).drop(_ROW_IN_TASK)
        tables.write(observed, "scored", batch_id)
        counts, found = census.get, devices.get
        rejected = {reason: int(counts[reason]) for reason in REASONS if counts[reason]}
        newest = {row["device_id"]: tuple(row[field] for field in READING_FIELDS) for row in found["newest"]}
        summary_values = summary.get
        if summary_values["rows"] > inline:
            summary_values.pop("alert_list", None)  # not used: the alerts are read back
        return Written(
            int(counts["valid"]),
            rejected,
            [tuple(row) for row in counts["rejected_rows"]],
            newest,
            sorted(found["unmet"]),
            summary_values,
        )

    def _context(self, devices: list[str], readings: dict[str, Reading], batch_id: int) -> DataFrame:
        """These devices with their online statistics, their earlier readings, the batch's id and
        scoring time (_CONTEXT_SCHEMA), through Arrow."""
        if not devices:  # the stream's first batch: every device is met in it
            return self.spark.createDataFrame([], schema=_CONTEXT_SCHEMA)
        context = self.statistics.of(devices).merge(self.readings.frame(readings, devices), on="device_id", how="left")
        context["met"], context["batch_id"], context["scored_at"] = True, batch_id, datetime.now(UTC)
        return self.spark.createDataFrame(context.astype(object).where(context.notna(), None), schema=_CONTEXT_SCHEMA)

    def _batch(self, batch_id: int) -> DataFrame:
        """The batch's id and scoring time, as a one-row local relation (through Arrow)."""
        frame = pd.DataFrame({"batch_id": [batch_id], "scored_at": [datetime.now(UTC)]})
        return self.spark.createDataFrame(frame, schema=T.StructType(_BATCH_FIELDS))


# Columns are expressions over names, independent of any batch: built once per process (through
# py4j, each costs a round trip) and reused by every micro-batch.


@functools.cache
def _is_valid() -> Column:
    return F.col("reason").isNull()


@functools.cache
def _met() -> Column:
    return F.col("met").isNotNull()


@functools.cache
def _all() -> Column:
    return F.col("*")


def _one_partition(context: DataFrame) -> DataFrame:
    """The context as one partition, joined by hashing it in the task that reads the batch.

    With one task a batch (`WARDEN_STREAM_BATCH_TASKS`, 1 by default) both sides of the join are
    a single partition, so the join needs no exchange and no Spark job of its own; a broadcast
    ran one every batch, even for a local relation. With more tasks, Spark shuffles both sides.
    """
    return context.coalesce(1).hint("shuffle_hash")


@functools.cache
def _model_inputs() -> tuple[Column, ...]:
    """The scored table's columns known before the model runs."""
    return (
        *(F.col(c) for c in EVENT_FIELDS),
        F.col("device_type"),
        F.col("feature_status"),
        *(F.col(c) for c in FEATURE_COLUMNS),
        F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.col("kafka_ts").alias("source_timestamp"),
        F.col("batch_id"),
        F.col("scored_at"),
    )


@functools.lru_cache(maxsize=8)
def _scored_columns(threshold: float, model_name: str, model_version: str) -> tuple[Column, ...]:
    """The scored table's columns, in its order, for rows scored by one model version."""
    return (
        *(F.col(c) for c in (*EVENT_FIELDS, "device_type", "feature_status")),
        *(F.col(c) for c in FEATURE_COLUMNS),
        F.col(SCORE),
        F.lit(threshold).alias("threshold"),
        (F.col(SCORE) >= F.lit(threshold)).alias("is_alert"),
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        F.col("scored_at"),
        *(F.col(c) for c in ("source_partition", "source_offset", "source_timestamp", "batch_id")),
        _event_date(),
    )


@functools.cache
def _rejected_record() -> tuple[Column, ...]:
    """A rejected record as `rejected` keeps it (_REJECTED_RECORD), without the batch's id and date."""
    # The original bytes stay bytes: a value that is not UTF-8 is kept as it came.
    return (
        *(F.col(c) for c in ("value", "key", "reason", "reason_detail")),
        F.col("topic").alias("source_topic"),
        F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.col("kafka_ts").alias("source_timestamp"),
    )


@functools.cache
def _rejected_columns() -> tuple[Column, ...]:
    # A rejected event may have no usable time of its own: it is filed under its Kafka timestamp.
    return (*_rejected_record(), F.col("batch_id"), F.date_format("kafka_ts", "yyyy-MM-dd").alias(PARTITION_COLUMN))


def _event_date() -> Column:
    """The lake's date partition of a valid event: its own UTC date."""
    return F.date_format("ts", "yyyy-MM-dd").alias(PARTITION_COLUMN)


@dataclass
class Written:
    """What one scoring pass over a batch observed while writing it: how many events were valid,
    why the rest were rejected, each device's newest reading, the devices its context lacked,
    and the summary of the scored rows (`_summary_metrics`)."""

    valid: int
    rejected: dict[str, int]
    rejected_rows: list[tuple[Any, ...]]  # the few rejected records observed, as `_rejected_record`
    newest: dict[str, Reading]
    unmet: list[str]
    summary: dict[str, Any]


@functools.lru_cache(maxsize=2)
def _census_metrics(max_event_bytes: int, inline_max_rows: int) -> tuple[Column, ...]:
    """The batch's valid events and rejected records by reason, and its rejected records no
    bigger than an event may be among the first `inline_max_rows` rows of each task (as the
    alerts), INLINE_DEAD_LETTERS + 1 of them at most: what the driver holds stays bounded."""
    small = F.coalesce(F.length("value"), F.lit(0)) <= F.lit(max_event_bytes)
    observed = ~_is_valid() & (F.col(_ROW_IN_TASK) < F.lit(inline_max_rows)) & small
    rejected = F.collect_list(F.when(observed, F.struct(*_rejected_record())))
    return (
        F.count_if(_is_valid()).alias("valid"),
        *(F.count_if(F.col("reason") == F.lit(reason)).alias(reason) for reason in REASONS),
        F.slice(rejected, 1, INLINE_DEAD_LETTERS + 1).alias("rejected_rows"),
    )


@functools.cache
def _newest_in_batch() -> Column:
    """Whether an event is its device's last of the batch, in the order readings follow each other."""
    return F.lead("event_id").over(Window.partitionBy("device_id").orderBy("ts", "event_id")).isNull().alias("_newest")


@functools.cache
def _device_metrics() -> tuple[Column, ...]:
    # A row per device of the batch at most: the driver holds as many as the fleet has devices.
    reading = F.struct(F.col("device_id"), *(F.col(field) for field in READING_FIELDS))
    return (
        F.collect_list(F.when(F.col("_newest"), reading)).alias("newest"),
        F.collect_set(F.when(F.col("met").isNull(), F.col("device_id"))).alias("unmet"),
    )


def _dead_letters(rejected: DataFrame) -> Iterator[DeadLetter]:
    """The batch's rejected rows as dead-letter records."""
    for row in rejected.toLocalIterator():
        yield _dead_letter(row.asDict())


def _dead_letter(row: dict[str, Any]) -> DeadLetter:
    """A row of `rejected` as a dead-letter record: its bytes as they came, and why."""
    headers = [
        ("reason", row["reason"].encode()),
        ("reason_detail", (row["reason_detail"] or "").encode()),
        ("source_topic", row["source_topic"].encode()),
        ("source_partition", str(row["source_partition"]).encode()),
        ("source_offset", str(row["source_offset"]).encode()),
        ("source_timestamp", row["source_timestamp"].isoformat().encode() if row["source_timestamp"] else b""),
    ]
    key = bytes(row["key"]) if row["key"] is not None else None
    return key, bytes(row["value"]) if row["value"] is not None else b"", headers


def _alerts(scored: DataFrame) -> Iterator[tuple[bytes | None, bytes]]:
    """The batch's alerts (key: the device, value: the alert as JSON), a lake file at a time."""
    for row in scored.where(F.col("is_alert")).select("device_id", _alert_payload()).toLocalIterator():
        yield row[0].encode(), row[1].encode()


@functools.cache
def _alert_payload() -> Column:
    return F.to_json(
        F.struct(
            "event_id",
            "device_id",
            F.date_format("ts", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX").alias("event_ts"),
            F.date_format("scored_at", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX").alias("scored_at"),
            F.col(SCORE).alias("score"),
            "threshold",
            "model_name",
            "model_version",
            "device_type",
            "feature_status",
            F.struct(*REPORTED_COLUMNS).alias("features"),
            "source_partition",
            "source_offset",
        )
    )


def _observed_alerts(observed: dict[str, Any]) -> Iterator[tuple[bytes | None, bytes]]:
    for device, payload in observed["alert_list"]:
        yield device.encode(), payload.encode()


_ROW_IN_TASK = "_row_in_task"


@functools.cache
def _row_in_task() -> Column:
    """A row's position in its task (the low 33 bits of Spark's monotonically increasing id).
    Projected before the observation: an aggregate may not hold a nondeterministic expression."""
    return F.monotonically_increasing_id().bitwiseAND(F.lit((1 << 33) - 1)).alias(_ROW_IN_TASK)


@functools.lru_cache(maxsize=4)
def _summary_metrics(inline_max_rows: int) -> tuple[Column, ...]:
    """The batch's alert count, row count, feature status counts and timestamp percentiles, and
    its alerts as (device, JSON payload) if it has at most `inline_max_rows` rows."""
    quantiles = [1 - q for q in _QUANTILES.values()]
    # Only the first `inline_max_rows` rows of each task are gathered: a batch with more rows
    # reads its alerts back from its files, and the driver never holds more than that many
    # payloads a task, however many of the batch's events alerted.
    first_rows = F.col(_ROW_IN_TASK) < F.lit(inline_max_rows)
    alert = F.struct(F.col("device_id"), _alert_payload().alias("payload"))
    return (
        F.sum(F.col("is_alert").cast("int")).alias("alerts"),
        F.count(F.lit(1)).alias("rows"),
        F.percentile_approx(F.unix_millis("ts"), quantiles).alias("ts_q"),
        F.percentile_approx(F.unix_millis("source_timestamp"), quantiles).alias("kafka_q"),
        # Bins of event times, for the latency histogram: a few numbers per batch, not an event each.
        F.histogram_numeric(F.unix_millis("ts"), F.lit(_LATENCY_BINS)).alias("ts_bins"),
        *(F.sum((F.col("feature_status") == s).cast("int")).alias(s) for s in STATUSES),
        # collect_list skips nulls: only the alerts.
        F.collect_list(F.when(F.col("is_alert") & first_rows, alert)).alias("alert_list"),
    )


def _summarize(observed: dict[str, Any], metrics: BatchMetrics) -> int:
    """Fill the batch's metrics from what its write observed; return its number of alerts."""
    now_ms = time.time() * 1000
    metrics.scored_rows = int(observed["rows"])
    if metrics.scored_rows:
        # The p-th latency percentile is now minus the (1 - p)-th percentile of the timestamps.
        metrics.latency_ms = {q: now_ms - t for q, t in zip(_QUANTILES, observed["ts_q"], strict=True)}
        metrics.kafka_latency_ms = {q: now_ms - t for q, t in zip(_QUANTILES, observed["kafka_q"], strict=True)}
        metrics.latency_bins_ms = [(max(now_ms - b["x"], 0.0), b["y"]) for b in observed["ts_bins"] or []]
        metrics.feature_status = {s: int(observed[s] or 0) for s in STATUSES}
    return int(observed["alerts"] or 0)
