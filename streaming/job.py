"""`warden stream`: the long-running Spark Structured Streaming job.

Kafka (Spark's own `kafka` source, offsets in the query's checkpoint) → parse and validate in
Spark SQL → Feast online statistics + in-batch features → the `champion` model, re-resolved
every few seconds and swapped without a restart → alerts and dead letters to Kafka (one
transaction per batch), telemetry, scored rows and rejects to the lake (idempotent per batch).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException, StreamingQueryException

from infra.exceptions import ServiceError
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.spark import spark_session
from models.loader import ChampionWatcher, ScoringModel
from models.registry import VersionInfo, configure_mlflow
from streaming.batch import LAKE_TABLES, BatchProcessor
from streaming.drivers import Driver
from streaming.exceptions import QueryGaveUp, StopRequested
from streaming.kafka_io import kafka_source_options, require_broker
from streaming.metrics import REFUSAL, SWAP, ProgressListener, StreamMetrics
from streaming.parse import parse_events
from streaming.rehearsal import rehearse
from streaming.sinks import DeltaBatchWriter, TransactionalKafkaSink
from streaming.state import LastReadings
from streaming.statistics import OnlineStatistics

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)
QUERY_NAME = "warden-stream"


@dataclass
class StreamReport:
    batches: int = 0
    rows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    swaps: int = 0
    refusals: int = 0
    restarts: int = 0
    seconds: float = 0.0
    exit_reason: str = ""


def run_stream(
    settings: Settings,
    duration: float | None = None,
    progress: ProgressLine | None = None,
    stop: threading.Event | None = None,
    standby: bool = False,
) -> StreamReport:
    """Run until SIGTERM/SIGINT, `stop`, or `duration` seconds; finish the batch in flight, exit.

    A `standby` driver gets ready (session, champion, plan) and waits to take the query over
    from the active one (`streaming.drivers`); without it, a query already running on the
    checkpoint is an error."""
    progress = progress or ProgressLine("stream")
    stop = stop or threading.Event()
    require_broker(settings)
    with Driver(settings) as driver:
        if not standby:
            driver.take_now()
        return _drive(settings, driver, duration, progress, stop)


def _drive(
    settings: Settings, driver: Driver, duration: float | None, progress: ProgressLine, stop: threading.Event
) -> StreamReport:
    report = StreamReport()
    started = time.monotonic()
    metrics = StreamMetrics(settings, serve=driver.active)

    def swapped(old: ScoringModel | None, new: ScoringModel) -> None:
        report.swaps += 1
        if driver.active:  # a standby follows the champion too, but the active driver tells of it
            metrics.record_model_event(SWAP, new.version, old.version if old else "")
        progress.update(
            f"now scoring with version {new.version}" + (f" (was {old.version})" if old else ""), force=True
        )

    def refused(info: VersionInfo, why: str) -> None:
        report.refusals += 1
        if driver.active:
            metrics.record_model_event(REFUSAL, info.version, reason=why)
        progress.update(f"refused version {info.version}: {why}", force=True)

    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # Before Spark: a registry that does not answer fails the command in a second, not after the JVM's start.
    client = configure_mlflow(settings)
    spark = stream_session(settings, QUERY_NAME)
    watcher = ChampionWatcher(spark, client, settings.model_name, settings.champion_poll_seconds, swapped, refused)
    while watcher.current is None and not stop.is_set():
        watcher.check()
        if watcher.current is not None:
            break
        progress.update(
            f'waiting for a champion: no loadable version under alias "champion" of {settings.model_name}; '
            "train one (`warden train`) and promote it (`warden promote`)",
            force=True,
        )
        if duration is not None and time.monotonic() - started > duration:
            stop.set()
            break
        stop.wait(settings.champion_poll_seconds)
    if stop.is_set():
        report.exit_reason = "stopped before a champion was available"
        return report
    watcher.start()

    from features.store import feature_store

    statistics = OnlineStatistics(feature_store(settings), settings.stream_statistics_refresh_seconds)
    statistics.start()
    # The sink of the query that runs: connected while the query plans its first batch. Its
    # `init_transactions` fences any earlier driver of the query on the alert topics and waits
    # for the broker to abort what that one left open: off the path of a takeover's first batch.
    connecting = ThreadPoolExecutor(1, thread_name_prefix="kafka-sink")
    sink: list[Future[TransactionalKafkaSink]] = []

    def kafka_sink() -> TransactionalKafkaSink:
        return sink[0].result()

    def close_sink() -> None:
        # A sink that never connected (the broker away) has nothing to close.
        if sink and sink[0].exception() is None:
            sink[0].result().close()
        sink.clear()

    readings = LastReadings(spark, str(settings.checkpoint_dir / "last_readings"))
    tables = DeltaBatchWriter(spark, settings.lake_url)
    processor = BatchProcessor(
        settings,
        spark,
        statistics,
        lambda: watcher.current,
        tables,
        readings,
        kafka_sink,
        metrics,
    )
    driver.watch(processor.running_for)
    spark.streams.addListener(ProgressListener(metrics))
    # Parsed and validated on the streaming DataFrame: the plan is built and analysed once, not
    # in every batch.
    events = parse_events(telemetry_records(spark, settings), settings.max_event_bytes)

    def start_query() -> StreamingQuery:
        query = (
            events.writeStream.queryName(QUERY_NAME)
            .foreachBatch(processor)
            .option("checkpointLocation", str(settings.checkpoint_dir))
            .trigger(processingTime=f"{settings.stream_trigger_seconds} seconds")
            .start()
        )
        # The transactional id follows the query's id, kept in its checkpoint across restarts.
        sink.append(connecting.submit(TransactionalKafkaSink, settings, str(query.id)))
        return query

    standby = not driver.active
    takeover = None
    if standby:
        rehearse(settings, spark, processor, readings, progress)
        takeover = driver.wait_to_take_over(stop, progress)
        if not driver.active:
            watcher.stop()
            statistics.stop()
            report.exit_reason = "stopped as a standby"
            return report
    tables.expect_replay(unfinished_batch(settings), LAKE_TABLES)
    query = start_query()
    if standby:  # what the first batch does not need comes after the query's start
        metrics.serve()
    if takeover is not None:
        metrics.record_takeover(takeover)
        progress.update(
            f"took the query over from driver pid {takeover.previous} ({takeover.cause}, last heard of "
            f"{takeover.detected_at - takeover.last_heartbeat:.1f} s ago), query started in "
            f"{time.time() - takeover.detected_at:.2f} s",
            force=True,
        )
    failures = 0  # consecutive failed attempts; a committed batch resets it
    batches_at_start = 0
    try:
        while not stop.is_set():
            if query.isActive:
                with contextlib.suppress(StreamingQueryException):  # handled below, once it is inactive
                    query.awaitTermination(1.0)  # type: ignore[arg-type]
                if duration is not None and time.monotonic() - started > duration:
                    stop.set()
                _show(progress, query.lastProgress, watcher)
                continue
            failure = query.exception()
            raised = processor.take_failure()
            if failure is None or isinstance(raised, StopRequested):
                break
            # A failed batch (a DataNode or the online store gone for a moment) ends the query;
            # its checkpoint makes a restart replay that batch, and the sinks keep replays exact.
            reason = failure_reason(raised, failure)
            failures = 1 if metrics.totals["batches"] > batches_at_start else failures + 1
            if failures > settings.stream_max_restarts:
                raise QueryGaveUp(f"the streaming query failed {failures} times in a row, giving up: {reason}")
            wait = min(2.0**failures, 30.0)
            report.restarts += 1
            progress.update(
                f"batch failed: {reason}; restarting from the checkpoint in {wait:.0f} s "
                f"(attempt {failures}/{settings.stream_max_restarts})",
                force=True,
            )
            if stop.wait(wait) or not _wait_for_broker(settings, stop, progress):
                break
            close_sink()  # a producer that lived through the failure may be unusable: a new one, fenced anew
            batches_at_start = metrics.totals["batches"]
            query = start_query()
        # Let the batch in flight finish and commit its sinks, refuse to start another, stop.
        processor.stopping.set()
        with processor.busy:
            pass
        if query.isActive:
            query.stop()
        report.exit_reason = "stopped"
    finally:
        watcher.stop()
        statistics.stop()
        close_sink()
        connecting.shutdown()
        report.seconds = time.monotonic() - started
        report.batches = metrics.totals["batches"]
        report.rows = metrics.totals["rows"]
        report.alerts = metrics.totals["alerts"]
        report.dead_letters = metrics.totals["dead_letters"]
    return report


def unfinished_batch(settings: Settings) -> int | None:
    """The batch that the query's checkpoint holds offsets for but no commit: the one a query
    started on it runs again first (Spark's offset and commit logs keep a file per batch id)."""

    def newest(log: str) -> int:
        folder = settings.checkpoint_dir / log
        return (
            max((int(path.name) for path in folder.iterdir() if path.name.isdigit()), default=-1)
            if folder.exists()
            else -1
        )

    planned, committed = newest("offsets"), newest("commits")
    return planned if planned > committed else None


def _wait_for_broker(settings: Settings, stop: threading.Event, progress: ProgressLine) -> bool:
    """Until the broker answers again (a failed batch is often its absence: a restart must not
    count against the job while it is away); False when the job is stopped first."""
    while True:
        try:
            require_broker(settings)
            return True
        except ServiceError as exc:
            progress.update(f"waiting for the broker before restarting the query: {exc}", force=True)
        if stop.wait(2.0):
            return False


def stream_session(settings: Settings, app_name: str) -> SparkSession:
    """The Spark session of a streaming driver, set for small, frequent batches."""
    spark = spark_session(settings, app_name)
    # Adaptive execution re-plans every stage: seconds of fixed cost on batches of a few thousand
    # rows. A shuffle (the features' per-device window) makes as many tasks as the batch has.
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    spark.conf.set("spark.sql.shuffle.partitions", str(settings.stream_batch_tasks))
    return spark


def telemetry_records(spark: SparkSession, settings: Settings) -> DataFrame:
    """The telemetry topic's raw records as a streaming DataFrame, read as the job reads them."""
    source = (
        spark.readStream.format("kafka")
        .options(**kafka_source_options(settings))
        .option("startingOffsets", settings.stream_starting_offsets)
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("failOnDataLoss", str(settings.stream_fail_on_data_loss).lower())
        .load()
    )
    # Few tasks: per-task overhead, not work, dominates small batches, and with a single one the
    # context join and the per-device features need no shuffle.
    return source.coalesce(settings.stream_batch_tasks)


def failure_reason(raised: BaseException | None, failure: StreamingQueryException) -> str:
    """What made the query fail, in a line: the exception a batch raised, for a Java failure its
    innermost cause (what went wrong, not the calls that wrapped it); else, when the query failed
    outside a batch, Spark's error condition and message."""
    if isinstance(raised, Py4JJavaError):
        cause = raised.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        line = str(cause.toString())
    elif isinstance(raised, PySparkException):  # a Spark error converted for Python: its condition leads
        line = f"{type(raised).__name__}: {raised.getMessage()}"
    elif raised is not None:
        line = f"{type(raised).__name__}: {raised}"
    else:
        line = failure.getMessage()  # "[CONDITION] what happened"
    line = " ".join(line.split())
    # The head names the exception, the tail what it says; the middle is mostly a path.
    return line if len(line) <= 240 else f"{line[:100]} … {line[-130:]}"


def _show(progress: ProgressLine, last: dict | None, watcher: ChampionWatcher) -> None:  # type: ignore[type-arg]
    if not last:
        return
    version = watcher.current.version if watcher.current else "-"
    progress.update(
        f"batch {last['batchId']}: {last['numInputRows']:,} rows, "
        f"{last.get('processedRowsPerSecond', 0.0):,.0f} rows/s, model v{version}"
    )
